"""The human-readable side of bench.speed: a table per client count and the ratios to the targets."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bench.mailbox import render_replay

PHASES = ("new", "resume", "auth", "set", "get", "shared", "notify", "paced")
LABELS = {
    "new": "new handshake (getToken)",
    "resume": "resume (getToken + token)",
    "auth": "handshake by auth, connects",
    "set": "demo:set, acked",
    "get": "demo:get",
    "shared": "one token, many sockets set",
    "notify": "demo:notify, delivered",
    "paced": "demo:notify, fixed rate",
}
FLOOR_LABELS = {
    "new": "INSERT",
    "resume": "SELECT by id",
    "auth": "INSERT",
    "set": "UPDATE JSON_SET",
    "get": "SELECT data",
    "shared": "UPDATE one row",
}

# name, phase, figure, target, at least (True) or at most (False), what it is.
TARGETS = (
    ("new handshakes/s, ours ÷ ceiling", "new", "ops_per_s", 1.0, True),
    ("resume handshakes/s, ours ÷ ceiling", "resume", "ops_per_s", 0.9, True),
    ("durable sets/s, ours ÷ ceiling", "set", "ops_per_s", 0.75, True),
    ("set p99, ours ÷ ceiling", "set", "p99_ms", 1.5, False),
)
CPU_RATIOS = (
    ("new handshake: server+db CPU per op, ours ÷ ceiling", "new"),
    ("resume: server+db CPU per op, ours ÷ ceiling", "resume"),
    ("demo:set: server+db CPU per op, ours ÷ ceiling", "set"),
    ("mailbox delivery: server+db CPU per op, ours ÷ ceiling", "notify"),
)
# The mailbox's live delivery, for ours and ours2: as fast as it goes, and at a fixed rate.
MAILBOX_RATIOS = (
    ("live deliveries/s, ours ÷ ceiling", "notify", "ops_per_s"),
    ("delivery p50, ours ÷ ceiling", "notify", "p50_ms"),
    ("delivery p99, ours ÷ ceiling", "notify", "p99_ms"),
    ("delivery p50 at a fixed rate, ours ÷ ceiling", "paced", "p50_ms"),
    ("delivery p99 at a fixed rate, ours ÷ ceiling", "paced", "p99_ms"),
)
OTHER_RATIOS = (
    ("auth handshakes/s, ours ÷ ceiling", "auth", "ops_per_s"),
    ("demo:get/s, ours ÷ ceiling", "get", "ops_per_s"),
    ("shared-token sets/s, ours ÷ ceiling", "shared", "ops_per_s"),
    ("shared-token set p99, ours ÷ ceiling", "shared", "p99_ms"),
)


def _medians(figures: list[dict[str, Any]]) -> dict[str, Any]:
    numeric = [
        key for key, value in figures[0].items() if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    return {key: statistics.median(f[key] for f in figures if f.get(key) is not None) for key in numeric}


def summarise(raw: list[dict[str, Any]], max_other: float) -> dict[str, Any]:
    """Medians over runs of every figure, per client count, system and phase.

    Under each phase, ``quiet`` holds the medians over only the runs whose window
    had at most ``max_other`` cores taken by processes not measured here, and
    ``quiet_runs`` how many there were: the figures least disturbed by other work.
    """
    out: dict[str, Any] = {}
    for clients in sorted({r["clients"] for r in raw}):
        per: dict[str, Any] = {}
        for system in dict.fromkeys(r["system"] for r in raw):
            runs = [r["results"] for r in raw if r["clients"] == clients and r["system"] == system]
            per[system] = {}
            for phase in PHASES:
                figures = [r[phase] for r in runs if phase in r]
                if not figures:
                    continue
                per[system][phase] = _medians(figures)
                quiet = [f for f in figures if f.get("other_cores", 0.0) <= max_other]
                per[system][phase]["quiet_runs"] = len(quiet)
                per[system][phase]["runs"] = len(figures)
                if quiet:
                    per[system][phase]["quiet"] = _medians(quiet)
        out[str(clients)] = per
    return out


def _num(value: Any, digits: int = 0, width: int = 9) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _verdict(ratio: float | None, target: float, at_least: bool) -> str:
    if ratio is None:
        return "not measured"
    met = ratio >= target if at_least else ratio <= target
    if met:
        return "met"
    gap = target / ratio if at_least else ratio / target
    return f"not met ({gap:.2f}x short)"


def render(document: dict[str, Any], plan: dict[str, Any]) -> str:
    lines: list[str] = []
    meta = document.get("meta", {})
    cores = meta.get("cpu_cores", "?")
    lines.append(
        f"Speed of durable sessions: median of {plan['runs']} run(s), {plan['duration']:g} s per phase"
        f" after {plan['warmup']:g} s warm-up, {plan['generators']} {plan.get('generator', 'python')} generator"
        " process(es) for Socket.IO."
    )
    lines.append(
        f"This machine has {cores} CPU cores, shared by the server, the database and the load generator:"
        " read 'busy' (cores in use, whole machine), 'other' (cores used by processes not measured here:"
        " other people's work) and 'gen' (generator CPU seconds) before the ratios."
    )
    if plan.get("quick"):
        lines.append(f"--quick: shorter phases, and {plan['big_rows']:,} rows instead of 1,000,000 for the big resume.")
    window = plan["duration"]
    measured = set(plan.get("phases", PHASES))  # ratios of phases not measured are left out
    medians = summarise(document["runs"], plan.get("max_other", 0.5)) if document.get("runs") else {}
    for clients, per in medians.items():
        lines.append("")
        lines.append(
            f"== {clients} clients ==  (server/db/gen: CPU seconds in the {window:g} s window;"
            " srv/op, db/op, gen/op: CPU microseconds per operation)"
        )
        lines.append(
            f"{'phase':30}{'system':9}{'ops/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'server':>8}{'db':>7}{'gen':>7}{'srv/op':>8}{'db/op':>7}{'gen/op':>7}"
            f"{'busy':>6}{'other':>6}{'errors':>7}  floor statement"
        )
        for phase in PHASES:
            first = True
            for system in ("ours", "ours2", "ceiling", "floor"):
                f = per.get(system, {}).get(phase)
                if f is None:
                    continue
                lines.append(
                    f"{LABELS[phase] if first else '':30}{system:9}{_num(f['ops_per_s'])}{_num(f['p50_ms'], 2)}"
                    f"{_num(f['p99_ms'], 2)}{_num(f.get('server_cpu_s'), 2, 8)}{_num(f['db_cpu_s'], 2, 7)}"
                    f"{_num(f['gen_cpu_s'], 2, 7)}{_num(f.get('server_us_per_op'), 0, 8)}"
                    f"{_num(f.get('db_us_per_op'), 0, 7)}{_num(f.get('gen_us_per_op'), 0, 7)}"
                    f"{_num(f['busy_cores'], 2, 6)}{_num(f.get('other_cores'), 2, 6)}{_num(f['errors'], 0, 7)}"
                    + (f"  {FLOOR_LABELS[phase]}" if system == "floor" else "")
                )
                first = False
        lines.append("")
        lines.append(
            f"{'ratios (medians)':44}{'target':>8}{'ratio':>8}  {'verdict':28}{'quiet':>8}  quiet verdict (runs used)"
        )
        for mine in ("ours", "ours2"):
            if mine not in per:
                continue
            for name, phase, figure, target, at_least in TARGETS:
                if phase not in measured:
                    continue
                ours_f, ceiling_f = per.get(mine, {}).get(phase, {}), per.get("ceiling", {}).get(phase, {})
                ratio = _ratio(ours_f.get(figure), ceiling_f.get(figure))
                quiet = _ratio(ours_f.get("quiet", {}).get(figure), ceiling_f.get("quiet", {}).get(figure))
                used = f"{ours_f.get('quiet_runs', 0)}/{ours_f.get('runs', 0)} {mine}, "
                used += f"{ceiling_f.get('quiet_runs', 0)}/{ceiling_f.get('runs', 0)} ceiling"
                sign = ">=" if at_least else "<="
                bound = f"{sign} {target:g}"
                lines.append(
                    f"{name.replace('ours', mine, 1):44}{bound:>8}{_num(ratio, 2, 8)}  "
                    f"{_verdict(ratio, target, at_least):28}{_num(quiet, 2, 8)}  {_verdict(quiet, target, at_least)}"
                    f" ({used})"
                )
        big = document.get("big", {}).get("median", {}).get(clients)
        if big:
            ratio = _ratio(big["big"]["ops_per_s"], big["small"]["ops_per_s"])
            rows = document["big"]["big_rows"]
            name = f"resume/s, {rows:,} rows ÷ {document['big']['small_rows']:,}"
            lines.append(f"{name:44}{'>= 0.9':>8}{_num(ratio, 2, 8)}  {_verdict(ratio, 0.9, True)}")
        memory = document.get("memory", {}).get("median_bytes_per_socket")
        if memory:
            ratio = _ratio(memory.get("ours"), memory.get("ceiling"))
            name = "memory per idle socket, ours ÷ ceiling"
            lines.append(f"{name:44}{'<= 1.2':>8}{_num(ratio, 2, 8)}  {_verdict(ratio, 1.2, False)}")
        for name, phase, figure in OTHER_RATIOS:
            if phase not in measured:
                continue
            ratio = _ratio(
                per.get("ours", {}).get(phase, {}).get(figure), per.get("ceiling", {}).get(phase, {}).get(figure)
            )
            lines.append(f"{name:44}{'':>8}{_num(ratio, 2, 8)}")
        for mine in ("ours", "ours2"):
            for name, phase, figure in MAILBOX_RATIOS:
                ratio = _ratio(
                    per.get(mine, {}).get(phase, {}).get(figure), per.get("ceiling", {}).get(phase, {}).get(figure)
                )
                if ratio is not None:
                    lines.append(f"{name.replace('ours', mine, 1):44}{'':>8}{_num(ratio, 2, 8)}")
        for name, phase in CPU_RATIOS:
            if phase not in measured:
                continue
            ratio = _ratio(_cost(per.get("ours", {}).get(phase)), _cost(per.get("ceiling", {}).get(phase)))
            lines.append(f"{name:52}{_num(ratio, 2, 8)}")
        for phase in PHASES:
            ratio = _ratio(
                per.get("ours", {}).get(phase, {}).get("ops_per_s"),
                per.get("floor", {}).get(phase, {}).get("ops_per_s"),
            )
            if ratio is not None:
                lines.append(f"{LABELS[phase] + ', ours ÷ floor':44}{'':>8}{_num(ratio, 2, 8)}")
        lines += _sends(per)
        lines += _bottlenecks(per, window)
    lines += _memory(document)
    lines += _big(document)
    lines += render_replay(document)
    lines += _durability(document)
    if meta:
        lines.append("")
        lines.append(
            f"wall time {meta['wall_seconds']:.0f} s; {meta['database']}"
            f" ({', '.join(f'{k}={v}' for k, v in meta['database_settings'].items())}); Python {meta['python']}"
        )
    return "\n".join(lines)


def _cost(figures: dict[str, Any] | None) -> float | None:
    """Server + database CPU microseconds per operation (what the machine pays for one)."""
    if not figures or figures.get("server_us_per_op") is None:
        return None
    return float(figures["server_us_per_op"] + figures["db_us_per_op"])


def _sends(per: dict[str, Any]) -> list[str]:
    """The notify phases' sender side: demo:notify calls answered (the message stored, then acked) per second."""
    rows = [
        (LABELS[phase], system, f[phase])
        for phase in ("notify", "paced")
        for system, f in per.items()
        if "send_p50_ms" in f.get(phase, {})
    ]
    if not rows:
        return []
    lines = ["", "demo:notify, the sender's call (answered once the message is stored; ops/s above are deliveries):"]
    for label, system, f in rows:
        lines.append(
            f"  {label:26}{system:9} calls/s {_num(f['sends_per_s'], 0, 7)}   p50 {_num(f['send_p50_ms'], 2, 7)} ms"
            f"   p99 {_num(f['send_p99_ms'], 2, 7)} ms"
        )
    return lines


