"""Speed of durable sessions against the ceiling (in-memory python-socketio) and the floor (raw aiomysql).

    SESSION_TEST_MYSQL_URL=mysql://user:pass@127.0.0.1:3306/db .venv/bin/python -m bench.speed \\
        [--clients 50,200] [--runs 3] [--quick] [--generators 1] [--generator node|python]

The measuring stick for sessions and for the mailbox. In one run, at each client count, it measures
these systems:

- ours: ``uvicorn entrypoints.asgi:app`` on a fresh MySQL table;
- ceiling: ``uvicorn bench.ceiling_app:app``, the same events and replies with sessions in a dict;
- floor: a raw aiomysql loop doing the same single-row statements, with no Socket.IO at all
  (as many concurrent loops as clients, over a pool of ``--floor-pool`` connections, autocommit on);

through eight phases, each a fixed window after a warm-up: new handshakes (``getToken``
with an empty token), handshakes by ``auth`` at connect (connect, ``gotToken``,
disconnect), resumes of stored tokens, ``demo:set`` with its ack, ``demo:get``,
many sockets sharing one token writing a key each, and mailbox messages
(``demo:notify`` from each socket to the next one's user, a delivery acknowledged by
its receiver being the operation; not for the floor) sent as fast as they go and at a
fixed ``--notify-rate`` (the latency without a queue). For each: operations per second,
p50/p99 latency, and the CPU seconds of the server process, of the database server
and of the load generator: ``--generators`` processes of Socket.IO clients over
websocket, Node's socket.io-client (bench/loadgen.mjs, the default: less CPU per
operation, so more of the cores left to what is measured) or python-socketio
AsyncClients (bench/loadgen.py, ``--generator python``); the floor's aiomysql loop
is always Python. Then: resident memory per idle socket holding a session (2,000
sockets, ours and ceiling, held by the chosen generator), ours' resume rate with
1,000,000 stored sessions against 1,000, the replay of a full mailbox on resume
(bench/mailbox.py: ours on MariaDB and on SQLite, and the ceiling), and a read-back
that every acknowledged ``demo:set`` of ours is in the database.

It starts and stops every server and process it measures, creates and drops its own
tables, prints a table per client count and the ratios to the targets, and writes
the whole JSON document to bench/results/speed-<timestamp>.json. Medians over runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench import procstat
from bench.mailbox import measure_replay
from bench.report import FLOOR_LABELS, PHASES, render, summarise
from bench.systems import GENERATOR_KINDS, Database, Generator, ceiling, node_generator_ready, ours
from tests.support.server import REPO, Server

SYSTEMS = ("ours", "ours2", "ceiling", "floor")
OURS = ("ours", "ours2")  # ours2: the same app under `uvicorn --workers 2` with the Redis message queue
RESULTS = Path(__file__).resolve().parent / "results"


class Plan:
    """What to measure, from the command line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.clients: list[int] = [int(c) for c in str(args.clients).split(",") if c.strip()]
        self.quick: bool = args.quick
        self.runs: int = args.runs if args.runs is not None else (1 if args.quick else 3)
        self.duration: float = args.duration if args.duration is not None else (2.0 if args.quick else 5.0)
        self.warmup: float = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
        self.generators: int = args.generators
        # Which program drives Socket.IO; the floor's aiomysql loop is Python whatever this says.
        self.generator: str = args.generator or ("node" if node_generator_ready() else "python")
        self.systems: list[str] = [s for s in args.systems.split(",") if s]
        self.phases: list[str] = [p for p in args.phases.split(",") if p]
        self.floor_pool: int = args.floor_pool
        self.memory_sockets: int = args.memory_sockets
        self.big_rows: int = args.big_rows if args.big_rows is not None else (100_000 if args.quick else 1_000_000)
        self.small_rows: int = args.small_rows
        self.big_sample: int = min(args.big_sample, self.big_rows)
        self.settle: float = args.settle if args.settle is not None else (3.0 if args.quick else 5.0)
        self.quiet_cores: float = args.quiet_cores
        self.max_other: float = args.max_other
        self.retries: int = args.retries if args.retries is not None else (0 if args.quick else 1)
        self.memory: bool = not args.no_memory
        self.big: bool = not args.no_big
        self.replay: bool = not args.no_replay
        self.replay_runs: int = args.replay_runs if args.replay_runs is not None else (2 if args.quick else 5)
        self.replay_messages: int = args.replay_messages
        self.notify_rate: float = args.notify_rate

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def shares(total: int, parts: int) -> list[tuple[int, int]]:
    """(first index, count) of each of ``parts`` near-equal shares of ``total``."""
    out, first = [], 0
    for p in range(parts):
        count = total // parts + (1 if p < total % parts else 0)
        out.append((first, count))
        first += count
    return [s for s in out if s[1] > 0]


