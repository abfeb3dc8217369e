"""Sessions in MySQL 8 / MariaDB 10.5+: the store's port methods over a pooled connection.

Each session is one row keyed by the SHA-256 of its token. A write is a single
UPDATE that edits only the keys it names (``JSON_SET`` / ``JSON_REMOVE``), so
writers to different keys, in any number of processes, never lose each
other's keys, and no write revives an expired row (``expires > now`` is part of
every WHERE clause). docs/architecture.md draws the path of a write.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager

import pymysql
from pymysql.constants import ER

from adapters.stores.ddl import check_table_name, mailbox_table
from adapters.stores.mysql import mailbox
from adapters.stores.mysql.batching import GroupCommit, ReadBatcher
from adapters.stores.mysql.config import MySQLConfig
from adapters.stores.mysql.connection import Connection, Outcome, Transaction
from adapters.stores.mysql.errors import TOO_LARGE, UNADDRESSABLE_KEY, error_code
from adapters.stores.mysql.schema import Schema
from adapters.stores.mysql.statements import (
    Batch,
    NewRow,
    Payload,
    RowWrite,
    batch,
    collected,
    delete_many,
    hexkey,
    rotation,
    select_many,
    select_one,
    select_user,
    single,
    single_outcome,
)
from adapters.stores.rows import insert_values, message_from_row, session_from_row
from domain.errors import InvalidKey, SessionTooLarge
from domain.mailbox import MailboxFull, Message
from domain.session import Change, Session


@contextmanager
def _refusals(max_bytes: int) -> Iterator[None]:
    """The refusals our statements signal (statements.py), as the named errors, by error code."""
    try:
        yield
    except pymysql.err.MySQLError as exc:
        code = error_code(exc)
        if code == UNADDRESSABLE_KEY:
            raise InvalidKey("the session store cannot address one of these keys") from None
        if code == TOO_LARGE:
            raise SessionTooLarge(f"the session would exceed {max_bytes} bytes") from None
        raise


class MySQLStore:
    """A :class:`application.ports.SessionStore` on MySQL or MariaDB.

    >>> store = MySQLStore(MySQLConfig.from_url("mysql://app:secret@db:3306/app"))  # doctest: +SKIP
    >>> await store.open()                                                          # doctest: +SKIP
    """

    def __init__(self, config: MySQLConfig) -> None:
        self.config = config
        self.table = check_table_name(config.table)
        # Quoted in every statement: a name that validates (`order`, `select`) must work.
        self.sql_name = f"`{self.table}`"
        self.mailbox_name = f"`{mailbox_table(self.table)}`"
        self.connection = Connection(config)
        self.schema = Schema(self.connection, self.table, self.sql_name)
        self.group = GroupCommit(self._run_one, self._run_batch, timeout=config.operation_timeout)
        self.reads: ReadBatcher[Session] = ReadBatcher(self._fetch_many)
        self.merged_batches = 0  # batches sent as merged statements (for tests and benchmarks)
        self.refusals = 0  # writes the database refused (too large, a key it cannot address)
        self._batch_number = 0  # names each one-statement batch's read-back (statements.collected)

    @property
    def retries(self) -> int:
        """Statements retried after a deadlock, a lock wait or a lost connection."""
        return self.connection.retries

    # -- what the composition root needs (application.ports.StoreAdmin) -----------------

    def describe(self) -> str:
        return f"mysql {self.config.where}/{self.config.database} table {self.table}"

    async def open(self) -> None:
        """Connect, learn the server's flavour and check the schema; a failed open closes the pool."""
        try:
            await self.connection.open()
            await self.schema.check()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.connection.close()

    def health(self) -> dict[str, object]:
        """What the health check adds: the node in use, and whether it is a Galera cluster node."""
        return {"node": self.connection.where, "galera": bool(self.connection.galera)}

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        await self.connection.run("SELECT 1", (), idempotent=True)

    async def migrate(self) -> None:
        """Create the table from ``sql/mysql.sql`` unless it is there: the explicit opt-in."""
        await self.schema.migrate()

    async def check(self) -> None:
        """Connect and verify the schema (:class:`SchemaMissing` says what is wrong)."""
        await self.open()

    # -- running row operations -----------------------------------------------------------

    async def _compact(self) -> bool:
        """Whether writes compact their JSON (MariaDB); asked once, at open."""
        return await self.connection.is_mariadb()

    async def _run_one(self, payload: Payload, idempotent: bool) -> Outcome:
        sql, params = single(self.sql_name, payload)
        return single_outcome(payload, await self._run(sql, params, idempotent=idempotent))

    async def _run_batch(self, payloads: list[Payload]) -> list[Outcome | Exception]:
        """One transaction for the batch; each payload's outcome, or the named error of a refused write.

        A refused write stays alone: its round runs again without it, in the same transaction.
        """
        plan = batch(self.sql_name, payloads)
        if plan.one_statement and self.connection.mariadb:
            try:
                return await self._run_one_statement(plan)
            except pymysql.err.MySQLError as exc:
                if error_code(exc) not in (TOO_LARGE, UNADDRESSABLE_KEY):
                    raise
                # Refused whole (nothing applied): the transaction below finds which write it was.
        refused: dict[int, Exception] = {}
        async with self.connection.begin() as tx:
            if (insert := plan.insert()) is not None:
                await tx.run(*insert)
            for round_ in plan.rounds:
                await self._write_round(tx, plan, round_, refused)
            read_back = plan.read_back()
            versions = await tx.run(*read_back) if read_back is not None else None
        self.merged_batches += 1
        outcomes = plan.outcomes(versions, refused)
        return [refused[i] if outcome is None else outcome for i, outcome in enumerate(outcomes)]

    async def _run_one_statement(self, plan: Batch) -> list[Outcome | Exception]:
        """A batch of one statement: no transaction, and one round trip.

        The UPDATE keeps what it matched in a session variable, read back on
        the same connection in the same text (``Transaction.run_and_read``):
        exact, as a read-back inside a transaction would be, without BEGIN and
        COMMIT. MariaDB only: MySQL 8 deprecates assigning variables in
        expressions.
        """
        self._batch_number += 1
        number = self._batch_number
        versions = None
        async with self.connection.begin(autocommit=True) as tx:
            if (insert := plan.insert()) is not None:
                await tx.run(*insert)
            else:
                _, versions = await tx.run_and_read(plan.update(plan.rounds[0], collect=number), collected(number))
        self.merged_batches += 1
        return [outcome or Outcome(0, [], None) for outcome in plan.outcomes(versions)]  # none refused

    async def _write_round(
        self, tx: Transaction, plan: Batch, round_: tuple[int, ...], refused: dict[int, Exception]
    ) -> None:
        try:
            await tx.run(*plan.update(round_))
            return
        except pymysql.err.MySQLError as exc:
            if error_code(exc) not in (TOO_LARGE, UNADDRESSABLE_KEY):
                raise
            refusal = exc
        # InnoDB rolled back that statement alone and keeps its row locks: ask which writes it refused.
        lengths = {str(hexid): length for hexid, length in (await tx.run(*plan.probe(round_))).rows}
        for i in round_:
            write = plan.payloads[i]
            if not isinstance(write, RowWrite) or write.data_sql is None or write.hexid.upper() not in lengths:
                continue  # a touch is never refused; a row no longer live is not written
            length = lengths[write.hexid.upper()]
            if length is None:
                refused[i] = InvalidKey("the session store cannot address one of these keys")
            elif int(length) > write.max_bytes:
                refused[i] = SessionTooLarge(f"the session would exceed {write.max_bytes} bytes")
        rest = tuple(i for i in round_ if i not in refused)
        if len(rest) == len(round_):
            raise refusal  # none found refused: the batch fails whole and each write runs alone
        if rest:
            await tx.run(*plan.update(rest))

    async def _atomic(self, statements: Sequence[tuple[str, Sequence[object]]], *, idempotent: bool) -> list[Outcome]:
        try:
            return await self.connection.atomic(statements, idempotent=idempotent)
        except pymysql.err.ProgrammingError as exc:
            if error_code(exc) == ER.NO_SUCH_TABLE:
                raise self.schema.missing() from exc
            raise

    async def _run(self, sql: str, params: Sequence[object], *, idempotent: bool) -> Outcome:
        try:
            return await self.connection.run(sql, params, idempotent=idempotent)
        except pymysql.err.ProgrammingError as exc:
            if error_code(exc) == ER.NO_SUCH_TABLE:
                raise self.schema.missing() from exc
            raise

    # -- the port (application.ports.SessionStore) ----------------------------------------

    async def insert(self, digest: bytes, session: Session) -> None:
        try:
            # A retry after a lost connection can only meet our own row (digests of fresh
            # 256-bit tokens do not collide): a duplicate means our first attempt landed.
            await self.group.submit(NewRow(hexkey(digest), insert_values(session)), idempotent=True, key=digest)
        except pymysql.err.IntegrityError as exc:
            if error_code(exc) != ER.DUP_ENTRY:
                raise

    async def fetch(self, digest: bytes) -> Session | None:
        return await self.reads.get(digest)

    async def _fetch_many(self, digests: Sequence[bytes]) -> dict[bytes, Session]:
        if len(digests) == 1:
            rows = (await self._run(select_one(self.sql_name), (hexkey(digests[0]),), idempotent=True)).rows
            return {digests[0]: session_from_row(rows[0])} if rows else {}
        sql = select_many(self.sql_name, len(digests))
        rows = (await self._run(sql, [hexkey(d) for d in digests], idempotent=True)).rows
        return {bytes(row[0]): session_from_row(row[1:]) for row in rows}

    async def write(
        self, digest: bytes, change: Change, *, now: float, idle_deadline: float, max_bytes: int
    ) -> int | None:
        # Known since open(): read it without a coroutine hop on the hot path.
        compact = self.connection.mariadb
        payload = RowWrite.of(
            hexkey(digest),
            change,
            compact=compact if compact is not None else await self._compact(),
            now=now,
            idle_deadline=idle_deadline,
            max_bytes=max_bytes,
        )
        try:
            with _refusals(max_bytes):
                # Deadlocks are retried; a connection lost mid-UPDATE is not, as the write
                # may have landed: the caller gets StoreUnavailable, not a double write.
                outcome = await self.group.submit(payload, idempotent=False, key=digest)
        except (SessionTooLarge, InvalidKey):
            self.refusals += 1
            raise
        if outcome.rowcount and outcome.last_id is not None:
            return outcome.last_id
        return None  # no live session under this digest

    async def touch(self, digest: bytes, *, now: float, idle_deadline: float) -> bool:
        payload = RowWrite.touch(hexkey(digest), now, idle_deadline)
        return (await self.group.submit(payload, idempotent=True, key=digest)).rowcount > 0

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
        sql, params = rotation(
            self.sql_name,
            hexkey(old),
            hexkey(new),
            now=now,
            idle_deadline=idle_deadline,
            max_bytes=max_bytes,
            change=change or Change(),
            user_id=user_id,
            compact=await self._compact(),
        )
        with _refusals(max_bytes):
            # Repeating it after a lost connection is safe: the old id is gone once it landed.
            if user_id is None:
                await self._run(sql, params, idempotent=True)
            else:
                drop = mailbox.drop_for_new_owner(self.sql_name, self.mailbox_name, hexkey(old), user_id, now)
                await self._atomic([*drop, (sql, params)], idempotent=True)
        return await self.fetch(new)

    async def delete(self, digest: bytes) -> bool:
        sql = f"DELETE FROM {self.sql_name} WHERE id = UNHEX(%s)"
        return (await self._run(sql, (hexkey(digest),), idempotent=True)).rowcount > 0

    async def delete_many(self, digests: Collection[bytes]) -> int:
        unique = sorted(set(digests))
        if not unique:
            return 0
        sql = delete_many(self.sql_name, len(unique))
        return (await self._run(sql, [hexkey(d) for d in unique], idempotent=True)).rowcount

    async def list_user(self, user_id: str, *, now: float) -> list[tuple[bytes, Session]]:
        rows = (await self._run(select_user(self.sql_name), (user_id, now), idempotent=True)).rows
        return [(bytes(row[0]), session_from_row(row[1:])) for row in rows]

    async def purge(self, *, now: float, batch: int, on_batch: Callable[[int], None] | None = None) -> int | None:
        return await self.schema.purge(now=now, batch=batch, on_batch=on_batch)

    # -- the mailbox (application.ports.MailboxStore) -------------------------------------

    async def send(
        self, digests: Collection[bytes], event: str, payload: str, *, now: float, expires: float, max_messages: int
    ) -> dict[bytes, int]:
        hexids = sorted({hexkey(d) for d in digests})
        if not hexids:
            return {}
        statements = mailbox.send(
            self.sql_name,
            self.mailbox_name,
            hexids,
            event,
            payload,
            now=now,
            expires=expires,
            max_messages=max_messages,
        )
        try:
            # Not repeated after a lost connection: the message may have been queued.
            outcomes = await self._atomic(statements, idempotent=False)
        except pymysql.err.MySQLError as exc:
            if error_code(exc) == TOO_LARGE:
                raise MailboxFull(f"a mailbox holds {max_messages} messages already") from None
            raise
        return {bytes.fromhex(str(hexid)): int(last) for hexid, last in outcomes[-1].rows}

    async def pending(self, digest: bytes, *, now: float, after: int = 0, limit: int = 100) -> list[Message]:
        sql = mailbox.pending(self.mailbox_name)
        rows = (await self._run(sql, (hexkey(digest), after, now, limit), idempotent=True)).rows
        return [message_from_row(row) for row in rows]

    async def ack(self, digest: bytes, ids: Collection[int]) -> int:
        unique = sorted({int(i) for i in ids})
        if not unique:
            return 0
        outcomes = await self._atomic(
            mailbox.remove(self.sql_name, self.mailbox_name, hexkey(digest), unique), idempotent=True
        )
        return outcomes[1].rowcount
