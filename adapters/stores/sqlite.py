"""Sessions in a SQLite file: the zero-setup default, for one process.

Every write is a short ``BEGIN IMMEDIATE`` transaction that reads the row,
applies the change and writes it back. SQLite lets one writer in at a time,
so concurrent writers never lose each other's keys.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiosqlite
from attrs import evolve

from adapters.stores.ddl import check_columns, check_table_name, ddl
from adapters.stores.rows import FIELDS, encode_data, insert_values, moved_session, session_from_row
from application.errors import StoreUnavailable
from domain.session import Change, Session
from domain.values import check_size


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

    def __init__(self, path: str, table: str = "socketio_session", *, operation_timeout: float = 1.5) -> None:
        self.path = path
        # The longest one operation may take, waiting for the connection and for another
        # process's lock on the file included, before it reports StoreUnavailable (as on MySQL).
        self.operation_timeout = operation_timeout
        self.table = check_table_name(table)
        # Quoted in every statement: a name that validates (`order`, `select`) must work.
        self.sql_name = f'"{self.table}"'
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
            # Before the DDL: CREATE TABLE IF NOT EXISTS passes over a table of that name whatever
            # its columns, and its CREATE INDEX would then fail on a missing one with a bare
            # "no such column" instead of the list of what differs.
            async with db.execute(f"PRAGMA table_info({self.sql_name})") as cursor:
                present = [str(row[1]) for row in await cursor.fetchall()]
            if present:
                check_columns(f"table `{self.table}` in SQLite file {self.path}", present, "sqlite")
            await db.executescript(ddl("sqlite", self.table))
        except BaseException as exc:
            await db.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise StoreUnavailable(f"cannot open SQLite file {self.path}: {exc}") from exc
            raise
        self._db = db

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

    @asynccontextmanager
    async def _transaction(self, *, write: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction on the shared connection, bounded by ``operation_timeout``; reads take no write lock.

        The bound covers the wait for our own connection (asyncio) and, for a
        write, the wait for the file's write lock, which another process may
        hold: SQLite's busy timeout is set to what is left of the budget. The
        SQLite calls themselves are never cancelled midway (aiosqlite would go
        on running them on its thread, and a BEGIN that lands after we gave up
        would leave the connection inside a transaction).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.operation_timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:
            raise StoreUnavailable(f"SQLite file {self.path} busy for {self.operation_timeout} s") from None
        try:
            if self._db is None:
                raise StoreUnavailable("the SQLite store is not open")
            db = self._db
            try:
                if write:
                    left = max(1, int((deadline - loop.time()) * 1000))
                    await db.execute(f"PRAGMA busy_timeout = {left}")
                await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                    await db.execute("COMMIT")
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

    async def _save(self, db: aiosqlite.Connection, digest: bytes, session: Session) -> None:
        await db.execute(
            f"UPDATE {self.sql_name} SET data = ?, version = ?, last_seen = ?, expires = ?, user_id = ? WHERE id = ?",
            (
                encode_data(session.data),
                session.version,
                session.last_seen,
                session.deadlines.idle,
                session.user_id,
                digest,
            ),
        )

    async def _live(self, db: aiosqlite.Connection, digest: bytes, now: float) -> Session | None:
        row = await self._one(db, f"SELECT {FIELDS} FROM {self.sql_name} WHERE id = ? AND expires > ?", (digest, now))
        return None if row is None else session_from_row(row)

    async def insert(self, digest: bytes, session: Session) -> None:
        async with self._transaction() as db:
            await db.execute(
                f"INSERT INTO {self.sql_name} (id, {FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (digest, *insert_values(session)),
            )

    async def fetch(self, digest: bytes) -> Session | None:
        async with self._transaction(write=False) as db:
            row = await self._one(db, f"SELECT {FIELDS} FROM {self.sql_name} WHERE id = ?", (digest,))
        return None if row is None else session_from_row(row)

    async def write(
        self, digest: bytes, change: Change, *, now: float, idle_deadline: float, max_bytes: int
    ) -> int | None:
        async with self._transaction() as db:
            session = await self._live(db, digest, now)
            if session is None:
                return None
            updated = session.with_change(change, now, session.deadlines.extended(idle_deadline))
            check_size(updated.data, max_bytes)  # raises inside the transaction: rolled back
            await self._save(db, digest, updated)
            return updated.version

    async def touch(self, digest: bytes, *, now: float, idle_deadline: float) -> bool:
        async with self._transaction() as db:
            session = await self._live(db, digest, now)
            if session is None:
                return False
            await self._save(
                db, digest, evolve(session, deadlines=session.deadlines.extended(idle_deadline), last_seen=now)
            )
            return True

    async def rename(
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
        async with self._transaction() as db:
            session = await self._live(db, old, now)
            if session is None:
                return None
            moved = moved_session(session, now, idle_deadline, max_bytes, change, user_id)  # raises: rolled back
            await self._save(db, old, moved)
            await db.execute(f"UPDATE {self.sql_name} SET id = ? WHERE id = ?", (new, old))
            return moved

    async def set_user(self, digest: bytes, user_id: str | None, *, now: float) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE {self.sql_name} SET user_id = ? WHERE id = ? AND expires > ?", (user_id, digest, now)
            )
            return cursor.rowcount > 0

    async def remove(self, digest: bytes) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(f"DELETE FROM {self.sql_name} WHERE id = ?", (digest,))
            return cursor.rowcount > 0

    async def list_user(self, user_id: str, *, now: float) -> list[tuple[bytes, Session]]:
        async with (
            self._transaction(write=False) as db,
            db.execute(
                f"SELECT id, {FIELDS} FROM {self.sql_name} WHERE user_id = ? AND expires > ? ORDER BY created",
                (user_id, now),
            ) as cursor,
        ):
            rows = await cursor.fetchall()
        return [(bytes(row[0]), session_from_row(row[1:])) for row in rows]

    async def remove_many(self, digests: Collection[bytes]) -> int:
        unique = list(set(digests))
        if not unique:
            return 0
        async with self._transaction() as db:
            cursor = await db.execute(
                f"DELETE FROM {self.sql_name} WHERE id IN ({', '.join('?' * len(unique))})", unique
            )
            return cursor.rowcount

    async def purge(self, *, now: float, batch: int, on_batch: Callable[[int], None] | None = None) -> int | None:
        # One short transaction per batch, so other writers get in between.
        total = 0
        while True:
            async with self._transaction() as db:
                cursor = await db.execute(
                    f"DELETE FROM {self.sql_name} WHERE id IN"
                    f" (SELECT id FROM {self.sql_name} WHERE expires <= ? ORDER BY expires LIMIT ?)",
                    (now, batch),
                )
                deleted = cursor.rowcount
            total += deleted
            if deleted < batch:
                return total
            if on_batch is not None:
                on_batch(total)

    async def ping(self) -> None:
        """Return once a write could happen now: the file's write lock is taken and released at once.

        A read would succeed while another process holds the file locked, and
        the health check would say 200 while every insert fails.
        """
        async with self._transaction(write=True) as db:
            await self._one(db, "SELECT 1", ())
