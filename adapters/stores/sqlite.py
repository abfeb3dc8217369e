"""Sessions in a SQLite file: the zero-setup default, for one process.

Every write is a short ``BEGIN IMMEDIATE`` transaction that reads the row,
applies the change and writes it back. SQLite lets one writer in at a time,
so concurrent writers never lose each other's keys.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiosqlite

from adapters.stores.ddl import (
    DEFAULT_TABLE,
    check_columns,
    check_table_name,
    ddl,
    mailbox_table,
    statements,
    upgrade_ddl,
)
from adapters.stores.rows import (
    ADDED_FOR_MAILBOX,
    COLUMNS,
    FIELDS,
    MESSAGE_FIELDS,
    encode_data,
    insert_values,
    message_from_row,
    session_from_row,
)
from application.errors import StoreUnavailable
from domain.mailbox import MailboxFull, Message
from domain.session import Change, Session

T = TypeVar("T")
# How long past its bound a caller still waits for a transaction that is finishing (a COMMIT's fsync).
_GRACE = 0.25


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A transaction whose caller stopped waiting still ends; its error, if any, is not a loose end."""
    if not task.cancelled():
        task.exception()


def path_from_url(url: str) -> str:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``sqlite:///:memory:``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ValueError(f"not a sqlite:// URL: scheme {parts.scheme!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ValueError("the sqlite:// URL names no file (sqlite:///./sessions.sqlite3)")
    return path


