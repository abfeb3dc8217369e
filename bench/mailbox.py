"""The mailbox's speed: live delivery to connected sockets, and the replay of a full mailbox.

    SESSION_TEST_MYSQL_URL=mysql://user:pass@127.0.0.1:3306/db .venv/bin/python -m bench.mailbox \\
        [--clients 50,200] [--runs 3] [--replay-runs 5] [--replay-messages 1000] [bench.speed's options]

Both are part of ``make bench`` (bench.speed): this command runs only them, as
``bench.speed --phases notify,paced --systems ours,ceiling --no-memory --no-big``
would (``--systems`` and ``--phases`` may be given to change that).

- Live (bench.speed's ``notify`` and ``paced`` phases): each of N sockets is logged
  in as its own user and sends ``demo:notify`` to the next socket's user, one at a
  time: again as soon as answered (``notify``: the rate), or all together at
  ``--notify-rate`` messages per second (``paced``: the latency when no queue
  builds). An operation is a delivery, its latency from the send call to the
  receiver's ``notice`` (acknowledged at once). Against the ceiling
  (bench/ceiling_app.py), which keeps the message in a dict and emits it: the
  same events with nothing stored.
- Replay (here): a session with ``--replay-messages`` messages waiting (sent with
  no socket connected) is resumed by ``auth``; the time from the connect call to
  the last message received, and to the store holding every acknowledgement (its
  ``mail_waiting`` read back at 0), on MariaDB, on SQLite, and for the ceiling.
  A fresh session each run, systems in turn, medians over runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import procstat
from bench.systems import Database, Generator, ceiling, ours, ours_sqlite
from tests.support.server import Server

if TYPE_CHECKING:
    from bench.speed import Bench

REPLAY_SYSTEMS = ("ours", "ours-sqlite", "ceiling")
FILL_CONCURRENCY = 20  # demo:notify in flight while a mailbox is filled
STORED_POLL = 0.005  # seconds between reads of mail_waiting after the last message came
STORED_TIMEOUT = 60.0


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def _waiting_mysql(db: Database, table: str) -> Callable[[str], int]:
    def waiting(token: str) -> int:
        rows = db.query(f"SELECT mail_waiting FROM {table} WHERE id = %s", (_digest(token),))
        return int(rows[0][0]) if rows else -1

    return waiting


def _waiting_sqlite(path: Path, table: str) -> Callable[[str], int]:
    def waiting(token: str) -> int:
        # Read-only and short: the server's own connection writes meanwhile (WAL).
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute(f'SELECT mail_waiting FROM "{table}" WHERE id = ?', (_digest(token),)).fetchone()
        return int(row[0]) if row else -1

    return waiting


async def _stored(waiting: Callable[[str], int], token: str) -> float | None:
    """The instant the store first says no message of ``token``'s session waits (None: not within the timeout)."""
    deadline = time.monotonic() + STORED_TIMEOUT
    while time.monotonic() < deadline:
        left = await asyncio.to_thread(waiting, token)
        if left == 0:
            return time.monotonic()
        await asyncio.sleep(STORED_POLL)
    return None


