"""How the stores name what goes wrong on day one, in process, against a real MariaDB.

A wrong password, a database we may not use or nothing listening is
StoreUnavailable in the server's own words (never the password) and is not
retried; a URL whose password holds a delimiter is refused without echoing
any of it; a table under our name that is not ours says what differs, on
MySQL and SQLite alike; migrate is quiet when run again; a failed SQLite open
releases its connection. The command-line side is tests/e2e/test_day_one_errors.py.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from attrs import evolve

from adapters.stores.mysql import MySQLConfig, MySQLStore, describe_mysql_error
from adapters.stores.sqlite import SQLiteStore
from application.errors import SchemaMissing, StoreUnavailable
from tests.support.server import free_port
from tests.support.stores import mysql_url


def _config(**changes: Any) -> MySQLConfig:
    return evolve(MySQLConfig.from_url(mysql_url(), table=f"err_{secrets.token_hex(5)}"), **changes)


@pytest.fixture
async def store() -> AsyncIterator[MySQLStore]:
    opened = MySQLStore(_config())
    try:
        yield opened
    finally:
        for name in (opened.schema.mailbox, opened.table):  # DROP TABLE IF EXISTS would warn about one never made
            if await opened.schema.columns(name):
                await opened.connection.run(f"DROP TABLE `{name}`", (), idempotent=True)
        await opened.close()


@pytest.mark.mysql
async def test_a_wrong_password_is_store_unavailable_in_the_servers_words_and_is_not_retried() -> None:
    password = f"Wr0ng-{secrets.token_hex(6)}"
    store = MySQLStore(_config(password=password))
    with pytest.raises(StoreUnavailable) as raised:
        await store.open()
    message = str(raised.value)
    c = store.config
    assert message.startswith(f"MySQL at {c.host}:{c.port} refused: (1045) Access denied for user '{c.user}'@")
    assert password not in message
    assert store.retries == 0  # a refusal is final: retrying would only hammer the server
    assert store.connection._pool is None  # a failed open closed what it had made


@pytest.mark.mysql
async def test_a_database_we_may_not_use_is_store_unavailable() -> None:
    store = MySQLStore(_config(database=f"not_ours_{secrets.token_hex(4)}"))
    with pytest.raises(StoreUnavailable, match=r"refused: \(1044\) Access denied for user .* to database 'not_ours_"):
        await store.open()
    assert store.retries == 0


@pytest.mark.mysql
async def test_nothing_listening_is_store_unavailable_with_the_reason() -> None:
    port = free_port()
    store = MySQLStore(_config(port=port))
    with pytest.raises(StoreUnavailable) as raised:
        await store.ping()
    await store.close()
    message = str(raised.value)
    assert message.startswith(f"cannot reach MySQL at 127.0.0.1:{port}: (2003) Can't connect to MySQL server")
    assert "Errno 111" in message  # connection refused: the driver keeps that in the exception's cause
    assert store.retries >= 1  # never sent, so retried within the operation's time bound


@pytest.mark.mysql
async def test_an_unexpected_error_is_not_disguised_but_reads_as_one_line(store: MySQLStore) -> None:
    with pytest.raises(pymysql.err.ProgrammingError) as raised:
        await store.connection.run("SELEC 1", (), idempotent=True)
    line = describe_mysql_error(raised.value)
    assert line.startswith("MySQL error 1064: You have an error in your SQL syntax")
    assert "\n" not in line


@pytest.mark.mysql
async def test_migrate_run_again_does_nothing_and_warns_nothing(store: MySQLStore) -> None:
    await store.migrate()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await store.migrate()
        await store.schema.check()
    assert [str(w.message) for w in caught] == []


@pytest.mark.mysql
async def test_create_if_not_exists_on_an_existing_table_still_makes_the_driver_warn(store: MySQLStore) -> None:
    """Why migrate looks before it creates: if this stops warning, the look is no longer needed for quiet."""
    await store.migrate()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await store.connection.run(f"CREATE TABLE IF NOT EXISTS {store.table} (id INT)", (), idempotent=True)
    assert any("already exists" in str(w.message) for w in caught)


@pytest.mark.mysql
async def test_a_missing_table_points_at_migrate_and_the_ddl(store: MySQLStore) -> None:
    with pytest.raises(SchemaMissing) as raised:
        await store.schema.check()
    message = str(raised.value)
    assert f"table `{store.table}` in database `{store.config.database}` does not exist" in message
    assert "python -m entrypoints.cli migrate" in message
    assert "sql/mysql.sql" in message


@pytest.mark.mysql
async def test_a_table_that_is_not_ours_says_what_differs_and_migrate_leaves_it_alone(store: MySQLStore) -> None:
    await store.connection.run(
        f"CREATE TABLE {store.table} (id INT PRIMARY KEY, Data TEXT, payload TEXT, expires INT, Extra2 INT)",
        (),
        idempotent=True,
    )
    await store.migrate()  # leaves it as it is
    assert await store.schema.columns() == ["id", "Data", "payload", "expires", "Extra2"]
    for attempt in (store.schema.check, store.open):
        with pytest.raises(SchemaMissing) as raised:
            await attempt()
        message = str(raised.value)
        assert "exists but is not a session table of ours" in message
        assert "lacks our columns version, created, last_seen, absolute_expires, user_id" in message
        assert "columns we do not use: payload, Extra2" in message
        assert "SESSION_TABLE" in message
        assert "migrate" not in message


@pytest.mark.mysql
async def test_a_table_with_our_columns_and_more_is_accepted(store: MySQLStore) -> None:
    await store.migrate()
    await store.connection.run(f"ALTER TABLE {store.table} ADD COLUMN note TEXT NULL", (), idempotent=True)
    await store.schema.check()


async def test_a_failed_sqlite_open_leaves_nothing_open(tmp_path: Path) -> None:
    path = tmp_path / "not_a_database"
    path.write_bytes(b"this is not SQLite " * 512)
    store = SQLiteStore(str(path))
    with pytest.raises(StoreUnavailable, match="file is not a database"):
        await store.open()
    assert store._db is None
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.ping()


async def test_a_sqlite_path_that_is_a_directory_is_named_as_such(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path))
    with pytest.raises(StoreUnavailable, match=f"cannot open SQLite file {tmp_path}: it is a directory"):
        await store.open()


async def test_a_sqlite_table_that_is_not_ours_says_what_differs_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE socketio_session (id BLOB PRIMARY KEY, Data TEXT, payload TEXT, Extra2 INT)")
        conn.commit()
        before = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    store = SQLiteStore(str(path))
    with pytest.raises(SchemaMissing) as raised:
        await store.open()
    message = str(raised.value)
    assert message.startswith(f"table `socketio_session` in SQLite file {path} exists but is not a session table")
    assert "lacks our columns version, created, last_seen, expires, absolute_expires, user_id" in message
    assert "columns we do not use: payload, Extra2" in message
    assert "SESSION_TABLE" in message
    assert "sql/sqlite.sql" in message
    assert store._db is None  # the failed open closed its connection, so the process can exit
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall() == before  # no index added


async def test_a_sqlite_table_with_our_columns_and_more_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    store = SQLiteStore(str(path))
    await store.open()
    await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("ALTER TABLE socketio_session ADD COLUMN note TEXT")
        conn.commit()
    await store.open()
    await store.ping()
    await store.close()


# -- URLs: nothing of a password comes back in an error ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:s3cr#Et@127.0.0.1:3306/db",
        "mysql://u:s3cr/Et@127.0.0.1:3306/db",
        "mysql://u:s3cr?Et@127.0.0.1:3306/db",
        # A numeric head of the password passed as the port of host `u`, the rest as the database name.
        "mysql://u:60917/Et@127.0.0.1:3306/db",
        "mysql://u:60917#Et@127.0.0.1:3306/db",
        "mysql://u:p@127.0.0.1:99999/db",
    ],
)
def test_a_mysql_url_that_cannot_be_read_names_the_fix_and_echoes_nothing_of_it(url: str) -> None:
    with pytest.raises(ValueError, match="cannot read user:password@host:port/database") as raised:
        MySQLConfig.from_url(url)
    message = str(raised.value)
    assert "must be percent-encoded (# as %23, / as %2F, ? as %3F, @ as %40, : as %3A)" in message
    for fragment in ("s3cr", "60917", "Et", "u:", "127.0.0.1", "99999"):
        assert fragment not in message


def test_a_percent_encoded_password_is_decoded() -> None:
    config = MySQLConfig.from_url("mysql://u%40x:s3cr%23t%2F%3F%40%3A@db.example:3307/my%5Fdb")
    assert (config.user, config.password, config.host, config.port, config.database) == (
        "u@x",
        "s3cr#t/?@:",
        "db.example",
        3307,
        "my_db",
    )
