"""Sets and resumes per second on a 3-node Galera cluster against a single MariaDB node, in one run.

    SESSION_TEST_MYSQL_URL=mysql://... python -m bench.cluster [--clients 50,200] [--runs 3] [--quick]

Starts a private cluster (tests/support/galera.py: three ``mariadbd`` on this machine, Galera's own
settings), then measures the same server (``uvicorn entrypoints.asgi:app``, one process, its URL
listing the three nodes) on the cluster and on the single node of SESSION_TEST_MYSQL_URL, alternating
which goes first, with bench/speed.py's phases and load generator. On the cluster it measures twice:
with causal reads (the default) and without (SESSION_CAUSAL_READS=0), to show what they cost.

Both databases share the machine's two cores with the server and the generator; the cluster runs
three database servers on them, each replicating every write to the other two. Read the ratio as the
cost of the cluster's synchronous replication and certification on one host, not as what three hosts
would give.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.speed import RESULTS, Bench, Plan
from bench.systems import Database, node_generator_ready
from tests.support.galera import GaleraCluster
from tests.support.server import REPO, Server

PHASES = ("resume", "set")
SETUPS = ("single", "galera", "galera-no-causal")


def plan_for(args: argparse.Namespace) -> Plan:
    """bench/speed.py's plan for the phases measured here, with its defaults for the rest."""
    return Plan(
        argparse.Namespace(
            clients=args.clients,
            quick=args.quick,
            runs=args.runs,
            duration=args.duration,
            warmup=None,
            generators=1,
            generator=None if node_generator_ready() else "python",
            systems="ours",
            phases=",".join(PHASES),
            floor_pool=16,
            memory_sockets=0,
            big_rows=0,
            small_rows=0,
            big_sample=0,
            settle=None,
            quiet_cores=0.4,
            max_other=0.5,
            retries=None,
            no_memory=True,
            no_big=True,
            no_replay=True,
            replay_runs=0,
            replay_messages=0,
            notify_rate=0.0,
        )
    )


class ClusterBench(Bench):
    """bench/speed.py's Bench, its server told whether to read causally (SESSION_CAUSAL_READS)."""

    def __init__(self, plan: Plan, db: Database, workdir: Path, *, causal: bool) -> None:
        super().__init__(plan, db, workdir)
        self.causal = causal

    def server(self, system: str, table: str, log_path: Path) -> Server:
        server = super().server(system, table, log_path)
        server.env["SESSION_CAUSAL_READS"] = "1" if self.causal else "0"
        return server


async def measure(plan: Plan, databases: dict[str, Database], workdir: Path) -> list[dict[str, Any]]:
    raw: list[dict[str, Any]] = []
    names = list(databases)
    for run in range(plan.runs):
        for clients in plan.clients:
            turn = run % len(names)  # rotated each run, so that a drift in the machine's load favours none
            for name in names[turn:] + names[:turn]:
                bench = ClusterBench(plan, databases[name], workdir, causal=name != "galera-no-causal")
                bench.log(f"run {run + 1}/{plan.runs}: {name} with {clients} clients")
                raw.append(
                    {"run": run, "clients": clients, "setup": name, "results": await bench.system("ours", clients)}
                )
    return raw


def summary(raw: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for clients in plan.clients:
        for setup in SETUPS:
            runs = [r["results"] for r in raw if r["clients"] == clients and r["setup"] == setup]
            if not runs:
                continue
            table.setdefault(str(clients), {})[setup] = {
                phase: {
                    key: statistics.median(r[phase][key] for r in runs) for key in ("ops_per_s", "p50_ms", "p99_ms")
                }
                for phase in PHASES
            }
    return table


def render(table: dict[str, Any]) -> str:
    lines = [
        "| clients | phase | single node /s | Galera /s (ratio) | Galera, no causal reads /s (ratio) |"
        " p99 ms single / Galera |",
        "|---|---|---|---|---|---|",
    ]
    for clients, setups in table.items():
        single = setups["single"]
        for phase in PHASES:
            cells = [f"{single[phase]['ops_per_s']:.0f}"]
            for setup in ("galera", "galera-no-causal"):
                figures = setups.get(setup, {}).get(phase)
                if figures is None:
                    cells.append("-")
                else:
                    ratio = figures["ops_per_s"] / single[phase]["ops_per_s"]
                    cells.append(f"{figures['ops_per_s']:.0f} ({ratio:.2f})")
            p99 = f"{single[phase]['p99_ms']:.1f} / {setups['galera'][phase]['p99_ms']:.1f}"
            lines.append(f"| {clients} | {phase} | {' | '.join(cells)} | {p99} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="50,200", help="comma-separated client counts (default 50,200)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure, medians reported (default 3)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per phase window (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 s phases, 1 run")
    args = parser.parse_args(argv)
    url = os.environ.get("SESSION_TEST_MYSQL_URL", "")
    if not url:
        parser.error("set SESSION_TEST_MYSQL_URL=mysql://user:password@host:port/database (the single node)")
    plan = plan_for(args)
    started = time.time()
    with TemporaryDirectory(prefix="bench-cluster-") as tmp:
        workdir = Path(tmp)
        with GaleraCluster(workdir / "galera") as cluster:
            databases: dict[str, Database] = {
                "single": Database(url),
                "galera": Database(cluster.url),
                "galera-no-causal": Database(cluster.url),
            }
            raw = asyncio.run(measure(plan, databases, workdir))
            version = databases["galera"].version()
    table = summary(raw, plan)
    document = {
        "meta": {
            "started": datetime.fromtimestamp(started).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, "-m", "bench.cluster", *(argv or sys.argv[1:])]),
            "plan": plan.as_json(),
            "cluster": f"3 nodes of {version} on this machine, Galera defaults",
        },
        "median": table,
        "runs": raw,
    }
    print(render(table))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"cluster-{datetime.fromtimestamp(started).strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(document, indent=1, default=str))
    print(f"\nwritten to {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
