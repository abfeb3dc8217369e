"""What the speed benchmark starts and stops: servers, generator processes (Node or Python), tables, seeded rows."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pymysql

from adapters.stores.ddl import drop_tables
from adapters.stores.mysql import MySQLConfig
from bench.procstat import pid_of
from tests.support.server import REPO, Server, run_cli, server_env

UVICORN_FLAGS = ("--no-access-log", "--log-level", "warning")
IDLE_TTL = 86400.0
ABSOLUTE_TTL = 30 * 86400.0
GENERATOR_KINDS = ("node", "python")
NODE_LOADGEN = REPO / "bench" / "loadgen.mjs"
NODE_CLIENT = REPO / "tests" / "e2e" / "node" / "node_modules" / "socket.io-client" / "package.json"


class Database:
    """The MariaDB/MySQL under test, reached with PyMySQL for setup, seeding and read-back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.config = MySQLConfig.from_url(url)

    def driver_args(self) -> dict[str, Any]:
        c = self.config
        return {"host": c.host, "port": c.port, "user": c.user, "password": c.password, "db": c.database}

    def connect(self) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        c = self.config
        return pymysql.connect(
            host=c.host, port=c.port, user=c.user, password=c.password, database=c.database, autocommit=True
        )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def server_pid(self) -> int:
        """The pid of the database server, so its CPU time can be read from /proc."""
        pid_file = str(self.query("SELECT @@pid_file")[0][0])
        try:
            return int(Path(pid_file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        port = self.config.port
        candidates = pid_of("mariadbd") + pid_of("mysqld")
        for pid in candidates:
            args = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            ports = [a.split("=", 1)[1] for a in args if a.startswith("--port=")]
            if (ports and ports[0] == str(port)) or (not ports and port == 3306):
                return pid
        raise RuntimeError(f"cannot find the database server's pid (pid file {pid_file}, candidates {candidates})")

    def version(self) -> str:
        return str(self.query("SELECT VERSION()")[0][0])

    def settings(self) -> dict[str, Any]:
        names = ["innodb_buffer_pool_size", "innodb_flush_log_at_trx_commit", "max_connections", "log_bin"]
        return {n: self.query(f"SELECT @@{n}")[0][0] for n in names}

    def migrate(self, table: str) -> None:
        result = run_cli(server_env({"SESSION_STORE_URL": self.url, "SESSION_TABLE": table}), "migrate")
        if result.returncode != 0:
            raise RuntimeError(f"migrate {table} failed: {result.stderr or result.stdout}")

    def drop(self, table: str) -> None:
        self.query(drop_tables(table))

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {table}")[0][0])

    def seed_tokens(self, table: str, tokens: list[str], chunk: int = 5000) -> None:
        """Rows for ``tokens`` (their SHA-256 as the key), in multi-row INSERTs.

        ``expires`` is set an hour past the idle window, so that no resume during
        the benchmark pays the idle-extension write: the comparison is of lookups.
        """
        now = time.time()
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                for start in range(0, len(tokens), chunk):
                    part = tokens[start : start + chunk]
                    values = ", ".join(["(UNHEX(%s), '{}', 0, %s, %s, %s, %s)"] * len(part))
                    params: list[Any] = []
                    for token in part:
                        hexid = hashlib.sha256(token.encode("ascii")).hexdigest()
                        params += [hexid, now, now, now + IDLE_TTL + 3600, now + ABSOLUTE_TTL]
                    cursor.execute(
                        f"INSERT INTO {table} (id, data, version, created, last_seen, expires, absolute_expires)"
                        f" VALUES {values}",
                        params,
                    )
        finally:
            conn.close()

    def seed_sequence(self, table: str, rows: int, chunk: int = 100_000) -> None:
        """``rows`` more rows whose keys are SHA-256 of strings nobody holds (MariaDB's sequence engine)."""
        now = time.time()
        salt = secrets.token_hex(8)
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                for start in range(1, rows + 1, chunk):
                    end = min(rows, start + chunk - 1)
                    cursor.execute(
                        f"INSERT INTO {table} (id, data, version, created, last_seen, expires, absolute_expires)"
                        f" SELECT UNHEX(SHA2(CONCAT(%s, seq), 256)), '{{}}', 0, %s, %s, %s, %s"
                        f" FROM seq_{start}_to_{end}",
                        (salt, now, now, now + IDLE_TTL + 3600, now + ABSOLUTE_TTL),
                    )
        finally:
            conn.close()

    def settle_writes(self, timeout: float = 180.0, dirty_pages: int = 200) -> float:
        """Wait until InnoDB has flushed what a bulk load left dirty; the seconds waited.

        Right after seeding a million rows, InnoDB's background flushing takes CPU
        from whatever is measured next: the comparison would be of a load's aftermath.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            rows = self.query("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
            if not rows or int(rows[0][1]) <= dirty_pages:
                break
            time.sleep(1.0)
        return time.monotonic() - started

    def sessions(self, table: str, tokens: list[str]) -> dict[str, dict[str, Any] | None]:
        """Each token's stored session data (None where there is no row)."""
        found: dict[str, dict[str, Any] | None] = {}
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                for token in tokens:
                    cursor.execute(
                        f"SELECT data FROM {table} WHERE id = UNHEX(%s)",
                        (hashlib.sha256(token.encode("ascii")).hexdigest(),),
                    )
                    row = cursor.fetchone()
                    found[token] = json.loads(row[0]) if row else None
        finally:
            conn.close()
        return found


def ours(db: Database, table: str, log_path: Path, workers: int = 1) -> Server:
    """``uvicorn entrypoints.asgi:app`` on ``table``: no handshake limit in reach, no background purge.

    With ``workers`` > 1, ``uvicorn --workers N`` and the Redis message queue that
    several processes need (SESSION_TEST_REDIS_URL, else the local Redis).
    """
    settings = {
        "SESSION_STORE_URL": db.url,
        "SESSION_TABLE": table,
        "SESSION_HANDSHAKE_LIMIT": "1000000000",
        "SESSION_PURGE_INTERVAL": "0",
    }
    flags: tuple[str, ...] = UVICORN_FLAGS
    if workers > 1:
        settings["SOCKETIO_MESSAGE_QUEUE"] = os.environ.get("SESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        settings["SESSION_RELAY_KEY"] = secrets.token_urlsafe(32)
        flags += ("--workers", str(workers))
    return Server(env=server_env(settings), log_path=log_path, app="entrypoints.asgi:app", flags=flags)


def ours_sqlite(path: Path, table: str, log_path: Path) -> Server:
    """``uvicorn entrypoints.asgi:app`` on the SQLite file ``path`` (made, with its schema, at startup)."""
    settings = {
        "SESSION_STORE_URL": f"sqlite:///{path}",
        "SESSION_TABLE": table,
        "SESSION_HANDSHAKE_LIMIT": "1000000000",
        "SESSION_PURGE_INTERVAL": "0",
    }
    return Server(env=server_env(settings), log_path=log_path, app="entrypoints.asgi:app", flags=UVICORN_FLAGS)


def ceiling(log_path: Path) -> Server:
    return Server(env=server_env({}), log_path=log_path, app="bench.ceiling_app:app", flags=UVICORN_FLAGS)


def node_generator_ready() -> bool:
    """Whether ``node bench/loadgen.mjs`` can run: Node on the PATH, socket.io-client installed in tests/e2e/node."""
    return shutil.which("node") is not None and NODE_CLIENT.is_file()


class Generator:
    """One load generator process, driven one JSON line at a time.

    ``python``: ``python -m bench.loadgen`` (python-socketio clients, and the only one that drives the floor);
    ``node``: ``node bench/loadgen.mjs`` (socket.io-client, the same protocol for Socket.IO at less CPU per op).
    """

    def __init__(self, process: asyncio.subprocess.Process, kind: str) -> None:
        self.process = process
        self.kind = kind

    @classmethod
    async def start(cls, stderr_path: Path, kind: str = "python") -> Generator:
        if kind not in GENERATOR_KINDS:
            raise ValueError(f"unknown generator {kind!r}")
        node = shutil.which("node") or "node"
        command = [node, str(NODE_LOADGEN)] if kind == "node" else [sys.executable, "-m", "bench.loadgen"]
        with stderr_path.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                limit=256 * 1024 * 1024,  # a run's reply carries every latency
            )
        return cls(process, kind)

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None  # noqa: S101 (created with a pipe)
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None  # noqa: S101 (created with a pipe)
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.kind} generator {self.process.pid} exited ({await self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"{self.kind} generator {self.process.pid}: {reply.get('error')}")
        return reply

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        await self.send(command)
        return await self.receive()

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(TimeoutError, RuntimeError):
                await asyncio.wait_for(self.ask({"op": "close"}), 30)
            if self.process.returncode is None:
                try:
                    await asyncio.wait_for(self.process.wait(), 10)
                except TimeoutError:
                    self.process.kill()
                    await self.process.wait()