class Bench:
    def __init__(self, plan: Plan, db: Database, workdir: Path) -> None:
        self.plan = plan
        self.db = db
        self.workdir = workdir
        self.db_pid = db.server_pid()
        self.durability: list[dict[str, Any]] = []

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    async def generators(self, count: int, kind: str | None = None) -> list[Generator]:
        """``count`` generator processes of ``kind`` (default: the plan's Socket.IO generator)."""
        log = self.workdir / "generators.log"
        chosen = kind or self.plan.generator
        return list(await asyncio.gather(*(Generator.start(log, chosen) for _ in range(count))))

    async def quiet(self) -> float:
        """Wait (at most ``settle`` seconds) until the machine is nearly idle; the seconds waited.

        Other people's work on the same cores takes CPU from whichever system is being
        measured; waiting for a lull before each window keeps that noise out where it can.
        """
        started = time.monotonic()
        while time.monotonic() - started < self.plan.settle:
            before = procstat.machine_ticks()
            await asyncio.sleep(0.5)
            if procstat.busy_cores(before, procstat.machine_ticks()) <= self.plan.quiet_cores:
                break
        return time.monotonic() - started

    async def timed(
        self, gens: list[Generator], phase: str, server_pid: int | None, params: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """One phase, measured again (up to ``retries`` times) if other work on the machine took too much CPU.

        The attempt with the least CPU used by others is kept; the writes of every attempt are checked.
        """
        attempts: list[dict[str, Any]] = []
        writes: list[dict[str, Any]] = []
        for _ in range(1 + self.plan.retries):
            waited = await self.quiet()
            figures = await self.attempt(gens, phase, server_pid, params)
            figures["settle_s"] = waited
            writes += figures.pop("_writes", [])
            attempts.append(figures)
            if figures["other_cores"] <= self.plan.max_other:
                break
        best = min(attempts, key=lambda f: f["other_cores"])
        best["attempts"] = len(attempts)
        if writes:
            best["_writes"] = writes
        return best

    async def attempt(
        self, gens: list[Generator], phase: str, server_pid: int | None, params: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """One phase: prepare, then every generator drives it; measure the window ``[start, end]``."""
        await asyncio.gather(
            *(
                g.ask({"op": "prepare", "phase": phase, "params": (params or [{}] * len(gens))[i]})
                for i, g in enumerate(gens)
            )
        )
        start = time.monotonic() + 0.3 + self.plan.warmup
        end = start + self.plan.duration
        await asyncio.gather(*(g.send({"op": "run", "phase": phase, "start": start, "end": end}) for g in gens))
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        server0 = procstat.family_cpu_seconds(server_pid) if server_pid else 0.0
        db0, machine0 = procstat.cpu_seconds(self.db_pid), procstat.machine_ticks()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        server1 = procstat.family_cpu_seconds(server_pid) if server_pid else 0.0
        db1, machine1 = procstat.cpu_seconds(self.db_pid), procstat.machine_ticks()
        replies = await asyncio.gather(*(g.receive() for g in gens))
        latencies = sorted(x for r in replies for x in r["latencies"])
        sends = sorted(x for r in replies for x in r.get("send_latencies", []))
        window = end - start
        figures: dict[str, Any] = {
            "ops": len(latencies),
            "ops_per_s": len(latencies) / window,
            "p50_ms": percentile(latencies, 0.50) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "errors": sum(r["errors"] for r in replies),
            "server_cpu_s": (server1 - server0) if server_pid else None,
            "db_cpu_s": db1 - db0,
            "gen_cpu_s": sum(r["cpu"] for r in replies),
            "busy_cores": procstat.busy_cores(machine0, machine1),
            "window_s": window,
        }
        if sends:
            # The notify phase: an operation is a delivery; the sender's own call (stored, then acked) apart.
            figures["sends_per_s"] = len(sends) / window
            figures["send_p50_ms"] = percentile(sends, 0.50) * 1000
            figures["send_p99_ms"] = percentile(sends, 0.99) * 1000
        # CPU per operation: less disturbed by other work on the machine than the rates are.
        ops = max(1, len(latencies))
        figures["server_us_per_op"] = figures["server_cpu_s"] * 1e6 / ops if server_pid else None
        figures["db_us_per_op"] = figures["db_cpu_s"] * 1e6 / ops
        figures["gen_us_per_op"] = figures["gen_cpu_s"] * 1e6 / ops
        ours_cpu = (figures["server_cpu_s"] or 0.0) + figures["db_cpu_s"] + figures["gen_cpu_s"]
        # Cores busy with anything else on the machine (other people's work, the kernel's): noise to watch.
        figures["other_cores"] = max(0.0, figures["busy_cores"] - ours_cpu / window)
        samples = [s for r in replies for s in r["error_samples"]]
        if samples:
            figures["error_samples"] = samples[:5]
        writes = [w for r in replies for w in r.get("writes", [])]
        if writes:
            figures["_writes"] = writes
        return figures

    async def system(self, system: str, clients: int) -> dict[str, Any]:
        """Every phase against one freshly started ``system`` with ``clients`` concurrent clients."""
        table = f"bench_speed_{secrets.token_hex(4)}"
        server: Server | None = None
        gens: list[Generator] = []
        parts = shares(clients, self.plan.generators)
        try:
            if system != "ceiling":
                self.db.migrate(table)
            if system != "floor":
                log_path = self.workdir / f"{system}-{table}.log"
                server = self.server(system, table, log_path).start()
            # Only bench/loadgen.py has the floor's aiomysql loop.
            gens = await self.generators(len(parts), "python" if system == "floor" else None)
            if server is not None:
                url = server.url
                await asyncio.gather(
                    *(
                        g.ask({"op": "connect", "url": url, "clients": n, "first_index": first})
                        for g, (first, n) in zip(gens, parts, strict=True)
                    )
                )
            else:
                pool = max(1, self.plan.floor_pool // len(parts))
                await asyncio.gather(
                    *(
                        g.ask(
                            {
                                "op": "floor",
                                "db": self.db.driver_args(),
                                "table": table,
                                "clients": n,
                                "pool": min(n, pool),
                                "first_index": first,
                            }
                        )
                        for g, (first, n) in zip(gens, parts, strict=True)
                    )
                )
            results: dict[str, Any] = {}
            writes: list[dict[str, Any]] = []
            for phase in self.plan.phases:
                if system == "floor" and phase not in FLOOR_LABELS:
                    continue  # no statement of the floor's stands for it (the mailbox)
                params: list[dict[str, Any]] | None = None
                if phase == "shared":
                    token = (await gens[0].ask({"op": "mint"}))["token"]
                    params = [{"token": token}] * len(gens)
                elif phase == "notify":
                    params = [{"clients": clients}] * len(gens)
                elif phase == "paced":
                    params = [{"clients": clients, "interval": clients / self.plan.notify_rate}] * len(gens)
                figures = await self.timed(gens, phase, server.pid if server else None, params)
                writes += figures.pop("_writes", [])
                results[phase] = figures
                self.log(
                    f"  {system:8} {clients:4} clients {phase:7} {figures['ops_per_s']:9.0f}/s"
                    f" p99 {figures['p99_ms']:7.1f} ms  errors {figures['errors']}"
                )
            if system in OURS and {"set", "shared"} & set(self.plan.phases):
                # Every acknowledged write must be in the database, read back through a fresh connection.
                check = await asyncio.to_thread(verify, self.db, table, writes)
                check["clients"] = clients
                self.durability.append(check)
                results["durability"] = check
            if server is not None:
                results["server_rss_mb"] = procstat.family_rss_bytes(server.pid) / 2**20
            return results
        finally:
            await asyncio.gather(*(g.close() for g in gens))
            if server is not None:
                server.stop()
            if system != "ceiling":
                self.db.drop(table)

    def server(self, system: str, table: str, log_path: Path) -> Server:
        if system == "ceiling":
            return ceiling(log_path)
        return ours(self.db, table, log_path, workers=2 if system == "ours2" else 1)

    async def memory(self, system: str) -> dict[str, Any]:
        """RSS growth of the server process per idle socket holding a session (auth handshake)."""
        table = f"bench_mem_{secrets.token_hex(4)}"
        log_path = self.workdir / f"memory-{system}-{table}.log"
        if system == "ours":
            self.db.migrate(table)
        server = (ours(self.db, table, log_path) if system == "ours" else ceiling(log_path)).start()
        gens: list[Generator] = []
        try:
            gens = await self.generators(1)
            gen = gens[0]
            # Warm up: imports, the pool's connections, the first allocations; then let it settle.
            await gen.ask({"op": "hold", "url": server.url, "count": 50})
            await gen.ask({"op": "release"})
            await asyncio.sleep(1.5)
            before = procstat.rss_bytes(server.pid)
            started = time.monotonic()
            held = await gen.ask({"op": "hold", "url": server.url, "count": self.plan.memory_sockets})
            connect_s = time.monotonic() - started
            await asyncio.sleep(2.0)
            after = procstat.rss_bytes(server.pid)
            await gen.ask({"op": "release"})
            return {
                "sockets": self.plan.memory_sockets,
                "statuses": held["statuses"],
                "rss_before_mb": before / 2**20,
                "rss_after_mb": after / 2**20,
                "bytes_per_socket": (after - before) / self.plan.memory_sockets,
                "connect_seconds": connect_s,
            }
        finally:
            await asyncio.gather(*(g.close() for g in gens))
            server.stop()
            if system == "ours":
                self.db.drop(table)

    async def big(self) -> dict[str, Any]:
        """Ours' resume rate with ``big_rows`` stored sessions against ``small_rows``, runs interleaved."""
        plan = self.plan
        small_table = f"bench_small_{secrets.token_hex(4)}"
        big_table = f"bench_big_{secrets.token_hex(4)}"
        servers: list[Server] = []
        out: dict[str, Any] = {"small_rows": plan.small_rows, "big_rows": plan.big_rows, "sample": plan.big_sample}
        try:
            small_tokens = [secrets.token_urlsafe(32) for _ in range(plan.small_rows)]
            big_tokens = [secrets.token_urlsafe(32) for _ in range(plan.big_sample)]
            self.db.migrate(small_table)
            self.db.migrate(big_table)
            self.db.seed_tokens(small_table, small_tokens)
            started = time.monotonic()
            self.db.seed_tokens(big_table, big_tokens)
            self.db.seed_sequence(big_table, plan.big_rows - plan.big_sample)
            out["seed_seconds"] = time.monotonic() - started
            out["rows_counted"] = {"small": self.db.count(small_table), "big": self.db.count(big_table)}
            self.log(f"seeded {out['rows_counted']} rows in {out['seed_seconds']:.1f} s")
            out["settle_seconds"] = await asyncio.to_thread(self.db.settle_writes)
            self.log(f"waited {out['settle_seconds']:.0f} s for InnoDB to flush the load")
            for table in (small_table, big_table):
                servers.append(ours(self.db, table, self.workdir / f"big-{table}.log").start())
            runs: list[dict[str, Any]] = []
            for run in range(plan.runs):
                for clients in plan.clients:
                    row: dict[str, Any] = {"run": run, "clients": clients}
                    order = [("small", servers[0], small_tokens), ("big", servers[1], big_tokens)]
                    for label, server, tokens in order if run % 2 == 0 else order[::-1]:
                        row[label] = await self.resume_only(server, clients, tokens)
                        self.log(
                            f"  resume {label:5} {clients:4} clients {row[label]['ops_per_s']:9.0f}/s"
                            f" p99 {row[label]['p99_ms']:7.1f} ms errors {row[label]['errors']}"
                        )
                    runs.append(row)
            out["runs"] = runs
            return out
        finally:
            for server in servers:
                server.stop()
            self.db.drop(small_table)
            self.db.drop(big_table)

    async def resume_only(self, server: Server, clients: int, tokens: list[str]) -> dict[str, Any]:
        parts = shares(clients, self.plan.generators)
        gens = await self.generators(len(parts))
        try:
            await asyncio.gather(
                *(
                    g.ask({"op": "connect", "url": server.url, "clients": n, "first_index": first})
                    for g, (first, n) in zip(gens, parts, strict=True)
                )
            )
            params = [{"tokens": tokens[i :: len(gens)]} for i in range(len(gens))]
            return await self.timed(gens, "resume", server.pid, params)
        finally:
            await asyncio.gather(*(g.close() for g in gens))


def verify(db: Database, table: str, writes: list[dict[str, Any]]) -> dict[str, Any]:
    """Read every written session back: each acknowledged key must hold its last acknowledged value.

    Each (token, key) has one writer (a socket's own token in the set phase, a key
    per socket in the shared phase) sending increasing values, so where several
    records name the same (token, key) (a phase measured again) the highest acked
    value is the last one. A write sent after it but not acknowledged (timeout,
    error) may or may not have landed: its value passes too.
    """
    last: dict[tuple[str, str], Any] = {}
    unsure: dict[tuple[str, str], list[Any]] = {}
    acks = 0
    for w in writes:
        acks += w["acks"]
        for key, value in w["acked"].items():
            if (w["token"], key) not in last or value > last[(w["token"], key)]:
                last[(w["token"], key)] = value
        for key, values in w["unsure"].items():
            unsure.setdefault((w["token"], key), []).extend(values)
    stored = db.sessions(table, sorted({token for token, _ in last}))
    missing = wrong = 0
    problems: list[str] = []
    for (token, key), value in last.items():
        data = stored[token]
        allowed = [value, *(v for v in unsure.get((token, key), []) if v > value)]
        if data is None or key not in data:
            missing += 1
            problems.append(f"token {token[:6]}…: key {key!r} acked as {value!r} is missing")
        elif data[key] not in allowed:
            wrong += 1
            problems.append(f"token {token[:6]}…: key {key!r} acked as {value!r}, stored {data[key]!r}")
    return {
        "tokens": len(stored),
        "rows_missing": sum(1 for d in stored.values() if d is None),
        "acked_sets": acks,
        "acked_keys_checked": len(last),
        "missing": missing,
        "wrong": wrong,
        "ok": missing == 0 and wrong == 0 and len(last) > 0,
        "problems": problems[:10],
    }


async def run(plan: Plan, db: Database, workdir: Path) -> dict[str, Any]:
    bench = Bench(plan, db, workdir)
    raw: list[dict[str, Any]] = []
    document: dict[str, Any] = {}
    for run_index in range(plan.runs):
        for clients in plan.clients:
            # Rotated each run, so that a drift in the machine's load favours no system.
            turn = run_index % max(1, len(plan.systems))
            order = plan.systems[turn:] + plan.systems[:turn]
            for system in order:
                bench.log(f"run {run_index + 1}/{plan.runs}: {system} with {clients} clients")
                raw.append(
                    {
                        "run": run_index,
                        "clients": clients,
                        "system": system,
                        "results": await bench.system(system, clients),
                    }
                )
    document["median"] = summarise(raw, plan.max_other)
    document["runs"] = raw
    if plan.memory:
        memory: dict[str, list[dict[str, Any]]] = {"ours": [], "ceiling": []}
        for run_index in range(plan.runs):
            for system in memory:
                bench.log(f"memory run {run_index + 1}/{plan.runs}: {system}, {plan.memory_sockets} idle sockets")
                memory[system].append(await bench.memory(system))
                bench.log(f"  {memory[system][-1]['bytes_per_socket']:.0f} bytes per socket")
        document["memory"] = {
            "runs": memory,
            "median_bytes_per_socket": {s: median([r["bytes_per_socket"] for r in m]) for s, m in memory.items()},
        }
    if plan.big:
        bench.log(f"resume with {plan.small_rows} vs {plan.big_rows} stored sessions")
        big = await bench.big()
        big["median"] = {
            str(c): {
                label: {
                    key: median([r[label][key] for r in big["runs"] if r["clients"] == c])
                    for key in ("ops_per_s", "p50_ms", "p99_ms", "server_cpu_s", "db_cpu_s", "gen_cpu_s", "errors")
                }
                for label in ("small", "big")
            }
            for c in plan.clients
        }
        document["big"] = big
    if plan.replay:
        bench.log(f"mailbox replay of {plan.replay_messages} messages, {plan.replay_runs} runs")
        document["replay"] = await measure_replay(bench)
    document["durability"] = {
        "checks": bench.durability,
        "ok": bool(bench.durability) and all(c["ok"] for c in bench.durability),
    }
    return document


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="50,200", help="comma-separated client counts (default 50,200)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure, medians reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="2 s phases, 1 run, 100,000 rows instead of 1,000,000")
    parser.add_argument("--duration", type=float, default=None, help="seconds per phase window (default 5)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each window (default 1)")
    parser.add_argument("--generators", type=int, default=1, help="load generator processes (default 1)")
    parser.add_argument(
        "--generator",
        choices=GENERATOR_KINDS,
        default=None,
        help="Socket.IO load generator: node (bench/loadgen.mjs; the default when node and tests/e2e/node's"
        " socket.io-client are installed) or python (bench/loadgen.py); the floor always uses python",
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="subset of ours,ours2,ceiling,floor (ours2: ours under uvicorn --workers 2, Redis message queue)",
    )
    parser.add_argument("--phases", default=",".join(PHASES), help="subset of " + ",".join(PHASES))
    # 16 connections keep 2 cores busy; with 64, MariaDB 10.11 collapsed on the shared-token phase (one hot
    # row: ~20 UPDATEs/s, 30 ms of server CPU each, spent waiting on the row lock), which is no floor.
    parser.add_argument("--floor-pool", type=int, default=16, help="aiomysql connections of the floor (default 16)")
    parser.add_argument("--memory-sockets", type=int, default=2000)
    parser.add_argument("--small-rows", type=int, default=1000)
    parser.add_argument("--big-rows", type=int, default=None, help="default 1,000,000 (100,000 with --quick)")
    parser.add_argument("--big-sample", type=int, default=20_000, help="seeded tokens the big resume uses")
    parser.add_argument(
        "--settle", type=float, default=None, help="wait at most this long for an idle machine before each phase (5 s)"
    )
    parser.add_argument("--quiet-cores", type=float, default=0.4, help="'idle' for --settle: cores busy (default 0.4)")
    parser.add_argument(
        "--max-other", type=float, default=0.5, help="measure a phase again if others used more cores (default 0.5)"
    )
    parser.add_argument("--retries", type=int, default=None, help="times a noisy phase is measured again (1; 0 quick)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--no-big", action="store_true", help="skip the 1,000,000-row resume measurement")
    parser.add_argument("--no-replay", action="store_true", help="skip the mailbox replay (bench/mailbox.py)")
    parser.add_argument(
        "--notify-rate", type=float, default=500.0, help="messages/s of the paced phase, all sockets together (500)"
    )
    parser.add_argument("--replay-runs", type=int, default=None, help="mailbox replays per system (5; 2 quick)")
    parser.add_argument("--replay-messages", type=int, default=1000, help="messages waiting in a replay (1000)")
    parser.add_argument("--render", metavar="JSON", help="print the tables of a saved bench/results file and exit")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        print(render(saved, saved["meta"]["plan"]))
        return 0
    if args.generator == "node" and not node_generator_ready():
        parser.error("--generator node needs node and socket.io-client: npm ci --prefix tests/e2e/node")
    plan = Plan(args)
    url = os.environ.get("SESSION_TEST_MYSQL_URL", "")
    if not url:
        parser.error("set SESSION_TEST_MYSQL_URL=mysql://user:password@host:port/database (a database to bench in)")
    unknown = (set(plan.systems) - set(SYSTEMS)) | (set(plan.phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown systems or phases {sorted(unknown)}")
    # 2,000 sockets need more descriptors than some defaults allow; servers and generators inherit this.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    db = Database(url)
    started = time.time()
    wall = time.monotonic()
    with TemporaryDirectory(prefix="bench-speed-") as tmp:
        document = asyncio.run(run(plan, db, Path(tmp)))
    document["meta"] = {
        "started": datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "wall_seconds": time.monotonic() - wall,
        "command": " ".join([Path(sys.executable).name, "-m", "bench.speed", *(argv or sys.argv[1:])]),
        "plan": plan.as_json(),
        "cpu_cores": procstat.CORES,
        "python": platform.python_version(),
        "database": db.version(),
        "database_settings": db.settings(),
        "open_files_limit": hard,
        "uvicorn_flags": "--no-access-log --log-level warning",
    }
    print(render(document, plan.as_json()))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"speed-{datetime.fromtimestamp(started).strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(document, indent=1, default=str))
    print(json.dumps(document, default=str))
    print(f"\nwritten to {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
