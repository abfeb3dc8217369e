"""The MySQL table itself: is it there and ours, create it on request, and purge its expired rows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pymysql

from adapters.stores.ddl import check_columns, ddl, ddl_path, statements
from adapters.stores.mysql.connection import Connection
from adapters.stores.mysql.errors import NOT_PERMITTED, error_code, said, store_error
from application.errors import SchemaMissing, StoreUnavailable


class Schema:
    """The table ``table`` (quoted ``sql_name``) reached through ``connection``."""

    def __init__(self, connection: Connection, table: str, sql_name: str) -> None:
        self.connection = connection
        self.table = table
        self.sql_name = sql_name
        self.database = connection.config.database

    def missing(self) -> SchemaMissing:
        """The error for a table that does not exist: it names the DDL and how to apply it."""
        return SchemaMissing(
            f"table `{self.table}` in database `{self.database}` does not exist. "
            f"Create it with `python -m entrypoints.cli migrate` (the DDL is {ddl_path('mysql')}; "
            "`python -m entrypoints.cli schema` prints it for this table), or set SESSION_AUTO_MIGRATE=1."
        )

    async def columns(self) -> list[str]:
        """The columns of the table as the server spells them, in table order; empty if there is none."""
        outcome = await self.connection.run(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (self.table,),
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

    async def migrate(self) -> None:
        """Apply ``sql/mysql.sql``, unless the table is there already: the explicit opt-in.

        Run again, it does nothing. It does not rely on CREATE TABLE IF NOT
        EXISTS alone, which makes the server send a "table already exists"
        note that the driver turns into a printed Python warning. A table of
        that name that is not ours is left alone; :meth:`check` then says so.
        """
        if await self.columns():
            return
        for statement in statements(ddl("mysql", self.table)):
            try:
                await self.connection.run(statement, (), idempotent=True)
            except StoreUnavailable as exc:
                if error_code(exc.__cause__) not in NOT_PERMITTED:
                    raise
                raise StoreUnavailable(
                    f"{exc}. Creating the table needs the CREATE privilege on database `{self.database}`: "
                    f"run migrate as a user who has it, or have one apply {ddl_path('mysql')}"
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
                            return total
                        if on_batch is not None:
                            on_batch(total)
                        await asyncio.sleep(pause)
                finally:
                    await cursor.execute("SELECT RELEASE_LOCK(%s)", (lock,))
        except (pymysql.err.MySQLError, OSError) as exc:
            # Any failure, bugs included, is StoreUnavailable here: the periodic purge
            # (application/purge.py) skips a round on it instead of dying for good.
            reason = store_error(exc, c.where, c.operation_timeout) or said(exc)
            raise StoreUnavailable(f"purge of table {self.table} failed: {reason}") from exc
