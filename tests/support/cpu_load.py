"""Busy processes beside a test: a slow, loaded machine on demand.

    with cpu_load(2) as load:      # two processes spinning, each wanting a whole core
        ...                        # the test, contending with them for the CPUs
    print(f"{load.cpu_seconds:.0f} s of CPU went to the load")

Each process is a ``python -c`` busy loop this context started; every one is stopped when the
context exits, however it exits (SIGTERM, then SIGKILL), and none is left if the test process
itself dies: each also stops as soon as its parent is no longer the process that started it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from attrs import Factory, define

# Spins; every ~1e6 iterations (a few tens of ms), checks it still has the parent that started it.
BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    for _ in range(1_000_000): pass\n"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@define
class CpuLoad:
    """The busy processes of one ``cpu_load`` context, and what they got."""

    niceness: int
    processes: list[subprocess.Popen[bytes]] = Factory(list)
    cpu_seconds: float | None = None  # CPU time the busy processes got, once stopped (None: not known here)

    def start(self, count: int) -> None:
        for _ in range(count):
            process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL)
            self.processes.append(process)
            if self.niceness:
                with contextlib.suppress(OSError):  # a child of ours: raising its niceness is always allowed
                    os.setpriority(os.PRIO_PROCESS, process.pid, self.niceness)

    def stop(self) -> None:
        """Stop every process started (SIGTERM, then SIGKILL after 5 s), noting the CPU time they got."""
        used = [_cpu_seconds(p.pid) for p in self.processes if p.poll() is None]
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        known = [s for s in used if s is not None]
        self.cpu_seconds = sum(known) if known and len(known) == len(used) else None


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of ``pid`` so far, from /proc (Linux); None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0], utime 11, stime 12
    return (int(fields[11]) + int(fields[12])) / _TICKS


@contextlib.contextmanager
def cpu_load(processes: int | None = None, *, niceness: int = 0) -> Iterator[CpuLoad]:
    """``processes`` busy processes (default: one per CPU) for the duration of the ``with`` block.

    ``niceness`` 0 makes them compete with the test's processes as equals; a higher one (up to 19)
    lets them yield to everything else, and so loads the machine less.
    """
    load = CpuLoad(niceness)
    try:
        load.start(processes if processes is not None else os.cpu_count() or 1)
        yield load
    finally:
        load.stop()