def _bottlenecks(per: dict[str, Any], window: float) -> list[str]:
    """Say where a figure may be capped by the generator or by the machine rather than by the server."""
    notes: list[str] = []
    for system, phases in per.items():
        for phase, f in phases.items():
            gen = f["gen_cpu_s"] / window
            if gen >= 0.85:
                notes.append(f"{system}/{phase}: generator used {gen:.2f} cores")
            if f.get("other_cores", 0.0) >= 0.5:
                notes.append(f"{system}/{phase}: others took {f['other_cores']:.2f} cores")
            elif f["busy_cores"] >= 1.85:
                notes.append(f"{system}/{phase}: machine {f['busy_cores']:.2f} cores busy")
    if not notes:
        return []
    head = "possible caps other than the server (generator >= 0.85 core, others >= 0.5 core, machine >= 1.85 busy):"
    return ["", head] + ["  " + "; ".join(notes[i : i + 3]) for i in range(0, len(notes), 3)]


def _memory(document: dict[str, Any]) -> list[str]:
    memory = document.get("memory")
    if not memory:
        return []
    lines = ["", "memory per idle connected socket holding a session (server RSS growth ÷ sockets):"]
    for system, runs in memory["runs"].items():
        figures = ", ".join(f"{r['bytes_per_socket'] / 1024:.1f}" for r in runs)
        last = runs[-1]
        lines.append(
            f"  {system:8} median {memory['median_bytes_per_socket'][system] / 1024:7.1f} KiB"
            f" (runs: {figures} KiB; {last['sockets']} sockets, RSS {last['rss_before_mb']:.0f} ->"
            f" {last['rss_after_mb']:.0f} MB, statuses {last['statuses']})"
        )
    return lines


