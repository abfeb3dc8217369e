"""Where ours' server spends its CPU in one phase: a py-spy profile, summed by layer.

    SESSION_TEST_MYSQL_URL=mysql://user:pass@127.0.0.1:3306/db .venv/bin/python -m bench.profile \\
        [--phase set] [--clients 50] [--seconds 10] [--workers 1]

It starts ``uvicorn entrypoints.asgi:app`` on a fresh table (as bench.speed does),
drives one phase with the load generator, records the server with ``py-spy record``
(sampling from outside the process, so the server runs unmodified), and prints the
share of samples per layer (our domain, application and adapters; aiomysql and
PyMySQL; python-socketio and engine.io; uvicorn and websockets; the event loop)
and the functions that used the most CPU themselves. The raw profile is kept in
bench/results/ for flame-graph tools.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.speed import RESULTS
from bench.systems import Database, Generator, node_generator_ready, ours

# (label, what a frame's file path contains). A sample counts for the first layer listed here that
# any frame of its stack is in: our layers include the library code they call.
LAYERS = (
    ("ours: MySQL store, group commit (with the driver calls it makes)", ("adapters/stores/",)),
    ("ours: application (handle, handshake)", ("application/",)),
    ("ours: domain (token, session, values, expiry)", ("domain/",)),
    ("ours: Socket.IO adapter and demo events", ("adapters/socketio/", "entrypoints/")),
    ("aiomysql / PyMySQL (outside our store's frames)", ("aiomysql/", "pymysql/")),
    ("python-socketio", ("socketio/",)),
    ("python-engineio (with the websocket sends it makes)", ("engineio/",)),
    ("uvicorn / websockets", ("uvicorn/", "websockets/")),
)
LOOP = "event loop (uvloop, in C), I/O and callbacks"


def layer_of(frames: Sequence[str]) -> str:
    # Every stack starts in uvicorn's main() down to asyncio.run(): only what the loop called counts.
    starts = [i for i, frame in enumerate(frames) if frame.startswith("Runner.run (")]
    called = frames[starts[-1] + 1 :] if starts else frames
    if not called:
        return LOOP
    for label, needles in LAYERS:
        if any(needle in frame for frame in called for needle in needles):
            return label
    return "other Python (asyncio, json, logging)"


def summarise(raw: str, top: int) -> str:
    layers: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        layers[layer_of(frames)] += int(count)
        own[frames[-1]] += int(count)
    if not total:
        return "no samples (is py-spy allowed to attach? it needs ptrace)"
    lines = [f"{total} samples of the server process", "", "share by layer:"]
    lines += [f"  {100 * n / total:5.1f}%  {label}" for label, n in layers.most_common()]
    lines += ["", f"top {top} functions by their own samples:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


async def profile(args: argparse.Namespace, db: Database, workdir: Path) -> str:
    table = f"bench_profile_{secrets.token_hex(4)}"
    db.migrate(table)
    server = ours(db, table, workdir / "server.log", workers=args.workers).start()
    kind = "node" if node_generator_ready() else "python"
    gen = await Generator.start(workdir / "generator.log", kind)
    raw_path = RESULTS / f"profile-{args.phase}-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    try:
        await gen.ask({"op": "connect", "url": server.url, "clients": args.clients, "first_index": 0})
        params = {"token": (await gen.ask({"op": "mint"}))["token"]} if args.phase == "shared" else {}
        await gen.ask({"op": "prepare", "phase": args.phase, "params": params})
        start = time.monotonic() + 1.0
        await gen.send({"op": "run", "phase": args.phase, "start": start, "end": start + args.seconds})
        await asyncio.sleep(1.0)
        RESULTS.mkdir(exist_ok=True)
        record = [
            str(args.py_spy), "record", "--pid", str(server.pid), "--duration", str(int(args.seconds)),
            "--rate", str(args.rate), "--format", "raw", "--output", str(raw_path), "--nonblocking",
        ]  # fmt: skip
        if args.workers > 1:
            record.append("--subprocesses")
        spy = await asyncio.create_subprocess_exec(*record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await spy.communicate()
        reply = await gen.receive()
        ops = len(reply["latencies"])
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace').strip()}")
        header = (
            f"ours, phase {args.phase}, {args.clients} clients, {args.workers} worker(s), {kind} generator:"
            f" {ops / args.seconds:.0f} ops/s, {reply['errors']} errors; raw profile {raw_path}"
        )
        return header + "\n" + summarise(raw_path.read_text(), args.top)
    finally:
        await gen.close()
        server.stop()
        db.drop(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", default="set", choices=("new", "resume", "set", "get", "shared", "notify"))
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    args = parser.parse_args(argv)
    url = os.environ.get("SESSION_TEST_MYSQL_URL")
    if not url:
        print("set SESSION_TEST_MYSQL_URL (tests/support/ensure_mariadb.sh prints one)", file=sys.stderr)
        return 2
    with TemporaryDirectory(prefix="bench-profile-") as tmp:
        print(asyncio.run(profile(args, Database(url), Path(tmp))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
