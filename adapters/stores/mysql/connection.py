"""The MySQL connection pool: statements with bounded time, safe retries, and errors mapped by code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiomysql
import pymysql
from attrs import frozen
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
    """A transaction's connection failed; whether its COMMIT landed is unknown.

    ``error`` is what the callers whose statements cannot be repeated are told.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Connection:
    """An aiomysql pool with autocommit on, bounded in size and in time per operation.

    Every operation (waiting for a connection and retries included) takes at
    most ``config.operation_timeout``. Statements are retried after a deadlock
    or a lock wait (rolled back by the server, a Galera certification conflict
    included) and when they were never sent; after a lost connection only
    when ``idempotent``, since they may have run.

    With several nodes (``config.nodes``) it uses one at a time, the first
    that answers, and moves to the next as soon as the one in use stops
    answering (refused, lost, shutting down, not ready, or silent past the
    bound); the retries of the operation that noticed go to the next node.
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
        self._closing: set[asyncio.Task[None]] = set()
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

    @property
    def opened(self) -> bool:
        return self._pool is not None

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
        for task in list(self._closing):
            task.cancel()

    def _node_failed(self, node: int, exc: BaseException) -> None:
        """The node ``node`` stopped answering: move to the next one, if there is another and we are still on it."""
        count = len(self.config.nodes)
        if count < 2 or node != self._node:
            return  # one node only, or another operation moved on already
        failed = self.where
        self._node = (node + 1) % count
        self.failovers += 1
        pool, self._pool, self._galera = self._pool, None, None
        if pool is not None:
            pool.close()  # idle connections now; those in use as their operations end
            task = asyncio.get_running_loop().create_task(self._wait_closed(pool))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        log.warning(
            "MySQL node %s stopped answering (%s); moving to %s",
            failed,
            error_code(exc) or type(exc).__name__,
            self.where,
        )

    async def _wait_closed(self, pool: aiomysql.Pool) -> None:
        try:
            async with asyncio.timeout(self.config.operation_timeout * 2):
                await pool.wait_closed()
        except TimeoutError:
            pool.terminate()

    def _down(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the node in use cannot serve now (as opposed to refusing this statement)."""
        if isinstance(exc, TimeoutError | OSError | pymysql.err.InterfaceError):
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
        """A pool on the node in use; on Galera with causal reads, one whose connections read causally."""
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
            if self._down(exc if not isinstance(exc, StoreUnavailable) else exc.__cause__ or exc):
                self._node_failed(node, exc)
            raise
        galera = row is not None and str(row[1]).upper() == "ON"
        if galera and self.config.causal_reads:
            pool.close()
            await pool.wait_closed()
            pool = await self._create_pool(causal=True)
        self._galera = galera
        return pool

    async def _create_pool(self, *, causal: bool = False) -> aiomysql.Pool:
        c = self.config
        host, port = self.node
        # wsrep_sync_wait = 1: each SELECT first waits until this node applied every write the
        # cluster had acknowledged, so a read through one node sees a write made through another.
        causality = ", wsrep_sync_wait = 1" if causal else ""
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
                    # the session exists (docs/decisions.md, FOUND_ROWS). MULTI_STATEMENTS: a
                    # group-commit batch goes as one transaction text; safe, since every statement
                    # is built from placeholders and a validated, quoted table name only.
                    client_flag=CLIENT.FOUND_ROWS | CLIENT.MULTI_STATEMENTS,
                    # Strict mode: our statements signal refusals through it (statements.py).
                    # group_concat_max_len: a batch's version read-back is one GROUP_CONCAT,
                    # which MySQL 8 would cut at 1,024 bytes by default.
                    init_command=(
                        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION',"
                        f" innodb_lock_wait_timeout = {int(c.lock_wait_timeout)}, group_concat_max_len = 1048576"
                        f"{causality}"
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

    async def _once(self, sql: str, params: Sequence[object]) -> Outcome:
        node = self._node
        pool = await self._get_pool()
        conn = await pool.acquire()
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

    async def run(self, sql: str, params: Sequence[object], *, idempotent: bool) -> Outcome:
        """Run one statement, retrying where that cannot apply it twice.

        Raises :class:`StoreUnavailable` for the store's own failures; any
        other MySQL error (a refusal our statement signalled, a bug) as it is.
        """

        def retryable(exc: BaseException) -> bool:
            return self._nothing_ran(exc) or (idempotent and error_code(exc) in CONNECTION_LOST)

        c = self.config
        node = self._node
        try:
            async with asyncio.timeout(c.operation_timeout):
                # The first attempt runs bare: tenacity's machinery costs more
                # than the statement itself on the hot path (~70 µs, measured).
                try:
                    return await self._once(sql, params)
                except (pymysql.err.MySQLError, OSError) as exc:
                    if not retryable(exc):
                        raise
                    self._count_retry_of(exc)
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(retryable),
                    stop=stop_after_attempt(3),
                    wait=wait_exponential(multiplier=0.02, max=0.2),
                    before_sleep=self._count_retry,
                    reraise=True,
                ):
                    with attempt:
                        return await self._once(sql, params)
        except (pymysql.err.MySQLError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                self._node_failed(node, exc)  # silent for the whole bound: try another node next time
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

    async def transaction(self, statements: Sequence[tuple[str, Sequence[object]]]) -> list[Outcome]:
        """``statements`` between BEGIN and COMMIT, sent as one text; each one's outcome.

        Raises :class:`ConnectionLost` when the connection failed (the COMMIT may
        or may not have landed), a MySQL error when a statement was refused
        (nothing committed), and nothing is retried here.
        """
        c = self.config
        node = self._node
        try:
            async with asyncio.timeout(c.operation_timeout):
                pool = await self._get_pool()
                conn = await pool.acquire()
                try:
                    async with conn.cursor() as cursor:
                        texts = [cursor.mogrify(sql, params) for sql, params in statements]
                        await cursor.execute(";\n".join(["BEGIN", *texts, "COMMIT"]))
                        outcomes = []
                        for _ in statements:
                            await cursor.nextset()
                            rows = list(await cursor.fetchall()) if cursor.description else []
                            outcomes.append(Outcome(cursor.rowcount, rows, cursor.lastrowid))
                        await cursor.nextset()  # the COMMIT
                        return outcomes
                except BaseException:
                    # A refused statement leaves its transaction open: it dies with the connection.
                    conn.close()
                    raise
                finally:
                    pool.release(conn)
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            code = error_code(exc)
            if self._down(exc):
                self._node_failed(node, exc)
            if isinstance(exc, pymysql.err.InterfaceError) or code in CONNECTION_LOST or code in SHUTTING_DOWN:
                raise ConnectionLost(unavailable(exc, self.where, c.operation_timeout)) from exc
            raise  # refused, nothing committed: the caller runs each statement alone
        except (TimeoutError, OSError) as exc:
            self._node_failed(node, exc)
            raise ConnectionLost(unavailable(exc, self.where, c.operation_timeout)) from exc

    async def atomic(self, statements: Sequence[tuple[str, Sequence[object]]], *, idempotent: bool) -> list[Outcome]:
        """``statements`` as one transaction (:meth:`transaction`), within the operation's time bound.

        Re-run whole when the server rolled it back (a deadlock, a lock wait)
        and, if ``idempotent``, when the connection died under it. Raises
        :class:`StoreUnavailable` for the store's own failures (a
        non-idempotent transaction whose connection died may or may not have
        committed) and any other MySQL error as it is (a refusal its statements
        signalled: nothing committed).
        """
        c = self.config
        try:
            async with asyncio.timeout(c.operation_timeout):
                for attempt in range(3):
                    last = attempt == 2
                    try:
                        return await self.transaction(statements)
                    except ConnectionLost as lost:
                        if last or not idempotent:
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

        Waiting for the connection is bounded; a failure closes the connection.
        """
        pool = await self._get_pool()
        try:
            async with asyncio.timeout(self.config.operation_timeout):
                conn = await pool.acquire()
        except TimeoutError as exc:
            raise StoreUnavailable("no database connection free within the operation's time bound") from exc
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
        log.info("retrying after MySQL error %s", error_code(exc))