class SQLiteStore:
    """A :class:`application.ports.SessionStore` in one SQLite file.

    It owns its file, so :meth:`open` creates the schema when it is missing.
    """

    def __init__(self, path: str, table: str = DEFAULT_TABLE, *, operation_timeout: float = 1.5) -> None:
        self.path = path
        # The longest one operation may take, waiting for the connection and for another
        # process's lock on the file included, before it reports StoreUnavailable (as on MySQL).
        self.operation_timeout = operation_timeout
        self.table = check_table_name(table)
        # Quoted in every statement: a name that validates (`order`, `select`) must work.
        self.sql_name = f'"{self.table}"'
        self.mailbox_name = f'"{mailbox_table(self.table)}"'
        self._db: aiosqlite.Connection | None = None
        # One connection serves every coroutine; transactions must not interleave on it.
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the file (creating it, its directory and the schema as needed).

        A table of our name that lacks our columns is :class:`SchemaMissing`,
        saying what differs: left alone, every handshake would fail on it.

        A failed open closes what it opened: aiosqlite runs each connection on
        a thread that is not a daemon, so a connection left open would keep a
        process whose startup failed alive instead of letting it exit.
        """
        if self._db is not None:
            return
        try:
            if self.path != ":memory:":
                await asyncio.to_thread(self._probe)
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite file {self.path}: {exc}") from exc
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            # Acked means stored: fsync on every commit.
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute(f"PRAGMA busy_timeout = {int(self.operation_timeout * 1000)}")
            # Messages end with their session and move with it (sql/sqlite.sql): off by default in SQLite.
            await db.execute("PRAGMA foreign_keys = ON")
            # Before the DDL: CREATE TABLE IF NOT EXISTS passes over a table of that name whatever
            # its columns, and its CREATE INDEX would then fail on a missing one with a bare
            # "no such column" instead of the list of what differs.
            async with db.execute(f"PRAGMA table_info({self.sql_name})") as cursor:
                present = [str(row[1]) for row in await cursor.fetchall()]
            lacking = {name for name in COLUMNS if name not in {p.lower() for p in present}}
            if present and lacking and lacking <= set(ADDED_FOR_MAILBOX):
                # Made before the mailbox: the store owns its file, so it upgrades it. In one
                # transaction, and only what is missing: executescript commits each ALTER on its own,
                # so a process that died between them left a file that no open could finish
                # (tests/integration/test_mailbox_schema.py, the upgrade cut short).
                adding = [
                    s
                    for s in statements(upgrade_ddl("sqlite", self.table))
                    if any(f"COLUMN {c} " in s for c in lacking)
                ]
                await db.executescript("BEGIN;\n" + ";\n".join(adding) + ";\nCOMMIT;")
            elif present:
                check_columns(f"table `{self.table}` in SQLite file {self.path}", present, "sqlite")
            await db.executescript(ddl("sqlite", self.table))
        except BaseException as exc:
            await db.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise StoreUnavailable(f"cannot open SQLite file {self.path}: {exc}") from exc
            raise
        self._db = db

    # -- what the composition root needs (application.ports.StoreAdmin) -----------------

    def describe(self) -> str:
        return f"sqlite {self.path} table {self.table}"

    async def migrate(self) -> None:
        """The embedded store owns its file: opening it applies the schema."""
        await self.open()

    async def check(self) -> None:
        """Open an existing file and verify its schema; a check never creates the file."""
        if self.path != ":memory:" and not await asyncio.to_thread(Path(self.path).exists):
            raise StoreUnavailable(f"no SQLite file at {self.path} (the server creates it on first start)")
        await self.open()

    def _probe(self) -> None:
        """Make the directory and open the file once, in this thread, raising what would stop aiosqlite.

        When aiosqlite itself fails to connect, it stops its thread with a
        callback into the event loop; if the loop has closed by then (the
        process is on its way out), that thread dies printing a traceback.
        Failing here first keeps the error to its one line.
        """
        path = Path(self.path)
        if path.is_dir():
            raise IsADirectoryError("it is a directory, not a database file")
        path.parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(path).close()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _run(self, work: Callable[[aiosqlite.Connection], Awaitable[T]], *, write: bool = True) -> T:
        """``work`` in one transaction on the shared connection, bounded by ``operation_timeout``.

        The bound covers the wait for our own connection (asyncio) and, for a
        write, the wait for the file's write lock, which another process may
        hold: SQLite's busy timeout is set to what is left of the budget. Once
        started, the transaction runs to its end in a task of its own, holding
        our lock, whatever happens to the caller: aiosqlite runs each call on
        its thread and cannot stop one midway, so a caller cancelled during a
        BEGIN would otherwise leave the connection inside a transaction, and
        every later operation would fail. A caller that waited past the bound
        gets StoreUnavailable (the outcome of a write is then unknown, as on
        MySQL when the connection dies). Reads take no write lock.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.operation_timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:
            raise StoreUnavailable(f"SQLite file {self.path} busy for {self.operation_timeout} s") from None
        task = loop.create_task(self._in_transaction(work, write, deadline))
        task.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout_at(deadline + _GRACE):
                return await asyncio.shield(task)
        except TimeoutError:
            raise StoreUnavailable(
                f"SQLite file {self.path} did not answer within {self.operation_timeout} s"
            ) from None

    async def _in_transaction(
        self, work: Callable[[aiosqlite.Connection], Awaitable[T]], write: bool, deadline: float
    ) -> T:
        try:
            if self._db is None:
                raise StoreUnavailable("the SQLite store is not open")
            db = self._db
            try:
                if write:
                    left = max(1, int((deadline - asyncio.get_running_loop().time()) * 1000))
                    await db.execute(f"PRAGMA busy_timeout = {left}")
                await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = await work(db)
                    await db.execute("COMMIT")
                    return result
                except BaseException:
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite file {self.path} failed: {exc}") from exc
        finally:
            self._lock.release()

    async def _one(self, db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> Any:
        async with db.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _all(self, db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
        async with db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _count(self, db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
        cursor = await db.execute(sql, params)
        return int(cursor.rowcount)

    async def _save(self, db: aiosqlite.Connection, digest: bytes, session: Session) -> None:
        await db.execute(
            f"UPDATE {self.sql_name} SET data = ?, version = ?, last_seen = ?, expires = ?, user_id = ?,"
            " mail_last_id = ?, mail_waiting = ? WHERE id = ?",
            (
                encode_data(session.data),
                session.version,
                session.last_seen,
                session.deadlines.idle,
                session.user_id,
                session.last_message,
                session.waiting,
                digest,
            ),
        )

    async def _live(self, db: aiosqlite.Connection, digest: bytes, now: float) -> Session | None:
        row = await self._one(db, f"SELECT {FIELDS} FROM {self.sql_name} WHERE id = ? AND expires > ?", (digest, now))
        return None if row is None else session_from_row(row)

    async def _apply(
        self, digest: bytes, now: float, change: Callable[[Session], Session], *, move_to: bytes | None = None
    ) -> Session | None:
        """Apply ``change`` to the session under ``digest`` if it is live at ``now``, in one transaction.

        ``change`` is one of Session's own (written, touched, moved); if it
        raises (SessionTooLarge), the transaction rolls back and nothing changes.
        """

        async def work(db: aiosqlite.Connection) -> Session | None:
            session = await self._live(db, digest, now)
            if session is None:
                return None
            updated = change(session)
            await self._save(db, digest, updated)
            if updated.waiting < session.waiting:  # a new owner: the messages were the previous one's
                await db.execute(f"DELETE FROM {self.mailbox_name} WHERE session = ?", (digest,))
            if move_to is not None:
                await db.execute(f"UPDATE {self.sql_name} SET id = ? WHERE id = ?", (move_to, digest))
            return updated

        return await self._run(work)

    async def insert(self, digest: bytes, session: Session) -> None:
        sql = f"INSERT INTO {self.sql_name} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        await self._run(lambda db: self._count(db, sql, (digest, *insert_values(session))))

    async def fetch(self, digest: bytes) -> Session | None:
        sql = f"SELECT {FIELDS} FROM {self.sql_name} WHERE id = ?"
        row = await self._run(lambda db: self._one(db, sql, (digest,)), write=False)
        return None if row is None else session_from_row(row)

    async def write(
        self, digest: bytes, change: Change, *, now: float, idle_deadline: float, max_bytes: int
    ) -> int | None:
        written = await self._apply(digest, now, lambda s: s.written(change, now, idle_deadline, max_bytes))
        return None if written is None else written.version

    async def touch(self, digest: bytes, *, now: float, idle_deadline: float) -> bool:
        return await self._apply(digest, now, lambda s: s.touched(now, idle_deadline)) is not None

    async def rotate(
        self,
        old: bytes,
        new: bytes,
        *,
        now: float,
        idle_deadline: float,
        max_bytes: int,
        change: Change | None = None,
        user_id: str | None = None,
    ) -> Session | None:
        return await self._apply(
            old, now, lambda s: s.moved(now, idle_deadline, max_bytes, change, user_id), move_to=new
        )

    async def delete(self, digest: bytes) -> bool:
        sql = f"DELETE FROM {self.sql_name} WHERE id = ?"
        return await self._run(lambda db: self._count(db, sql, (digest,))) > 0

    async def delete_many(self, digests: Collection[bytes]) -> int:
        unique = list(set(digests))
        if not unique:
            return 0
        sql = f"DELETE FROM {self.sql_name} WHERE id IN ({', '.join('?' * len(unique))})"
        return await self._run(lambda db: self._count(db, sql, unique))

    async def list_user(self, user_id: str, *, now: float) -> list[tuple[bytes, Session]]:
        sql = f"SELECT id, {FIELDS} FROM {self.sql_name} WHERE user_id = ? AND expires > ? ORDER BY created"
        rows = await self._run(lambda db: self._all(db, sql, (user_id, now)), write=False)
        return [(bytes(row[0]), session_from_row(row[1:])) for row in rows]

    async def purge(self, *, now: float, batch: int, on_batch: Callable[[int], None] | None = None) -> int | None:
        sql = (
            f"DELETE FROM {self.sql_name} WHERE id IN"
            f" (SELECT id FROM {self.sql_name} WHERE expires <= ? ORDER BY expires LIMIT ?)"
        )
        # One short transaction per batch, so other writers get in between.
        total = 0
        while True:
            deleted = await self._run(lambda db: self._count(db, sql, (now, batch)))
            total += deleted
            if deleted < batch:
                break
            if on_batch is not None:
                on_batch(total)
        while await self._run(lambda db: self._drop_expired_messages(db, now, batch)) >= batch:
            pass
        return total

    async def _drop_expired_messages(self, db: aiosqlite.Connection, now: float, batch: int) -> int:
        """Delete up to ``batch`` messages past their deadline, keeping each session's ``mail_waiting`` exact."""
        rows = await self._all(
            db, f"SELECT session, id FROM {self.mailbox_name} WHERE expires <= ? ORDER BY expires LIMIT ?", (now, batch)
        )
        by_session: dict[bytes, list[int]] = {}
        for session, message_id in rows:
            by_session.setdefault(bytes(session), []).append(int(message_id))
        for digest, ids in by_session.items():
            await self._ack(db, digest, ids)
        return len(rows)

    # -- the mailbox (application.ports.MailboxStore) -------------------------------------

    async def send(
        self, digests: Collection[bytes], event: str, payload: str, *, now: float, expires: float, max_messages: int
    ) -> dict[bytes, int]:
        async def work(db: aiosqlite.Connection) -> dict[bytes, int]:
            live = {d: s for d in set(digests) if (s := await self._live(db, d, now)) is not None}
            if any(s.waiting >= max_messages for s in live.values()):
                raise MailboxFull(f"a mailbox holds {max_messages} messages already")
            given: dict[bytes, int] = {}
            for digest, session in live.items():
                queued = session.queued()
                await self._save(db, digest, queued)
                await db.execute(
                    f"INSERT INTO {self.mailbox_name} (session, {MESSAGE_FIELDS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (digest, queued.last_message, event, payload, now, expires),
                )
                given[digest] = queued.last_message
            return given

        return await self._run(work)

    async def pending(self, digest: bytes, *, now: float, after: int = 0, limit: int = 100) -> list[Message]:
        sql = (
            f"SELECT {MESSAGE_FIELDS} FROM {self.mailbox_name}"
            " WHERE session = ? AND id > ? AND expires > ? ORDER BY id LIMIT ?"
        )
        rows = await self._run(lambda db: self._all(db, sql, (digest, after, now, limit)), write=False)
        return [message_from_row(row) for row in rows]

    async def ack(self, digest: bytes, ids: Collection[int]) -> int:
        unique = sorted(set(ids))
        if not unique:
            return 0
        return await self._run(lambda db: self._ack(db, digest, unique))

    async def _ack(self, db: aiosqlite.Connection, digest: bytes, ids: Sequence[int]) -> int:
        removed = await self._count(
            db,
            f"DELETE FROM {self.mailbox_name} WHERE session = ? AND id IN ({', '.join('?' * len(ids))})",
            (digest, *ids),
        )
        if removed:
            await db.execute(
                f"UPDATE {self.sql_name} SET mail_waiting = MAX(0, mail_waiting - ?) WHERE id = ?", (removed, digest)
            )
        return removed

    async def ping(self) -> None:
        """Return once a write could happen now: the file's write lock is taken and released at once.

        A read would succeed while another process holds the file locked, and
        the health check would say 200 while every insert fails.
        """
        await self._run(lambda db: self._one(db, "SELECT 1", ()))