def _big(document: dict[str, Any]) -> list[str]:
    big = document.get("big")
    if not big:
        return []
    lines = [
        "",
        f"ours' resume with {big['big_rows']:,} stored sessions vs {big['small_rows']:,}"
        f" (seeded in {big['seed_seconds']:.0f} s; resuming {big['sample']:,} seeded tokens vs all"
        f" {big['small_rows']:,}; no idle-extension write in either):",
        f"  {'clients':>8}{'rows':>11}{'ops/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'server':>8}{'db':>7}{'gen':>7}",
    ]
    for clients, per in big["median"].items():
        for label in ("small", "big"):
            f = per[label]
            rows = big["small_rows"] if label == "small" else big["big_rows"]
            lines.append(
                f"  {clients:>8}{rows:>11,}{_num(f['ops_per_s'])}{_num(f['p50_ms'], 2)}{_num(f['p99_ms'], 2)}"
                f"{_num(f['server_cpu_s'], 2, 8)}{_num(f['db_cpu_s'], 2, 7)}{_num(f['gen_cpu_s'], 2, 7)}"
            )
    return lines


def _durability(document: dict[str, Any]) -> list[str]:
    durability = document.get("durability", {})
    checks = durability.get("checks", [])
    if not checks:
        return ["", "durability: not checked (no demo:set of ours was measured)"]
    acks = sum(c["acked_sets"] for c in checks)
    keys = sum(c["acked_keys_checked"] for c in checks)
    missing = sum(c["missing"] for c in checks)
    wrong = sum(c["wrong"] for c in checks)
    verdict = "OK" if durability.get("ok") else "FAILED"
    lines = [
        "",
        f"durability {verdict}: {acks:,} acknowledged demo:set over {len(checks)} server runs;"
        f" {keys:,} (token, key) pairs read back, {missing} missing, {wrong} with a value other than the last acked",
    ]
    for check in checks:
        lines += [f"  {p}" for p in check["problems"]]
    return lines
