"""Handshake latency while 100,000 expired sessions are purged, against the same load without a purge.

    SESSION_TEST_MYSQL_URL=mysql://... .venv/bin/python -m bench.purge_under_load [--rows 100000] [--runs 3]

Starts its own uvicorn server on a fresh table, seeds the expired rows
directly in SQL, drives handshakes (new and resumed, via getToken) from many
python-socketio clients, and runs `python -m entrypoints.cli purge` in the
middle of the second phase. Prints a table and a JSON line; medians over runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import pymysql

from adapters.stores.ddl import drop_tables
from adapters.stores.mysql import MySQLConfig
from tests.support.client import Client
from tests.support.server import REPO, Server, run_cli, server_env
from tests.support.stores import mysql_url


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def connect() -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    c = MySQLConfig.from_url(mysql_url())
    return pymysql.connect(host=c.host, port=c.port, user=c.user, password=c.password, database=c.database)


def seed_expired(table: str, rows: int) -> None:
    now = time.time()
    conn = connect()
    try:
        with conn.cursor() as cursor:
            for start in range(0, rows, 5000):
                count = min(5000, rows - start)
                old = now - 9000
                values = ", ".join(
                    f"(UNHEX('{secrets.token_hex(32)}'), '{{}}', 0, {old}, {old}, {now - 5000 - i}, {now})"
                    for i in range(count)
                )
                cursor.execute(
                    f"INSERT INTO {table} (id, data, version, created, last_seen, expires, absolute_expires)"
                    f" VALUES {values}"
                )
        conn.commit()
    finally:
        conn.close()


def count_rows(table: str) -> int:
    conn = connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            return int(cursor.fetchone()[0])
    finally:
        conn.close()


async def load(url: str, clients: int, stop: asyncio.Event) -> list[float]:
    """Handshakes from ``clients`` sockets until ``stop``: new ones and resumes, alternating."""
    latencies: list[float] = []

    async def one(client: Client) -> None:
        token = ""
        while not stop.is_set():
            started = time.perf_counter()
            reply = await client.get_token(token)
            latencies.append(time.perf_counter() - started)
            token = "" if token else reply["token"]

    sockets = [Client(url) for _ in range(clients)]
    await asyncio.gather(*(s.__aenter__() for s in sockets))
    try:
        await asyncio.gather(*(one(s) for s in sockets))
    finally:
        await asyncio.gather(*(s.__aexit__() for s in sockets))
    return latencies


async def phase(
    url: str, clients: int, seconds: float | None, env: dict[str, str] | None
) -> tuple[list[float], dict[str, float]]:
    stop = asyncio.Event()
    task = asyncio.create_task(load(url, clients, stop))
    extra: dict[str, float] = {}
    started = time.perf_counter()
    if env is None:
        await asyncio.sleep(seconds or 5)
    else:
        await asyncio.sleep(1)  # load first, then the purge lands in the middle of it
        purge_started = time.perf_counter()
        result = await asyncio.to_thread(run_cli, env, "purge", "--batch", "1000")
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        extra["purge_seconds"] = time.perf_counter() - purge_started
        extra["purged"] = float(result.stdout.split()[1])
        await asyncio.sleep(0.5)
    stop.set()
    latencies = await task
    extra["seconds"] = time.perf_counter() - started
    return latencies, extra


async def run_once(rows: int, clients: int, workdir: Path) -> dict[str, float]:
    table = f"bench_purge_{secrets.token_hex(4)}"
    env = server_env(
        {
            "SESSION_STORE_URL": mysql_url(),
            "SESSION_TABLE": table,
            "SESSION_HANDSHAKE_LIMIT": "100000000",
            "SESSION_PURGE_INTERVAL": "0",
        }
    )
    migrated = run_cli(env, "migrate")
    if migrated.returncode != 0:
        raise RuntimeError(migrated.stderr)
    server = Server(env=env, log_path=workdir / f"{table}.log").start()
    try:
        seed_expired(table, rows)
        baseline, base_extra = await phase(server.url, clients, 6, None)
        seed_check = count_rows(table)
        during, extra = await phase(server.url, clients, None, env)
        return {
            "rows_seeded": rows,
            "rows_before_purge": seed_check,
            "purged": extra["purged"],
            "purge_seconds": extra["purge_seconds"],
            "baseline_p50_ms": percentile(baseline, 0.5) * 1000,
            "baseline_p99_ms": percentile(baseline, 0.99) * 1000,
            "baseline_per_s": len(baseline) / base_extra["seconds"],
            "purge_p50_ms": percentile(during, 0.5) * 1000,
            "purge_p99_ms": percentile(during, 0.99) * 1000,
            "purge_per_s": len(during) / extra["seconds"],
        }
    finally:
        server.stop()
        conn = connect()
        with conn.cursor() as cursor:
            cursor.execute(drop_tables(table))
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with TemporaryDirectory() as tmp:
        runs = [asyncio.run(run_once(args.rows, args.clients, Path(tmp))) for _ in range(args.runs)]
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    median["p99_ratio_purge_vs_baseline"] = median["purge_p99_ms"] / median["baseline_p99_ms"]
    print(f"handshakes with {args.clients} clients, {args.rows} expired rows purged (median of {args.runs} runs)")
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}{'per s':>10}")
    for label, prefix in (("without purge", "baseline"), ("during purge", "purge")):
        p50, p99, rate = median[f"{prefix}_p50_ms"], median[f"{prefix}_p99_ms"], median[f"{prefix}_per_s"]
        print(f"{label:24}{p50:>10.2f}{p99:>10.2f}{rate:>10.0f}")
    print(
        f"purge took {median['purge_seconds']:.2f} s for {median['purged']:.0f} rows;"
        f" p99 during/without = {median['p99_ratio_purge_vs_baseline']:.2f}x"
    )
    print(json.dumps({"median": median, "runs": runs}))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
