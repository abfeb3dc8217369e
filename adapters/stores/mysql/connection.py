"""The MySQL connection pool: statements with bounded time, safe retries, and errors mapped by code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiomysql
import pymysql
from attrs import define, frozen
from pymysql.constants import CLIENT, ER
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from adapters.stores.mysql.config import MySQLConfig, Node, node_name
from adapters.stores.mysql.errors import (
    CONNECTION_LOST,
    NODE_DOWN,
    NODE_NOT_READY,
    NOT_SENT,
    ROLLED_BACK,
    SHUTTING_DOWN,
    error_code,
    store_error,
    unavailable,
)
from application.errors import StoreUnavailable

log = logging.getLogger("socketio_session.mysql")


@frozen
class Outcome:
    """What a statement did: rows matched (or deleted), rows read, LAST_INSERT_ID()."""

    rowcount: int
    rows: list[tuple[Any, ...]]
    last_id: int | None


class ConnectionLost(Exception):
    """A transaction's connection failed (or its time bound passed) before it was known to have committed.

    ``error`` is what the callers whose statements cannot be repeated are told.
    ``maybe_committed`` is False when it failed before the COMMIT was sent:
    then nothing of it can ever commit (the server rolls back a transaction
    whose connection is gone), and all of it may be run again.
    """

    def __init__(self, error: Exception, *, maybe_committed: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.maybe_committed = maybe_committed


class Transaction:
    """The statements of one transaction, each sent in its own round trip (:meth:`Connection.begin`)."""

    def __init__(self, cursor: aiomysql.Cursor, *, autocommit: bool) -> None:
        self._cursor = cursor
        self._autocommit = autocommit

    async def run(self, sql: str, params: Sequence[object]) -> Outcome:
        """Run one statement of the transaction; a refused statement raises its MySQL error.

        After a refusal of the statement alone (too large, a key the server
        cannot address) the transaction goes on without it: InnoDB rolls back
        that statement, not the transaction. After a deadlock or a Galera
        conflict (1213) the server rolled the whole transaction back.
        """
        cursor = self._cursor
        await cursor.execute(sql, params)
        rows = list(await cursor.fetchall()) if cursor.description else []
        return Outcome(cursor.rowcount, rows, cursor.lastrowid)

    async def run_and_read(
        self, statement: tuple[str, Sequence[object]], read: tuple[str, Sequence[object]]
    ) -> tuple[Outcome, Outcome]:
        """One autocommit ``statement``, then ``read`` (of what it left on the connection), as one text.

        One round trip instead of two, and only outside a transaction: the
        statement commits on its own before the read starts, so no transaction
        is ever open across the two (a transaction is never sent as one text:
        :meth:`Connection.begin`). If the statement fails, the server runs
        nothing after it and its error is raised.
        """
        if not self._autocommit:
            raise RuntimeError("run_and_read is for statements that commit on their own (begin(autocommit=True))")
        cursor = self._cursor
        text = cursor.mogrify(statement[0], statement[1]) + ";\n" + cursor.mogrify(read[0], read[1])
        await cursor.execute(text)
        first = Outcome(cursor.rowcount, [], cursor.lastrowid)
        await cursor.nextset()
        return first, Outcome(cursor.rowcount, list(await cursor.fetchall()), cursor.lastrowid)


@define
class _Attempt:
    """How far one operation got: whether it held a connection (a wait for the pool is not a node failing)."""

    connected: bool = False
    committing: bool = False


class Connection:
    """An aiomysql pool with autocommit on, bounded in size and in time per operation.

    Every operation (waiting for a connection and retries included) takes at
    most ``config.operation_timeout``. Statements are retried after a deadlock
    or a lock wait (rolled back by the server, a Galera certification conflict
    included) and when they were never sent; after a lost connection only
    when ``idempotent``, since they may have run.

    With several nodes (``config.nodes``) it uses one at a time, the first
    that answers, and moves to the next as soon as the one in use fails: a
    refused or lost connection, shutting down, not ready, or a fresh
    connection that cannot run ``SELECT 1`` within the bound (tried after an
    operation found it silent). A wait for a busy pool is never a failure of
    the node. The retries of the operation that noticed go to the next node.
    On Galera (``wsrep_on``), every connection reads causally
    (``wsrep_sync_wait = 1``) unless ``config.causal_reads`` is off.
    """

    def __init__(self, config: MySQLConfig) -> None:
        self.config = config
        self._pool: aiomysql.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._mariadb: bool | None = None
        self._node = 0  # index in config.nodes of the node in use
        self._galera: bool | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # closing old pools, probing a silent node
        self._probing: int | None = None  # the node a probe is running for
        self.retries = 0  # statements retried after a deadlock, lock wait or lost connection
        self.failovers = 0  # moves to the next node

    @property
    def node(self) -> Node:
        """The node in use (or to be tried next)."""
        return self.config.nodes[self._node]

    @property
    def where(self) -> str:
        """``host:port`` of the node in use, for messages."""
        return node_name(self.node)

    @property
    def galera(self) -> bool | None:
        """Whether the node in use is a Galera cluster node (None until a pool was made)."""
        return self._galera

    async def open(self) -> None:
        """Create the pool and learn the server's flavour; a failed open closes what it made."""
        try:
            await self.is_mariadb()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None
        for task in list(self._tasks):
            task.cancel()

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _node_failed(self, node: int, exc: BaseException) -> None:
        """The node ``node`` failed: move to the next one, if there is another and we are still on it."""
        count = len(self.config.nodes)
        if count < 2 or node != self._node:
            return  # one node only, or another operation moved on already
        failed = self.where
        self._node = (node + 1) % count
        self.failovers += 1
        pool, self._pool, self._galera = self._pool, None, None
        if pool is not None:
            pool.close()  # idle connections now; those in use as their operations end
            self._background(self._wait_closed(pool))
        log.warning(
            "MySQL node %s stopped answering (%s); moving to %s",
            failed,
            error_code(exc) or type(exc).__name__,
            self.where,
        )

    def _suspect(self, node: int) -> None:
        """An operation on ``node`` found it silent past the bound: probe a fresh connection, fail over if it fails.

        A busy pool or a slow statement is not a dead node; a node that cannot
        open a connection and answer ``SELECT 1`` within the bound is.
        """
        if len(self.config.nodes) < 2 or node != self._node or self._probing is not None:
            return
        self._probing = node
        self._background(self._probe(node))

    async def _probe(self, node: int) -> None:
        c = self.config
        host, port = c.nodes[node]
        try:
            async with asyncio.timeout(c.operation_timeout):
                conn = await aiomysql.connect(
                    host=host,
                    port=port,
                    user=c.user,
                    password=c.password,
                    db=c.database,
                    connect_timeout=c.connect_timeout,
                )
                try:
                    async with conn.cursor() as cursor:
                        await cursor.execute("SELECT 1")
                finally:
                    conn.close()
        except (TimeoutError, OSError, pymysql.err.MySQLError) as exc:
            self._node_failed(node, exc)
        finally:
            self._probing = None

    async def _wait_closed(self, pool: aiomysql.Pool) -> None:
        try:
            async with asyncio.timeout(self.config.operation_timeout * 2):
                await pool.wait_closed()
        except TimeoutError:
            pool.terminate()

    def _down(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the node in use cannot serve now (as opposed to refusing this statement).

        Not a timeout: whether a silent node is down is for a probe to tell (:meth:`_suspect`).
        """
        if isinstance(exc, OSError | pymysql.err.InterfaceError) and not isinstance(exc, TimeoutError):
            return True
        code = error_code(exc)
        return code in NODE_DOWN or (code == ER.OPTION_PREVENTS_STATEMENT and len(self.config.nodes) > 1)

    @property
    def mariadb(self) -> bool | None:
        """MariaDB (True) or MySQL (False), once :meth:`is_mariadb` asked; None before."""
        return self._mariadb

    async def is_mariadb(self) -> bool:
        """MariaDB (True) or MySQL (False): asked once, at open, then known."""
        if self._mariadb is None:
            version = await self.run("SELECT VERSION()", (), idempotent=True)
            self._mariadb = "mariadb" in str(version.rows[0][0]).lower()
        return self._mariadb

    async def _get_pool(self) -> aiomysql.Pool:
        pool = self._pool
        if pool is None:
            async with self._pool_lock:
                pool = self._pool = self._pool or await self._node_pool()
        return pool

    async def _node_pool(self) -> aiomysql.Pool:
        """A pool on the node in use; on Galera with causal reads, one whose connections read causally.

        Its first connection is the probe of the node: if it cannot be made, the node failed.
        """
        node = self._node
        try:
            pool = await self._create_pool()
            conn = await pool.acquire()
            try:
                async with conn.cursor() as cursor:
                    await cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
                    row = await cursor.fetchone()
            finally:
                pool.release(conn)
        except BaseException as exc:
            cause = exc.__cause__ if isinstance(exc, StoreUnavailable) and exc.__cause__ else exc
            if self._down(cause) or isinstance(cause, TimeoutError):
                self._node_failed(node, exc)
            raise
        galera = row is not None and str(row[1]).upper() == "ON"
        if galera:
            pool.close()
            await pool.wait_closed()
            pool = await self._create_pool(galera=True)
        self._galera = galera
        return pool

    async def _create_pool(self, *, galera: bool = False) -> aiomysql.Pool:
        c = self.config
        host, port = self.node
        # wsrep_retry_autocommit = 0: an autocommit statement aborted by a replicated write comes
        # back as error 1213, which the store retries whole, instead of being run again by the
        # server: a batch's UPDATE keeps what it matched in a session variable, which a silent
        # second run would add to (statements.collected). wsrep_sync_wait = 1: each SELECT first
        # waits until this node applied every write the cluster had acknowledged, so a read
        # through one node sees a write made through another.
        causality = ""
        if galera:
            causality = ", wsrep_retry_autocommit = 0" + (", wsrep_sync_wait = 1" if c.causal_reads else "")
        try:
            return await asyncio.wait_for(
                aiomysql.create_pool(
                    host=host,
                    port=port,
                    user=c.user,
                    password=c.password,
                    db=c.database,
                    minsize=0,
                    maxsize=c.pool_size,
                    pool_recycle=c.recycle,
                    connect_timeout=c.connect_timeout,
                    charset="utf8mb4",
                    # Pooled SELECTs must see other processes' commits: without autocommit
                    # they read a stale snapshot (docs/decisions.md, autocommit).
                    autocommit=True,
                    # Affected rows = rows matched, so an UPDATE that changes nothing still says
                    # the session exists (docs/decisions.md, FOUND_ROWS). MULTI_STATEMENTS for one
                    # use only, Transaction.run_and_read: an autocommit statement and a read. A
                    # transaction is never sent as one text (docs/decisions.md, Galera: no
                    # transaction as one multi-statement text); Connection.begin sends each alone.
                    client_flag=CLIENT.FOUND_ROWS | CLIENT.MULTI_STATEMENTS,
                    # Strict mode: our statements signal refusals through it (statements.py).
                    # group_concat_max_len: a batch's version read-back is one GROUP_CONCAT,
                    # which MySQL 8 would cut at 1,024 bytes by default. @_ss_batch and
                    # @_ss_versions (statements.collected) are set before any statement uses
                    # them: MariaDB 10.11 reads a variable never set on the connection as a
                    # constant NULL for the whole statement, so the first batch on a fresh
                    # connection kept only its last row.
                    init_command=(
                        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION',"
                        f" innodb_lock_wait_timeout = {int(c.lock_wait_timeout)}, group_concat_max_len = 1048576,"
                        f" @_ss_batch = 0, @_ss_versions = ''{causality}"
                    ),
                ),
                timeout=c.operation_timeout,
            )
        except (OSError, pymysql.err.MySQLError) as exc:
            # Creating the pool opens no connection (minsize=0); whatever fails here fails to connect.
            raise self._named(exc) from exc

    def _named(self, exc: BaseException) -> StoreUnavailable:
        c = self.config
        return store_error(exc, self.where, c.operation_timeout) or unavailable(exc, self.where, c.operation_timeout)

    async def _acquire(self, pool: aiomysql.Pool, node: int) -> aiomysql.Connection:
        """A pooled connection; one that cannot be opened (refused, unreachable) is the node failing."""
        try:
            return await pool.acquire()
        except (OSError, pymysql.err.MySQLError) as exc:
            if self._down(exc):
                self._node_failed(node, exc)
            raise

    async def _once(self, sql: str, params: Sequence[object], attempt: _Attempt) -> Outcome:
        node = self._node
        pool = await self._get_pool()
        conn = await self._acquire(pool, node)
        attempt.connected = True
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(sql, params)
                rows = list(await cursor.fetchall())
                return Outcome(cursor.rowcount, rows, cursor.lastrowid)
        except BaseException as exc:
            # Whatever failed (a timeout included), this connection's state is unknown: drop it.
            conn.close()
            if self._down(exc):
                self._node_failed(node, exc)
            raise
        finally:
            pool.release(conn)

    def _timed_out(self, node: int, attempt: _Attempt) -> StoreUnavailable:
        """The operation's bound passed: a busy pool, or a silent node (which a probe then tells)."""
        c = self.config
        where = node_name(c.nodes[node])
        self._suspect(node)
        if not attempt.connected:
            return StoreUnavailable(f"no connection to MySQL at {where} free within {c.operation_timeout} s")
        return StoreUnavailable(f"MySQL at {where} did not answer within {c.operation_timeout} s")

    async def run(self, sql: str, params: Sequence[object], *, idempotent: bool) -> Outcome:
        """Run one statement, retrying where that cannot apply it twice.

        Raises :class:`StoreUnavailable` for the store's own failures; any
        other MySQL error (a refusal our statement signalled, a bug) as it is.
        """

        def retryable(exc: BaseException) -> bool:
            return self._nothing_ran(exc) or (idempotent and error_code(exc) in CONNECTION_LOST)

        c = self.config
        node = self._node
        attempt = _Attempt()
        try:
            async with asyncio.timeout(c.operation_timeout):
                # The first attempt runs bare: tenacity's machinery costs more
                # than the statement itself on the hot path (~70 µs, measured).
                try:
                    return await self._once(sql, params, attempt)
                except (pymysql.err.MySQLError, OSError) as exc:
                    if not retryable(exc):
                        raise
                    self._count_retry_of(exc)
                async for retry in AsyncRetrying(
                    retry=retry_if_exception(retryable),
                    stop=stop_after_attempt(3),
                    wait=wait_exponential(multiplier=0.02, max=0.2),
                    before_sleep=self._count_retry,
                    reraise=True,
                ):
                    with retry:
                        node = self._node
                        attempt = _Attempt()
                        return await self._once(sql, params, attempt)
        except TimeoutError as exc:
            raise self._timed_out(node, attempt) from exc
        except (pymysql.err.MySQLError, OSError) as exc:
            mapped = store_error(exc, self.where, c.operation_timeout)
            if mapped is None:
                raise
            raise mapped from exc
        raise AssertionError("unreachable: tenacity either returns or reraises")

    def _nothing_ran(self, exc: BaseException) -> bool:
        """Whether ``exc`` proves the statement did not take effect, so that running it again is safe."""
        code = error_code(exc)
        if code in ROLLED_BACK or code in NOT_SENT or code in NODE_NOT_READY:
            return True
        # A read-only node (a standby) refused it; with several nodes, the next one may take it.
        return code == ER.OPTION_PREVENTS_STATEMENT and len(self.config.nodes) > 1

    @asynccontextmanager
    async def begin(self, *, autocommit: bool = False) -> AsyncIterator[Transaction]:
        """A transaction: BEGIN, the block's statements, COMMIT, each its own round trip.

        With ``autocommit``, no BEGIN and no COMMIT: the block's statements
        commit each on its own, one after another on the same connection (a
        batch that is one statement, and a read of what it left in a session
        variable).

        Never one multi-statement text: on Galera, a transaction aborted by a
        replicated write midway through such a text answers OK to every
        statement, COMMIT included, while what ran before the abort is rolled
        back and the rest runs as autocommits (docs/decisions.md, Galera: no
        transaction as one multi-statement text). Statement by statement, the
        abort comes back as error 1213.

        Bounded as a whole by ``operation_timeout``. When the block raises, the
        transaction is rolled back and the error goes on. Raises
        :class:`StoreUnavailable` when it could not start (nothing ran),
        :class:`ConnectionLost` when the connection failed or the bound passed
        after BEGIN, and a MySQL error as :meth:`Transaction.run` or the COMMIT
        raised it (refused, rolled back: nothing committed). Nothing is retried here.
        """
        c = self.config
        node = self._node
        attempt = _Attempt()
        pool = await self._get_pool()
        try:
            async with asyncio.timeout(c.operation_timeout):
                conn = await self._acquire(pool, node)
                attempt.connected = True
                try:
                    async with conn.cursor() as cursor:
                        if autocommit:
                            attempt.committing = True  # from the first statement on, something may land
                        else:
                            await cursor.execute("BEGIN")
                        yield Transaction(cursor, autocommit=autocommit)
                        if not autocommit:
                            attempt.committing = True
                            await cursor.execute("COMMIT")
                except pymysql.err.MySQLError as exc:
                    if self._down(exc) or error_code(exc) in CONNECTION_LOST or not await self._rolled_back(conn):
                        conn.close()
                    raise
                except BaseException:
                    conn.close()  # a timeout or a cancellation: this connection's state is unknown
                    raise
                finally:
                    pool.release(conn)
        except TimeoutError as exc:
            unanswered = self._timed_out(node, attempt)
            if not attempt.connected:
                raise unanswered from exc
            raise ConnectionLost(unanswered, maybe_committed=attempt.committing) from exc
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError) as exc:
            code = error_code(exc)
            if self._down(exc):
                self._node_failed(node, exc)
            if (
                isinstance(exc, pymysql.err.InterfaceError | OSError)
                or code in CONNECTION_LOST
                or code in SHUTTING_DOWN
            ):
                lost = unavailable(exc, node_name(c.nodes[node]), c.operation_timeout)
                if not attempt.connected:
                    raise lost from exc
                raise ConnectionLost(lost, maybe_committed=attempt.committing) from exc
            raise  # refused, nothing committed

    async def _rolled_back(self, conn: aiomysql.Connection) -> bool:
        """ROLLBACK after a refused statement, so the connection can go back to the pool; False if that failed."""
        try:
            async with conn.cursor() as cursor:
                await cursor.execute("ROLLBACK")
        except (pymysql.err.MySQLError, OSError):
            return False
        return True

    async def transaction(self, statements: Sequence[tuple[str, Sequence[object]]]) -> list[Outcome]:
        """``statements`` as one transaction (:meth:`begin`); each one's outcome, once committed."""
        async with self.begin() as tx:
            outcomes = [await tx.run(sql, params) for sql, params in statements]
        return outcomes

    async def atomic(self, statements: Sequence[tuple[str, Sequence[object]]], *, idempotent: bool) -> list[Outcome]:
        """``statements`` as one transaction (:meth:`transaction`), within the operation's time bound.

        Re-run whole when the server rolled it back (a deadlock, a lock wait, a
        Galera conflict), when its connection died before the COMMIT was sent,
        and, if ``idempotent``, when it died during the COMMIT. Raises
        :class:`StoreUnavailable` for the store's own failures (a
        non-idempotent transaction whose connection died during its COMMIT may
        or may not have committed) and any other MySQL error as it is (a
        refusal its statements signalled: nothing committed).
        """
        c = self.config
        try:
            async with asyncio.timeout(c.operation_timeout):
                for attempt in range(3):
                    last = attempt == 2
                    try:
                        return await self.transaction(statements)
                    except ConnectionLost as lost:
                        if last or (lost.maybe_committed and not idempotent):
                            raise lost.error from lost
                        self._count_retry_of(lost.__cause__ or lost)
                    except (pymysql.err.MySQLError, OSError) as exc:
                        if last or not self._nothing_ran(exc):
                            raise
                        self._count_retry_of(exc)
                    await asyncio.sleep(0.02 * 2**attempt)
        except TimeoutError as exc:
            raise unavailable(exc, self.where, c.operation_timeout) from exc
        except (pymysql.err.MySQLError, OSError) as exc:
            mapped = store_error(exc, self.where, c.operation_timeout)
            if mapped is None:
                raise
            raise mapped from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    @asynccontextmanager
    async def dedicated(self) -> AsyncIterator[aiomysql.Cursor]:
        """A cursor on a connection of our own for as long as needed (a purge holding a named lock).

        Waiting for the connection is bounded (a busy pool is StoreUnavailable, not a
        failed node); a failure closes the connection.
        """
        node = self._node
        pool = await self._get_pool()
        try:
            async with asyncio.timeout(self.config.operation_timeout):
                conn = await self._acquire(pool, node)
        except TimeoutError as exc:
            raise self._timed_out(node, _Attempt()) from exc
        except (pymysql.err.MySQLError, OSError) as exc:
            raise self._named(exc) from exc
        try:
            async with conn.cursor() as cursor:
                yield cursor
        except BaseException:
            conn.close()
            raise
        finally:
            pool.release(conn)

    def _count_retry(self, state: RetryCallState) -> None:
        if state.outcome is not None and (exc := state.outcome.exception()) is not None:
            self._count_retry_of(exc)

    def _count_retry_of(self, exc: BaseException) -> None:
        self.retries += 1
        log.info("retrying after MySQL error %s on %s", error_code(exc) or type(exc).__name__, self.where)