async def measure_replay(bench: Bench) -> dict[str, Any]:
    """Each of ours (MariaDB), ours (SQLite) and the ceiling replaying a full mailbox, ``replay_runs`` times."""
    plan, db = bench.plan, bench.db
    count = plan.replay_messages
    table = f"bench_mail_{secrets.token_hex(4)}"
    sqlite_path = bench.workdir / f"{table}.sqlite3"
    servers: dict[str, Server] = {}
    waiting: dict[str, Callable[[str], int] | None] = {
        "ours": _waiting_mysql(db, table),
        "ours-sqlite": _waiting_sqlite(sqlite_path, table),
        "ceiling": None,  # acknowledgements drop the message from a dict at once
    }
    gens: list[Generator] = []
    out: dict[str, Any] = {"messages": count, "systems": list(REPLAY_SYSTEMS), "runs": []}
    try:
        db.migrate(table)
        servers["ours"] = ours(db, table, bench.workdir / f"replay-ours-{table}.log").start()
        servers["ours-sqlite"] = ours_sqlite(sqlite_path, table, bench.workdir / f"replay-sqlite-{table}.log").start()
        servers["ceiling"] = ceiling(bench.workdir / f"replay-ceiling-{table}.log").start()
        gens = await bench.generators(1)
        gen = gens[0]
        for run in range(plan.replay_runs):
            turn = run % len(REPLAY_SYSTEMS)  # rotated, so that a drift in the machine's load favours none
            for system in REPLAY_SYSTEMS[turn:] + REPLAY_SYSTEMS[:turn]:
                server = servers[system]
                filled = await gen.ask(
                    {
                        "op": "fill",
                        "url": server.url,
                        "user": f"r{run}",
                        "count": count,
                        "concurrency": FILL_CONCURRENCY,
                    }
                )
                await bench.quiet()
                server0 = procstat.family_cpu_seconds(server.pid)
                db0 = procstat.cpu_seconds(bench.db_pid)
                got = await gen.ask({"op": "replay", "url": server.url, "token": filled["token"], "count": count})
                check = waiting[system]
                stored = await _stored(check, filled["token"]) if check is not None else None
                server1 = procstat.family_cpu_seconds(server.pid)
                db1 = procstat.cpu_seconds(bench.db_pid)
                tail = await gen.ask({"op": "unreplay"})
                row = {
                    "run": run,
                    "system": system,
                    "fill_seconds": filled["seconds"],
                    **{k: v for k, v in got.items() if k not in ("ok", "began")},
                    "stored_s": stored - got["began"] if stored is not None else None,
                    "messages_per_s": count / got["last_s"],
                    "received_in_all": tail["received"],
                    "server_cpu_s": server1 - server0,
                    "db_cpu_s": db1 - db0 if system == "ours" else None,
                }
                row["ok"] = (
                    row["received_in_all"] == count
                    and row["in_order"]
                    and row["replayed_all"]
                    and (check is None or stored is not None)
                )
                out["runs"].append(row)
                stored_text = f"{row['stored_s']:.3f} s" if row["stored_s"] is not None else "-"
                bench.log(
                    f"  replay {system:11} {count} messages: last after {row['last_s']:.3f} s"
                    f" ({row['messages_per_s']:.0f}/s), acks stored after {stored_text}"
                    f"{'' if row['ok'] else '  NOT OK: ' + repr(row)}"
                )
    finally:
        await asyncio.gather(*(g.close() for g in gens))
        for server in servers.values():
            server.stop()
        db.drop(table)
    out["median"] = {system: _medians([r for r in out["runs"] if r["system"] == system]) for system in REPLAY_SYSTEMS}
    out["ok"] = bool(out["runs"]) and all(r["ok"] for r in out["runs"])
    return out


def _medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("token_s", "first_s", "last_s", "stored_s", "messages_per_s", "server_cpu_s", "db_cpu_s", "fill_seconds")
    medians: dict[str, Any] = {"runs": len(rows)}
    for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None]
        medians[key] = float(statistics.median(values)) if values else None
    return medians


def render_replay(document: dict[str, Any]) -> list[str]:
    """The replay's table and its ratios to the ceiling, for bench.report."""
    replay = document.get("replay")
    if not replay:
        return []
    count = replay["messages"]
    medians = replay["median"]
    runs = max((m["runs"] for m in medians.values()), default=0)
    lines = [
        "",
        f"mailbox replay: {count:,} messages waiting, resumed by auth (medians of {runs} runs; seconds from the"
        " connect call; 'stored': the store's mail_waiting back at 0, every acknowledgement committed):",
        f"  {'system':13}{'gotToken':>9}{'first':>8}{'last':>8}{'stored':>8}{'msgs/s':>9}{'server':>8}{'db':>7}"
        f"{'÷ ceiling':>10}",
    ]
    ceiling_rate = medians.get("ceiling", {}).get("messages_per_s")
    for system in replay["systems"]:
        m = medians.get(system)
        if not m:
            continue
        ratio = m["messages_per_s"] / ceiling_rate if ceiling_rate and m["messages_per_s"] else None
        lines.append(
            f"  {system:13}{_num(m['token_s'], 3, 9)}{_num(m['first_s'], 3, 8)}{_num(m['last_s'], 3, 8)}"
            f"{_num(m['stored_s'], 3, 8)}{_num(m['messages_per_s'], 0, 9)}{_num(m['server_cpu_s'], 2, 8)}"
            f"{_num(m['db_cpu_s'], 2, 7)}{_num(ratio, 2, 10)}"
        )
    verdict = (
        "every run got each message once, in id order, marked replayed"
        if replay["ok"]
        else "FAILED: " + str([r for r in replay["runs"] if not r["ok"]][:2])
    )
    lines.append(f"  {verdict}")
    return lines


def _num(value: float | None, digits: int, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


MAILBOX_DEFAULTS = ("--phases", "notify,paced", "--systems", "ours,ceiling", "--no-memory", "--no-big")


def main(argv: Sequence[str] | None = None) -> int:
    """bench.speed with the mailbox's figures only (the options given after the defaults win)."""
    from bench import speed  # bench.speed imports this module for the replay

    return speed.main([*MAILBOX_DEFAULTS, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
