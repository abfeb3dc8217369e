"""A real ``uvicorn entrypoints.asgi:app`` process for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from attrs import define, field

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@define
class Server:
    """One ``uvicorn <app>`` process; ``restart()`` keeps its port and environment."""

    env: dict[str, str]
    log_path: Path
    app: str = "entrypoints.asgi:app"
    flags: tuple[str, ...] = ()  # more uvicorn options
    port: int = field(factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("server not started")
        return self.process.pid

    def start(self, timeout: float = 20) -> Server:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1", "--port", str(self.port), *self.flags],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def server_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without our settings, plus ``extra``.

    The demo events (user:login, demo:set, ...) are what most end-to-end tests drive,
    so they are on unless ``extra`` says ``SESSION_DEMO=0``. Every test client connects
    from 127.0.0.1, so the limit of new sessions per client address is lifted unless
    ``extra`` sets it (tests/e2e/test_hostile_clients.py does).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_", "SOCKETIO_"))}
    env["SESSION_DEMO"] = "1"
    env["SESSION_NEW_PER_ADDRESS"] = "1000000"
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_module(env: Mapping[str, str], module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` from the checkout, to its end, with its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_module(env, "entrypoints.cli", *args, timeout=60)


def run_until_exit(env: Mapping[str, str], app: str = "entrypoints.asgi:app") -> subprocess.CompletedProcess[str]:
    """Start ``uvicorn app`` and wait for it to exit on its own (a startup that must fail), at most 30 s."""
    return run_module(env, "uvicorn", app, "--port", str(free_port()), timeout=30)
