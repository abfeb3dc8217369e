"""A table made before the mailbox, against a real MariaDB and a real SQLite file.

On MySQL the package never changes a schema on its own: such a table is
refused by ``check`` and ``open`` with a message that names ``migrate``, and
``migrate`` upgrades it (two columns, the mailbox table beside it), quietly,
as often as it is run. On SQLite the store owns its file and upgrades it on
open. Either way the sessions already stored resume with an empty mailbox and
can be sent messages, and the foreign key moves those messages with their
session when its token rotates and deletes them with it.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.stores.ddl import drop_tables, statements
from adapters.stores.mysql import MySQLConfig, MySQLStore, hexkey
from adapters.stores.rows import ADDED_FOR_MAILBOX, COLUMNS
from adapters.stores.sqlite import SQLiteStore
from application.errors import SchemaMissing
from application.handle import SessionHandle
from application.mailbox import Mailboxes
from application.ports import Store
from application.sessions import Sessions, Status
from domain.expiry import ExpiryPolicy
from domain.token import Token
from tests.support.fakes import FakeClock
from tests.support.stores import mysql_url

NOW = 1_700_000_000.0
POLICY = ExpiryPolicy(idle_ttl=100, absolute_ttl=1000)

# The DDL of the version before the mailbox (`git show fdd64bc:sql/mysql.sql`), comments left out.
OLD_MYSQL = """
CREATE TABLE IF NOT EXISTS `socketio_session` (
  `id`               BINARY(32)      NOT NULL,
  `data`             MEDIUMTEXT      CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  `version`          BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `created`          DOUBLE          NOT NULL,
  `last_seen`        DOUBLE          NOT NULL,
  `expires`          DOUBLE          NOT NULL,
  `absolute_expires` DOUBLE          NOT NULL,
  `user_id`          VARCHAR(191)    CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  PRIMARY KEY (`id`),
  KEY `socketio_session_expires` (`expires`),
  KEY `socketio_session_user_id` (`user_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
"""

# And `git show fdd64bc:sql/sqlite.sql`.
OLD_SQLITE = """
CREATE TABLE IF NOT EXISTS "socketio_session" (
  id               BLOB    NOT NULL PRIMARY KEY,
  data             TEXT    NOT NULL,
  version          INTEGER NOT NULL DEFAULT 0,
  created          REAL    NOT NULL,
  last_seen        REAL    NOT NULL,
  expires          REAL    NOT NULL,
  absolute_expires REAL    NOT NULL,
  user_id          TEXT    NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "socketio_session_expires" ON "socketio_session" (expires);
CREATE INDEX IF NOT EXISTS "socketio_session_user_id" ON "socketio_session" (user_id);
"""

OLD_COLUMNS = [name for name in COLUMNS if name not in ADDED_FOR_MAILBOX]
# One session as the previous version stored it: a cart, an owner, three writes.
OLD_ROW = ('{"cart":[1,2]}', 3, NOW - 10, NOW - 10, NOW + 90, NOW + 990, "alice")


def old_ddl(template: str, table: str) -> str:
    return template.replace("socketio_session", table)


@pytest.fixture
async def old_mysql() -> AsyncIterator[tuple[MySQLStore, Token]]:
    """A MySQL table made by the previous version's DDL, holding one session; the token of that session."""
    table = f"old_{secrets.token_hex(5)}"
    store = MySQLStore(MySQLConfig.from_url(mysql_url(), table=table))
    token = Token.generate()
    try:
        for statement in statements(old_ddl(OLD_MYSQL, table)):
            await store.connection.run(statement, (), idempotent=True)
        await store.connection.run(
            f"INSERT INTO `{table}` ({', '.join(OLD_COLUMNS)}) VALUES (UNHEX(%s), %s, %s, %s, %s, %s, %s, %s)",
            (hexkey(token.digest), *OLD_ROW),
            idempotent=True,
        )
        yield store, token
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DROP TABLE IF EXISTS notes the mailbox table a refused store never made
            await store.connection.run(drop_tables(table), (), idempotent=True)
        await store.close()


async def mailbox_rows(store: MySQLStore) -> list[tuple[str, int]]:
    """The mailbox table itself: (session digest in hex, message id) of every row."""
    outcome = await store.connection.run(
        f"SELECT LOWER(HEX(session)), id FROM {store.mailbox_name} ORDER BY session, id", (), idempotent=True
    )
    return [(str(row[0]), int(row[1])) for row in outcome.rows]


async def resumes_with_an_empty_mailbox_and_takes_messages(store: Store, token: Token) -> SessionHandle:
    """The old session resumes as stored, with nothing waiting, and a message sent to it is kept."""
    sessions = Sessions(store, FakeClock(NOW), policy=POLICY)
    mail = Mailboxes(sessions, store)
    handle = SessionHandle(sessions)
    result = await handle.handshake(token.value)
    assert result.status is Status.RESUMED
    assert dict(result.session.data) == {"cart": [1, 2]}
    assert (result.session.user_id, result.session.version) == ("alice", 3)
    assert (result.session.last_message, result.session.waiting) == (0, 0)
    assert await mail.send(handle, "notice", {"text": "welcome back"}) == 1
    assert await mail.send_to_user("alice", "notice", "again") == 1
    assert [(m.id, m.payload) for m in await mail.pending(token.digest)] == [
        (1, '{"text":"welcome back"}'),
        (2, '"again"'),
    ]
    found = await store.fetch(token.digest)
    assert found is not None
    assert (found.last_message, found.waiting) == (2, 2)
    return handle


@pytest.mark.mysql
async def test_a_table_made_before_the_mailbox_is_refused_with_a_pointer_to_migrate(
    old_mysql: tuple[MySQLStore, Token],
) -> None:
    store, token = old_mysql
    for attempt in (store.check, store.open, store.schema.check):
        with pytest.raises(SchemaMissing) as raised:
            await attempt()
        message = str(raised.value)
        assert f"table `{store.table}`" in message
        assert "made by an earlier version, before the mailbox" in message
        assert "lacks the columns mail_last_id, mail_waiting" in message
        assert "python -m entrypoints.cli migrate" in message
        assert "SESSION_AUTO_MIGRATE=1" in message
    # Refusing changed nothing.
    assert await store.schema.columns() == OLD_COLUMNS
    assert await store.schema.columns(store.schema.mailbox) == []
    rows = await store.connection.run(f"SELECT LOWER(HEX(id)) FROM {store.sql_name}", (), idempotent=True)
    assert [row[0] for row in rows.rows] == [token.digest.hex()]


@pytest.mark.mysql
async def test_migrate_upgrades_it_quietly_and_its_sessions_resume_with_an_empty_mailbox(
    old_mysql: tuple[MySQLStore, Token],
) -> None:
    store, token = old_mysql
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await store.migrate()
        await store.migrate()  # again: nothing left to do, and nothing to say
        await store.schema.check()
    assert [str(w.message) for w in caught] == []
    assert await store.schema.columns() == list(COLUMNS)
    assert await store.schema.columns(store.schema.mailbox) == [
        "session",
        "id",
        "event",
        "payload",
        "sent_at",
        "expires",
    ]
    rules = await store.connection.run(
        "SELECT REFERENCED_TABLE_NAME, UPDATE_RULE, DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS"
        " WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (store.schema.mailbox,),
        idempotent=True,
    )
    assert [tuple(row) for row in rules.rows] == [(store.table, "CASCADE", "CASCADE")]
    await store.open()
    await resumes_with_an_empty_mailbox_and_takes_messages(store, token)
    assert await mailbox_rows(store) == [(token.digest.hex(), 1), (token.digest.hex(), 2)]


@pytest.mark.mysql
async def test_the_foreign_key_moves_messages_with_a_rotation_and_ends_them_with_the_session(
    old_mysql: tuple[MySQLStore, Token],
) -> None:
    store, token = old_mysql
    await store.migrate()  # the upgraded table: its foreign key was added by the upgrade
    await store.open()
    handle = await resumes_with_an_empty_mailbox_and_takes_messages(store, token)
    assert await store.ack(token.digest, [1]) == 1

    new = await handle.regenerate()  # no owner given: the data and the messages stay with the session
    assert await mailbox_rows(store) == [(new.digest.hex(), 2)]
    new = await handle.login("alice")  # the same owner: they stay
    assert await mailbox_rows(store) == [(new.digest.hex(), 2)]
    found = await store.fetch(new.digest)
    assert found is not None
    assert (found.last_message, found.waiting) == (2, 1)

    await handle.sessions.store.delete(new.digest)
    assert await mailbox_rows(store) == []


@pytest.mark.mysql
async def test_a_login_as_another_user_leaves_no_row_of_the_previous_owners_messages(
    old_mysql: tuple[MySQLStore, Token],
) -> None:
    store, token = old_mysql
    await store.migrate()
    await store.open()
    handle = await resumes_with_an_empty_mailbox_and_takes_messages(store, token)
    new = await handle.login("bob")
    assert await mailbox_rows(store) == []
    found = await store.fetch(new.digest)
    assert found is not None
    assert (found.user_id, found.last_message, found.waiting) == ("bob", 2, 0)


def make_old_sqlite_file(path: Path, token: Token) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript(OLD_SQLITE)
        db.execute(
            f'INSERT INTO "socketio_session" ({", ".join(OLD_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
            (token.digest, *OLD_ROW),
        )
        db.commit()
    finally:
        db.close()


def sqlite_table(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows read through a connection of our own (WAL: it sees what the store committed)."""
    db = sqlite3.connect(path)
    try:
        return list(db.execute(sql).fetchall())
    finally:
        db.close()


async def test_sqlite_upgrades_a_file_made_before_the_mailbox_on_open(tmp_path: Path) -> None:
    path, token = tmp_path / "old.sqlite3", Token.generate()
    await asyncio.to_thread(make_old_sqlite_file, path, token)
    store = SQLiteStore(str(path))
    await store.open()
    try:
        columns = await asyncio.to_thread(sqlite_table, path, 'PRAGMA table_info("socketio_session")')
        assert [str(c[1]) for c in columns] == list(COLUMNS)
        handle = await resumes_with_an_empty_mailbox_and_takes_messages(store, token)
        new = await handle.regenerate()
        rows = await asyncio.to_thread(sqlite_table, path, 'SELECT session, id FROM "socketio_session_mailbox"')
        assert rows == [(new.digest, 1), (new.digest, 2)]  # moved by the foreign key
    finally:
        await store.close()
    # Opened again: already upgraded, nothing to do, nothing lost.
    again = SQLiteStore(str(path))
    await again.check()
    try:
        found = await again.fetch(new.digest)
        assert found is not None
        assert (found.last_message, found.waiting) == (2, 2)
        assert await again.delete(new.digest)
        rows = await asyncio.to_thread(sqlite_table, path, 'SELECT COUNT(*) FROM "socketio_session_mailbox"')
        assert rows == [(0,)]
    finally:
        await again.close()


def make_half_upgraded_sqlite_file(path: Path, token: Token) -> None:
    """What an upgrade leaves if the process dies between its two ALTER TABLEs (each committed on its own)."""
    make_old_sqlite_file(path, token)
    db = sqlite3.connect(path)
    try:
        db.execute('ALTER TABLE "socketio_session" ADD COLUMN mail_last_id INTEGER NOT NULL DEFAULT 0')
        db.commit()
    finally:
        db.close()


async def test_sqlite_finishes_an_upgrade_cut_short_between_its_two_columns(tmp_path: Path) -> None:
    path, token = tmp_path / "half.sqlite3", Token.generate()
    await asyncio.to_thread(make_half_upgraded_sqlite_file, path, token)
    store = SQLiteStore(str(path))
    await store.open()  # before the fix: SchemaMissing pointing at `migrate`, which for SQLite is this same open
    try:
        columns = await asyncio.to_thread(sqlite_table, path, 'PRAGMA table_info("socketio_session")')
        assert [str(c[1]) for c in columns] == list(COLUMNS)
        await resumes_with_an_empty_mailbox_and_takes_messages(store, token)
    finally:
        await store.close()
