"""A real server on a fresh table or file, and a direct line to the store behind it (to read rows back)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

from attrs import define

from adapters.stores.ddl import drop_tables
from adapters.stores.mysql import MySQLConfig, MySQLStore
from adapters.stores.sqlite import SQLiteStore
from domain.session import Session
from domain.token import Token
from tests.support.server import Server, run_cli, server_env
from tests.support.stores import mysql_url


@define
class Deployment:
    """A running server and a direct line to the store behind it (to read rows back)."""

    kind: str
    server: Server
    env: dict[str, str]

    def store(self) -> MySQLStore | SQLiteStore:
        if self.kind == "mysql":
            return MySQLStore(MySQLConfig.from_url(self.env["SESSION_STORE_URL"], table=self.env["SESSION_TABLE"]))
        return SQLiteStore(self.env["SESSION_STORE_URL"].removeprefix("sqlite:///"), table=self.env["SESSION_TABLE"])

    async def count_rows(self) -> int:
        store = self.store()
        await store.open()
        try:
            if isinstance(store, MySQLStore):
                return int(
                    (await store.connection.run(f"SELECT COUNT(*) FROM {store.sql_name}", (), idempotent=True)).rows[0][
                        0
                    ]
                )
            # The embedded store has no counting method; purging with "now" at the end of time would delete.
            import sqlite3

            with sqlite3.connect(store.path) as db:
                return int(db.execute(f"SELECT COUNT(*) FROM {store.sql_name}").fetchone()[0])
        finally:
            await store.close()

    async def row(self, token: str) -> Session | None:
        store = self.store()
        await store.open()
        try:
            return await store.fetch(Token(token).digest)
        finally:
            await store.close()


def deploy(
    kind: str, workdir: Path, *, migrate: bool = True, flags: tuple[str, ...] = (), **extra: str
) -> Iterator[Deployment]:
    """Start a server on a fresh table (MySQL, created with the CLI unless ``migrate`` is False) or file.

    ``flags`` are more uvicorn options.
    """
    table = extra.pop("SESSION_TABLE", f"e2e_{secrets.token_hex(5)}")
    if kind == "mysql":
        env = server_env({"SESSION_STORE_URL": mysql_url(), "SESSION_TABLE": table, **extra})
        if migrate:
            migrated = run_cli(env, "migrate")
            assert migrated.returncode == 0, migrated.stderr
    else:
        env = server_env(
            {"SESSION_STORE_URL": f"sqlite:///{workdir / 'sessions.sqlite3'}", "SESSION_TABLE": table, **extra}
        )
    server = Server(env=env, log_path=workdir / "server.log", flags=flags).start()
    try:
        yield Deployment(kind, server, env)
    finally:
        server.stop()
        if kind == "mysql":
            import pymysql

            config = MySQLConfig.from_url(mysql_url())  # directly, even when the server went through a proxy
            conn = pymysql.connect(
                host=config.host, port=config.port, user=config.user, password=config.password, database=config.database
            )
            with conn.cursor() as cursor:
                cursor.execute(drop_tables(table))
            conn.close()
