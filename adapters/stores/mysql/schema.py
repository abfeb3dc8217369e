"""The MySQL table itself: is it there and ours, create it on request, and purge its expired rows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomysql
import pymysql

from adapters.stores.ddl import check_columns, ddl, ddl_path, mailbox_table, statements, upgrade_ddl
from adapters.stores.mysql import mailbox
from adapters.stores.mysql.connection import Connection
from adapters.stores.mysql.errors import NOT_PERMITTED, error_code, said, store_error
from adapters.stores.rows import ADDED_FOR_MAILBOX, COLUMNS
from application.errors import SchemaMissing, StoreUnavailable

# The sessions table's columns before the mailbox: a table holding all of them is ours, to upgrade.
_BEFORE_MAILBOX = {name for name in COLUMNS if name not in ADDED_FOR_MAILBOX}


class Schema:
    """The table ``table`` (quoted ``sql_name``) reached through ``connection``."""

    def __init__(self, connection: Connection, table: str, sql_name: str) -> None:
        self.connection = connection
        self.table = table
        self.sql_name = sql_name
        self.mailbox = mailbox_table(table)
        self.mailbox_name = f"`{self.mailbox}`"
        self.database = connection.config.database

    def missing(self) -> SchemaMissing:
        """The error for a table that does not exist: it names the DDL and how to apply it."""
        return SchemaMissing(
            f"table `{self.table}` in database `{self.database}` does not exist. "
            f"Create it with `python -m entrypoints.cli migrate` (the DDL is {ddl_path('mysql')}; "
            "`python -m entrypoints.cli schema` prints it for this table), or set SESSION_AUTO_MIGRATE=1."
        )

    async def columns(self, table: str | None = None) -> list[str]:
        """The columns of the sessions table (or ``table``) as the server spells them, in order; empty if none."""
        outcome = await self.connection.run(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (table or self.table,),
            idempotent=True,
        )
        return [str(row[0]) for row in outcome.rows]

    async def check(self) -> None:
        """:class:`SchemaMissing` unless the table has our columns (more are allowed).

        With no such table the message names the DDL and ``migrate``; with
        another table under that name it says which columns differ.
        """
        present = await self.columns()
        if not present:
            raise self.missing()
        check_columns(f"table `{self.table}` in database `{self.database}`", present, "mysql")
        if not await self.columns(self.mailbox):
            raise SchemaMissing(
                f"table `{self.table}` in database `{self.database}` has no mailbox table `{self.mailbox}` beside it"
                " (it was made by an earlier version). Create it with `python -m entrypoints.cli migrate`"
                f" (the DDL is {ddl_path('mysql')}), or set SESSION_AUTO_MIGRATE=1."
            )

    async def migrate(self) -> None:
        """Apply ``sql/mysql.sql``, unless the table is there already: the explicit opt-in.

        Run again, it does nothing. It does not rely on CREATE TABLE IF NOT
        EXISTS alone, which makes the server send a "table already exists"
        note that the driver turns into a printed Python warning: each table
        is created only when it is missing. A sessions table made before the
        mailbox gets its columns (``sql/mysql_upgrade_mailbox.sql``) and the
        mailbox table. A table of that name that is not ours is left alone;
        :meth:`check` then says so.
        """
        present = {name.lower() for name in await self.columns()}
        if present and not present >= _BEFORE_MAILBOX:
            return  # not a table of ours: check() says what differs
        todo: list[str] = []
        if present and not present >= set(ADDED_FOR_MAILBOX):
            todo += statements(upgrade_ddl("mysql", self.table))  # made before the mailbox: add its columns
        existing = {self.table: bool(present), self.mailbox: bool(await self.columns(self.mailbox))}
        for statement in statements(ddl("mysql", self.table)):
            created = next((name for name in existing if f"EXISTS `{name}`" in statement), None)
            if created is None or not existing[created]:
                todo.append(statement)
        for statement in todo:
            try:
                await self.connection.run(statement, (), idempotent=True)
            except StoreUnavailable as exc:
                if error_code(exc.__cause__) not in NOT_PERMITTED:
                    raise
                raise StoreUnavailable(
                    f"{exc}. Creating the tables needs the CREATE, ALTER and REFERENCES privileges on database"
                    f" `{self.database}`: run migrate as a user who has them, or have one apply {ddl_path('mysql')}"
                ) from exc.__cause__

    async def purge(
        self, *, now: float, batch: int, on_batch: Callable[[int], None] | None = None, pause: float = 0.005
    ) -> int | None:
        """Delete every session expired by ``now`` in batches; None if another process is purging.

        One purger at a time across processes: a named lock (GET_LOCK) held on
        one connection for the whole run. Each batch is its own short
        autocommitted DELETE on the expiry index, with a pause between them,
        so handshakes never wait long behind it.
        """
        lock = f"socketio_session.purge.{self.database}.{self.table}"[:64]
        c = self.connection.config
        try:
            async with self.connection.dedicated() as cursor:
                await cursor.execute("SELECT GET_LOCK(%s, 0)", (lock,))
                if (await cursor.fetchone())[0] != 1:
                    return None
                try:
                    total = 0
                    while True:
                        await cursor.execute(
                            f"DELETE FROM {self.sql_name} WHERE expires <= %s ORDER BY expires LIMIT %s", (now, batch)
                        )
                        deleted = int(cursor.rowcount)
                        total += deleted
                        if deleted < batch:
                            break
                        if on_batch is not None:
                            on_batch(total)
                        await asyncio.sleep(pause)
                    await self._drop_expired_messages(cursor, now=now, batch=batch, pause=pause)
                    return total
                finally:
                    await cursor.execute("SELECT RELEASE_LOCK(%s)", (lock,))
        except (pymysql.err.MySQLError, OSError) as exc:
            # Any failure, bugs included, is StoreUnavailable here: the periodic purge
            # (application/purge.py) skips a round on it instead of dying for good.
            reason = store_error(exc, self.connection.where, c.operation_timeout) or said(exc)
            raise StoreUnavailable(f"purge of table {self.table} failed: {reason}") from exc

    async def _drop_expired_messages(self, cursor: aiomysql.Cursor, *, now: float, batch: int, pause: float) -> None:
        """Delete messages past their deadline (SESSION_MAILBOX_TTL), a batch of sessions at a time.

        Each batch is one short transaction of :func:`mailbox.drop_expired`, on
        the purge's connection (we hold the purge lock), so counts stay exact.
        """
        while True:
            await cursor.execute(mailbox.expired_sessions(self.mailbox_name), (now, batch))
            hexids = [str(row[0]) for row in await cursor.fetchall()]
            if not hexids:
                return
            await cursor.execute("BEGIN")
            for sql, params in mailbox.drop_expired(self.sql_name, self.mailbox_name, hexids, now):
                await cursor.execute(sql, params)
                await cursor.fetchall()
            await cursor.execute("COMMIT")
            if len(hexids) < batch:
                return
            await asyncio.sleep(pause)
