"""Every store adapter, opened fresh and isolated, for the contract suite."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from adapters.stores.ddl import drop_tables
from adapters.stores.memory import MemoryStore
from adapters.stores.mysql import MySQLConfig, MySQLStore
from adapters.stores.sqlite import SQLiteStore
from application.ports import SessionStore

STORE_KINDS = ("memory", "sqlite", "mysql")


def mysql_url() -> str:
    """The test database URL; the README's test command sets it up. Never a silent skip."""
    url = os.environ.get("SESSION_TEST_MYSQL_URL", "")
    if not url:
        pytest.fail(
            "SESSION_TEST_MYSQL_URL is not set: run the tests with `make test`, which starts or finds "
            "MariaDB and creates a test database, or point it at one "
            "(mysql://user:password@127.0.0.1:3306/database)."
        )
    return url


def redis_url() -> str:
    """The Redis for the several-process tests; the README's test command sets it up."""
    url = os.environ.get("SESSION_TEST_REDIS_URL", "")
    if not url:
        pytest.fail("SESSION_TEST_REDIS_URL is not set: run the tests with `make test`, which starts or finds Redis.")
    return url


@asynccontextmanager
async def open_store(kind: str, workdir: Path) -> AsyncIterator[SessionStore]:
    """A fresh, empty store of ``kind``: its own table (MySQL) or file (SQLite)."""
    if kind == "memory":
        yield MemoryStore()
    elif kind == "sqlite":
        sqlite = SQLiteStore(str(workdir / f"{secrets.token_hex(4)}.sqlite3"))
        await sqlite.open()
        try:
            yield sqlite
        finally:
            await sqlite.close()
    elif kind == "mysql":
        table = f"t_{secrets.token_hex(6)}"
        mysql = MySQLStore(MySQLConfig.from_url(mysql_url(), table=table, pool_size=20))
        await mysql.migrate()
        await mysql.schema.check()
        try:
            yield mysql
        finally:
            await mysql.connection.run(drop_tables(table), (), idempotent=True)
            await mysql.close()
    else:  # pragma: no cover
        raise ValueError(kind)
