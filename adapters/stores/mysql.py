"""Sessions in MySQL 8 / MariaDB 10.5+, through an aiomysql pool.

Each session is one row keyed by the SHA-256 of its token. A write is a single
UPDATE that edits only the keys it names (``JSON_SET`` / ``JSON_REMOVE``), so
writers to different keys, in any number of processes, never lose each
other's keys, and no write revives an expired row (``expires > now`` is part of
every WHERE clause).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql
import pymysql
from attrs import evolve, frozen
from pymysql.constants import CLIENT, ER
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from adapters.stores.ddl import check_columns, check_table_name, ddl, ddl_path, statements
from adapters.stores.group_commit import ConnectionLost, GroupCommit, Job
from adapters.stores.mysql_batch import BatchSQL, NewRow, RowWrite, batch_sql, parse_versions
from adapters.stores.read_batch import ReadBatcher
from adapters.stores.rows import FIELDS, insert_values, session_from_row
from application.errors import SchemaMissing, StoreUnavailable
from domain.errors import InvalidKey, SessionTooLarge
from domain.session import Change, Session

log = logging.getLogger("socketio_session.mysql")

# Errors after which the statement certainly did not take effect: the server
# rolled it back (deadlock, lock wait timeout) or we never reached it.
_ROLLED_BACK = {ER.LOCK_DEADLOCK, ER.LOCK_WAIT_TIMEOUT}
_NOT_SENT = {2002, 2003, 1040, 1203}  # cannot connect (socket, TCP), too many connections
# The connection died under the statement; it may or may not have run.
_CONNECTION_LOST = {2006, 2013, 2055, 1927, 4031}  # gone, lost, lost reading, killed, idle timeout
_SHUTTING_DOWN = {1053, 1077, 1078, 1079, 1080}  # server shutdown in progress
# Errors that mean "the store is unreachable right now". With _REFUSED and
# _NOT_PERMITTED below, the only ones reported as StoreUnavailable (see
# MySQLStore._store_error); any other error is a bug (ours or the server's)
# and is raised as such, not disguised.
_UNAVAILABLE = _ROLLED_BACK | _NOT_SENT | _CONNECTION_LOST | _SHUTTING_DOWN
# MySQL refused us: the account, the database, a grant or the server's mode is
# wrong. Nothing ran, and retrying cannot help until someone changes the URL,
# the grants or the server, so these are reported at once, never retried.
_REFUSED = {
    ER.DBACCESS_DENIED_ERROR,  # 1044: no access to that database (or it does not exist)
    ER.ACCESS_DENIED_ERROR,  # 1045: wrong user or password
    ER.BAD_DB_ERROR,  # 1049: no such database
    ER.HOST_IS_BLOCKED,  # 1129: too many failed connects from this host
    ER.HOST_NOT_PRIVILEGED,  # 1130: this host may not connect
    ER.USER_LIMIT_REACHED,  # 1226: an account resource limit
    ER.NOT_SUPPORTED_AUTH_MODE,  # 1251
    ER.OPTION_PREVENTS_STATEMENT,  # 1290: e.g. a read-only server (a replica, a primary being failed over)
    1698,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR (e.g. root over TCP where only the Unix socket is allowed)
    ER.MUST_CHANGE_PASSWORD_LOGIN,  # 1862: the password expired
    3118,  # MySQL 8: account locked
    4151,  # MariaDB: account locked
    2059,  # CR_AUTH_PLUGIN_CANNOT_LOAD: the account's authentication plugin is not supported by the driver
}
# A statement needs a privilege the account lacks (e.g. `migrate` without CREATE).
_NOT_PERMITTED = {
    ER.TABLEACCESS_DENIED_ERROR,  # 1142
    ER.COLUMNACCESS_DENIED_ERROR,  # 1143
    ER.SPECIFIC_ACCESS_DENIED_ERROR,  # 1227
}

_SELECT = f"SELECT {FIELDS} FROM {{t}} WHERE id = UNHEX(%s)"


@contextmanager
def _refusals(max_bytes: int) -> Iterator[None]:
    """Turn strict mode's refusal of a NULL column (see write()) into the named error."""
    try:
        yield
    except pymysql.err.IntegrityError as exc:
        if _error_code(exc) != ER.BAD_NULL_ERROR:
            raise
        if "'data'" in str(exc):
            raise InvalidKey("the session store cannot address one of these keys") from None
        raise SessionTooLarge(f"the session would exceed {max_bytes} bytes") from None


@frozen
class Outcome:
    """What a statement did: rows matched (or deleted), rows read, LAST_INSERT_ID()."""

    rowcount: int
    rows: list[tuple[Any, ...]]
    last_id: int | None


def _merged_outcome(payload: object, number: tuple[int, int], versions: dict[str, int]) -> Outcome:
    """One job's outcome in a merged batch: as if its statement had run alone."""
    if not isinstance(payload, RowWrite):
        return Outcome(1, [], None)  # an insert (a refused one fails the whole batch)
    version = versions.get(payload.hexid.upper())
    if version is None:
        return Outcome(0, [], None)  # no live row
    nth, of = number
    # The row's writes in this batch took versions version-of+1 … version, in call order.
    return Outcome(1, [], version - of + nth if of else None)


def _error_code(exc: BaseException | None) -> int | None:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def _text(exc: BaseException) -> str:
    """The message of ``exc`` on one line: the server's own words for a MySQL error, without the code.

    Server messages name the user, host and database, never the password.
    """
    said = exc.args[1] if _error_code(exc) is not None and len(exc.args) > 1 else exc
    text = " ".join(str(said).split()) or type(exc).__name__
    if isinstance(exc, pymysql.err.MySQLError) and isinstance(cause := exc.__cause__, OSError):
        # The driver's "Can't connect" (2003) keeps the reason in its cause: refused, timed out, unknown host.
        text += f" ({' '.join(str(cause).split()) or type(cause).__name__})"
    return text


def _said(exc: BaseException) -> str:
    """``(1045) Access denied for user ...``, or ``ConnectionResetError: ...`` for an error without a code."""
    code = _error_code(exc)
    return f"({code}) {_text(exc)}" if code else f"{type(exc).__name__}: {_text(exc)}"


def describe_mysql_error(exc: pymysql.err.MySQLError) -> str:
    """One line for a MySQL error the store did not name (a bug, or something unforeseen): ``MySQL error 1054: ...``."""
    code = _error_code(exc)
    return f"MySQL error {code}: {_text(exc)}" if code else f"MySQL error ({type(exc).__name__}): {_text(exc)}"


def json_path(key: str) -> str:
    """The JSON path of a top-level ``key``: ``$."key"``, the key written as a JSON string.

    Quoting makes keys holding ``$ . [ ] * ' %`` plain names (PITFALLS.md); JSON
    string escaping covers ``"``, ``\\`` and control characters, which MariaDB
    otherwise rejects with error 4042 (syntax error in JSON path). MariaDB
    10.11 also rejects a quoted key that starts with ``-`` (it parses it as a
    negative array index), so a leading ``-`` is written as ``\\u002d``, which
    names the same member. tests/contract/test_store_contract.py
    (test_keys_with_a_leading_dash_round_trip) fails if this is removed.
    """
    quoted = json.dumps(key, ensure_ascii=False)
    if key.startswith("-"):
        quoted = '"\\u002d' + quoted[2:]
    return "$." + quoted


def hexkey(digest: bytes) -> str:
    # aiomysql 0.3.2 with PyMySQL >= 1.2.3 cannot bind bytes parameters
    # (aio-libs/aiomysql#1080, fix pending in #1081): escape_bytes_prefixed is
    # called with the wrong arguments. We bind the digest as hex and UNHEX() it
    # in SQL, which works with every PyMySQL. If this is replaced by raw bytes,
    # tests/contract/test_store_contract.py (test_binary_digests_of_every_byte_value_are_distinct_keys)
    # fails; tests/integration/test_mysql_store.py
    # (test_raw_bytes_parameters_still_break_so_digests_are_bound_as_hex) says when upstream is fixed.
    return digest.hex()


_UNREADABLE_URL = (
    "cannot read user:password@host:port/database from the mysql:// URL: the port must be a number up to 65535, and"
    " a user or password holding # / ? @ : must be percent-encoded (# as %23, / as %2F, ? as %3F, @ as %40, : as %3A)"
)


@frozen
class MySQLConfig:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    database: str = "test"
    table: str = "socketio_session"
    pool_size: int = 10
    # The longest one operation may take, waiting for a pooled connection and
    # retries included, before it reports StoreUnavailable instead of hanging
    # (a stopped or frozen server must not stall the clients).
    operation_timeout: float = 1.5
    connect_timeout: float = 1.0
    recycle: int = 3600
    # How long InnoDB lets a statement wait for a row lock before error 1205 (retried).
    lock_wait_timeout: int = 1

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MySQLConfig:
        """``mysql://user:password@host:port/database`` (user, password, port optional)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ValueError(f"not a mysql:// URL: scheme {parts.scheme!r}")
        # Neither message echoes any part of the URL: any piece of it may be a piece of the password.
        try:
            port = parts.port
        except ValueError:
            raise ValueError(_UNREADABLE_URL) from None
        # urlsplit ends the credentials at the first `#`, `/` or `?`: the rest of a password holding
        # one lands in the fragment, the path or the query, and a numeric start of it passes as the
        # port. Our URLs have no query or fragment, and no database name holds `@`.
        if parts.query or parts.fragment or "@" in parts.path:
            raise ValueError(_UNREADABLE_URL)
        database = parts.path.lstrip("/")
        if not database:
            raise ValueError("the mysql:// URL names no database (mysql://user:pass@host:3306/DATABASE)")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=unquote(database),
            **overrides,
        )


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
        self._pool: aiomysql.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self.retries = 0  # statements retried after a deadlock, lock wait or lost connection
        self._compact: bool | None = None  # JSON_COMPACT on writes (MariaDB); learnt on first write
        self.merged_batches = 0  # batches sent as merged statements (for tests and benchmarks)
        self.group: GroupCommit[Outcome] = GroupCommit(self._run_statement, self._run_batch)
        self.reads: ReadBatcher[Session] = ReadBatcher(self._fetch_many)

    # -- lifecycle ----------------------------------------------------------------

    async def open(self) -> None:
        """Create the pool (lazily reconnecting later) and check the schema; a failed open closes the pool."""
        try:
            await self._get_pool()
            await self.check_schema()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    async def _get_pool(self) -> aiomysql.Pool:
        pool = self._pool
        if pool is None:
            async with self._pool_lock:
                pool = self._pool = self._pool or await self._create_pool()
        return pool

    async def _create_pool(self) -> aiomysql.Pool:
        c = self.config
        try:
            return await asyncio.wait_for(
                aiomysql.create_pool(
                    host=c.host,
                    port=c.port,
                    user=c.user,
                    password=c.password,
                    db=c.database,
                    minsize=0,
                    maxsize=c.pool_size,
                    pool_recycle=c.recycle,
                    connect_timeout=c.connect_timeout,
                    charset="utf8mb4",
                    # Pooled SELECTs must see other processes' commits:
                    # without autocommit they read a stale snapshot (PITFALLS.md).
                    autocommit=True,
                    # Affected rows = rows matched, so an UPDATE that changes
                    # nothing still says the session exists (PITFALLS.md).
                    # MULTI_STATEMENTS: group commit sends a batch as one transaction
                    # text. Safe here: every statement is built from placeholders
                    # and a validated table name only.
                    client_flag=CLIENT.FOUND_ROWS | CLIENT.MULTI_STATEMENTS,
                    # A JSON_SET that yields NULL must fail, not blank the row.
                    # group_concat_max_len: a batch's version read-back is one GROUP_CONCAT
                    # (mysql_batch.py), which MySQL 8 would cut at 1,024 bytes by default.
                    init_command=(
                        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION',"
                        f" innodb_lock_wait_timeout = {int(c.lock_wait_timeout)}, group_concat_max_len = 1048576"
                    ),
                ),
                timeout=c.operation_timeout,
            )
        except (OSError, pymysql.err.MySQLError) as exc:
            # Creating the pool opens no connection (minsize=0); whatever fails here fails to connect.
            raise (self._store_error(exc) or self._unavailable(exc)) from exc

    # -- running statements ----------------------------------------------------------

    async def _once(self, sql: str, params: Sequence[object]) -> Outcome:
        pool = await self._get_pool()
        conn = await pool.acquire()
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(sql, params)
                rows = list(await cursor.fetchall())
                return Outcome(cursor.rowcount, rows, cursor.lastrowid)
        except BaseException:
            # Whatever failed (a timeout included), this connection's state is unknown: drop it.
            conn.close()
            raise
        finally:
            pool.release(conn)

    async def _run(self, sql: str, params: Sequence[object], *, idempotent: bool) -> Outcome:
        """Run one statement, retrying where that cannot apply it twice."""

        def retryable(exc: BaseException) -> bool:
            code = _error_code(exc)
            if code in _ROLLED_BACK or code in _NOT_SENT:
                return True
            return idempotent and code in _CONNECTION_LOST

        try:
            async with asyncio.timeout(self.config.operation_timeout):
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
            if _error_code(exc) == ER.NO_SUCH_TABLE:
                raise self._schema_missing() from exc
            mapped = self._store_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        raise AssertionError("unreachable: tenacity either returns or reraises")

    def _store_error(self, exc: BaseException) -> StoreUnavailable | None:
        """The named error for a failure of the store itself, or None for any other error.

        The one place that decides, by error code, what counts as "the store
        is unavailable": unreachable, lost, shutting down, retried to the end,
        or refusing this account. None means a bug (ours or the server's),
        which callers raise as it is rather than disguise.
        """
        c = self.config
        code = _error_code(exc)
        if code in _REFUSED or code in _NOT_PERMITTED:
            return StoreUnavailable(f"MySQL at {c.host}:{c.port} refused: {_said(exc)}")
        if isinstance(exc, pymysql.err.InterfaceError | OSError) or code in _UNAVAILABLE:
            return self._unavailable(exc)
        return None

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        """StoreUnavailable for an error known to be about reaching the server, in its own words."""
        c = self.config
        if isinstance(exc, TimeoutError):
            return StoreUnavailable(f"MySQL at {c.host}:{c.port} did not answer within {c.operation_timeout} s")
        if _error_code(exc) in _NOT_SENT:
            return StoreUnavailable(f"cannot reach MySQL at {c.host}:{c.port}: {_said(exc)}")
        return StoreUnavailable(f"MySQL at {c.host}:{c.port} failed: {_said(exc)}")

    async def _run_statement(self, sql: str, params: Sequence[object], idempotent: bool) -> Outcome:
        return await self._run(sql, params, idempotent=idempotent)

    async def _run_batch(self, jobs: list[Job]) -> list[Outcome]:
        """Several jobs in one transaction and one round trip; see adapters/stores/group_commit.py.

        Jobs that describe themselves (inserts, writes, touches) are merged into
        a few statements (adapters/stores/mysql_batch.py); others go one statement each.
        """
        payloads = [job.payload for job in jobs if isinstance(job.payload, NewRow | RowWrite)]
        merged: BatchSQL | None = None
        if len(payloads) == len(jobs):
            merged = batch_sql(self.sql_name, payloads)
            statements = merged.statements
        else:
            statements = [(job.sql, list(job.params)) for job in jobs]
        results = await self._transaction(statements)
        if merged is None:
            return results
        self.merged_batches += 1
        versions = parse_versions(results[-1].rows[0][0]) if merged.checks_versions else {}
        return [_merged_outcome(p, n, versions) for p, n in zip(payloads, merged.write_numbers, strict=True)]

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[object]]]) -> list[Outcome]:
        """``statements`` between BEGIN and COMMIT, sent as one text; each one's outcome."""
        try:
            async with asyncio.timeout(self.config.operation_timeout):
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
            code = _error_code(exc)
            if isinstance(exc, pymysql.err.InterfaceError) or code in _CONNECTION_LOST or code in _SHUTTING_DOWN:
                raise ConnectionLost(self._unavailable(exc)) from exc
            raise  # refused, nothing committed: GroupCommit runs each statement alone
        except (TimeoutError, OSError) as exc:
            raise ConnectionLost(self._unavailable(exc)) from exc

    def _count_retry(self, state: RetryCallState) -> None:
        if state.outcome is not None and (exc := state.outcome.exception()) is not None:
            self._count_retry_of(exc)

    def _count_retry_of(self, exc: BaseException) -> None:
        self.retries += 1
        log.info("retrying after MySQL error %s", _error_code(exc))

    # -- schema -----------------------------------------------------------------------

    def _schema_missing(self) -> SchemaMissing:
        return SchemaMissing(
            f"table `{self.table}` in database `{self.config.database}` does not exist. "
            f"Create it with `python -m entrypoints.cli migrate` (the DDL is {ddl_path('mysql')}; "
            "`python -m entrypoints.cli schema` prints it for this table), or set SESSION_AUTO_MIGRATE=1."
        )

    async def _columns(self) -> list[str]:
        """The columns of our table as the server spells them, in table order; empty if there is no such table."""
        outcome = await self._run(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (self.table,),
            idempotent=True,
        )
        return [str(row[0]) for row in outcome.rows]

    async def check_schema(self) -> None:
        """:class:`SchemaMissing` unless the table has our columns (more are allowed).

        With no such table the message names the DDL and ``migrate``; with
        another table under that name it says which columns differ.
        """
        present = await self._columns()
        if not present:
            raise self._schema_missing()
        check_columns(f"table `{self.table}` in database `{self.config.database}`", present, "mysql")

    async def migrate(self) -> None:
        """Apply ``sql/mysql.sql``, unless the table is there already: the explicit opt-in.

        Run again, it does nothing. It does not rely on CREATE TABLE IF NOT
        EXISTS alone, which makes the server send a "table already exists"
        note that the driver turns into a printed Python warning. A table of
        that name that is not ours is left alone; :meth:`check_schema` then says so.
        """
        if await self._columns():
            return
        for statement in statements(ddl("mysql", self.table)):
            try:
                await self._run(statement, (), idempotent=True)
            except StoreUnavailable as exc:
                if _error_code(exc.__cause__) not in _NOT_PERMITTED:
                    raise
                raise StoreUnavailable(
                    f"{exc}. Creating the table needs the CREATE privilege on database `{self.config.database}`: "
                    f"run migrate as a user who has it, or have one apply {ddl_path('mysql')}"
                ) from exc.__cause__

    # -- the port ----------------------------------------------------------------------

    async def insert(self, digest: bytes, session: Session) -> None:
        try:
            await self.group.submit(
                f"INSERT INTO {self.sql_name} (id, {FIELDS}) VALUES (UNHEX(%s), %s, %s, %s, %s, %s, %s, %s)",
                values := (hexkey(digest), *insert_values(session)),
                # A retry after a lost connection can only meet our own row
                # (digests of fresh 256-bit tokens do not collide): see below.
                idempotent=True,
                key=digest,
                payload=NewRow(values),
            )
        except pymysql.err.IntegrityError as exc:
            if _error_code(exc) != ER.DUP_ENTRY:
                raise
            # Our first attempt landed before the connection died.

    async def fetch(self, digest: bytes) -> Session | None:
        return await self.reads.get(digest)

    async def _fetch_many(self, digests: Sequence[bytes]) -> dict[bytes, Session]:
        if len(digests) == 1:
            rows = (await self._run(_SELECT.format(t=self.sql_name), (hexkey(digests[0]),), idempotent=True)).rows
            return {digests[0]: session_from_row(rows[0])} if rows else {}
        placeholders = ", ".join(["UNHEX(%s)"] * len(digests))
        rows = (
            await self._run(
                f"SELECT id, {FIELDS} FROM {self.sql_name} WHERE id IN ({placeholders})",
                [hexkey(d) for d in digests],
                idempotent=True,
            )
        ).rows
        return {bytes(row[0]): session_from_row(row[1:]) for row in rows}

    async def list_user(self, user_id: str, *, now: float) -> list[tuple[bytes, Session]]:
        rows = (
            await self._run(
                f"SELECT id, {FIELDS} FROM {self.sql_name} WHERE user_id = %s AND expires > %s ORDER BY created",
                (user_id, now),
                idempotent=True,
            )
        ).rows
        return [(bytes(row[0]), session_from_row(row[1:])) for row in rows]

    async def remove_many(self, digests: Collection[bytes]) -> int:
        unique = sorted(set(digests))
        if not unique:
            return 0
        placeholders = ", ".join(["UNHEX(%s)"] * len(unique))
        deleted = await self._run(
            f"DELETE FROM {self.sql_name} WHERE id IN ({placeholders})", [hexkey(d) for d in unique], idempotent=True
        )
        return deleted.rowcount

    @staticmethod
    @functools.cache
    def _data_sql(clear: bool, deletes: int, sets: int, compact: bool) -> str:
        """The SQL expression of ``data`` after a change of this shape (a handful of shapes, built once)."""
        expression = "'{}'" if clear else "data"
        if deletes:
            expression = f"JSON_REMOVE({expression}, {', '.join(['%s'] * deletes)})"
        if sets:
            # JSON_EXTRACT(?, '$') turns the bound text into a JSON value on both
            # MariaDB and MySQL 8; MariaDB has no CAST(? AS JSON) (PITFALLS.md).
            pairs = ", ".join(["%s, JSON_EXTRACT(%s, '$')"] * sets)
            expression = f"JSON_SET({expression}, {pairs})"
        # MariaDB re-spaces what its JSON functions return; compacting keeps
        # the stored text, and so the size limit, the same as the other stores'.
        return f"JSON_COMPACT({expression})" if compact else expression

    @staticmethod
    @functools.cache
    def _write_sql(table: str, data: str) -> str:
        # One UPDATE, evaluated left to right: `data` takes its new value, then
        # `version` checks that value's size. A session that would be too big
        # sets version to NULL, which strict mode refuses (error 1048), so the
        # whole statement writes nothing, however many writers race. A key the
        # server cannot address makes the JSON function return NULL: refused
        # the same way, on `data`. LAST_INSERT_ID(expr) hands the new version
        # back in the OK packet: no second round trip.
        return (
            f"UPDATE {table} SET data = {data},"
            " version = IF(LENGTH(data) <= %s, LAST_INSERT_ID(version + 1), NULL),"
            " last_seen = %s, expires = LEAST(GREATEST(expires, %s), absolute_expires)"
            " WHERE id = UNHEX(%s) AND expires > %s"
        )

    async def write(
        self, digest: bytes, change: Change, *, now: float, idle_deadline: float, max_bytes: int
    ) -> int | None:
        expression, params = await self._new_data(change)
        hexid = hexkey(digest)
        with _refusals(max_bytes):
            outcome = await self.group.submit(
                self._write_sql(self.sql_name, expression),
                (*params, max_bytes, now, idle_deadline, hexid, now),
                key=digest,
                payload=RowWrite(hexid, expression, params, now, idle_deadline, max_bytes),
                # Deadlocks are retried; a connection lost mid-UPDATE is not, as the
                # write may have landed: the caller gets StoreUnavailable, not a double write.
                idempotent=False,
            )
        if outcome.rowcount and outcome.last_id is not None:
            return outcome.last_id
        return None  # no live session under this digest

    async def _new_data(self, change: Change) -> tuple[str, list[object]]:
        """The SQL expression of the ``data`` column after ``change``, and its parameters."""
        if self._compact is None:
            self._compact = await self._is_mariadb()
        params: list[object] = [json_path(key) for key in change.deletes]
        for key, text in change.sets.items():
            params += (json_path(key), text)
        return self._data_sql(change.clear, len(change.deletes), len(change.sets), self._compact), params

    async def _is_mariadb(self) -> bool:
        version = await self._run("SELECT VERSION()", (), idempotent=True)
        return "mariadb" in str(version.rows[0][0]).lower()

    async def touch(self, digest: bytes, *, now: float, idle_deadline: float) -> bool:
        matched = await self.group.submit(
            f"UPDATE {self.sql_name} SET last_seen = %s, expires = LEAST(GREATEST(expires, %s), absolute_expires)"
            " WHERE id = UNHEX(%s) AND expires > %s",
            (now, idle_deadline, hexid := hexkey(digest), now),
            idempotent=True,
            key=digest,
            payload=RowWrite.touch(hexid, now, idle_deadline),
        )
        return matched.rowcount > 0

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
        assignments: list[str] = ["id = UNHEX(%s)"]
        params: list[object] = [hexkey(new)]
        change = change or Change()
        changes = bool(change.sets or change.deletes or change.clear)
        if user_id is not None:
            # A new owner starts from empty data. Assignments run left to right, so `data` and
            # `version` still see the old owner; `user_id` is set last.
            other_owner = "user_id IS NOT NULL AND user_id <> %s"
            flushed, flushed_params = await self._new_data(evolve(change, clear=True))
            kept, kept_params = await self._new_data(change) if changes else ("data", [])
            assignments += [
                f"data = IF({other_owner}, {flushed}, {kept})",
                f"version = IF(LENGTH(data) <= %s, version + IF({other_owner}, 1, %s), NULL)",
                "user_id = %s",
            ]
            params += [user_id, *flushed_params, *kept_params, max_bytes, user_id, int(changes), user_id]
        elif changes:
            expression, data_params = await self._new_data(change)
            # Left to right, as in write(): a session grown too big sets version NULL.
            assignments += [f"data = {expression}", "version = IF(LENGTH(data) <= %s, version + 1, NULL)"]
            params += [*data_params, max_bytes]
        assignments += ["last_seen = %s", "expires = LEAST(GREATEST(expires, %s), absolute_expires)"]
        params += [now, idle_deadline, hexkey(old), now]
        with _refusals(max_bytes):
            # One statement: the move, the write and the owner land together or not at all.
            # Repeating it after a lost connection is safe: the old id is gone once it landed.
            await self._run(
                f"UPDATE {self.sql_name} SET {', '.join(assignments)} WHERE id = UNHEX(%s) AND expires > %s",
                params,
                idempotent=True,
            )
        return await self.fetch(new)

    async def set_user(self, digest: bytes, user_id: str | None, *, now: float) -> bool:
        matched = await self._run(
            f"UPDATE {self.sql_name} SET user_id = %s WHERE id = UNHEX(%s) AND expires > %s",
            (user_id, hexkey(digest), now),
            idempotent=True,
        )
        return matched.rowcount > 0

    async def remove(self, digest: bytes) -> bool:
        deleted = await self._run(
            f"DELETE FROM {self.sql_name} WHERE id = UNHEX(%s)", (hexkey(digest),), idempotent=True
        )
        return deleted.rowcount > 0

    async def purge(
        self, *, now: float, batch: int, on_batch: Callable[[int], None] | None = None, pause: float = 0.005
    ) -> int | None:
        """Delete every session expired by ``now`` in batches; None if another process is purging.

        One purger at a time across processes: a named lock (GET_LOCK) held on
        one connection for the whole run. Each batch is its own short
        autocommitted DELETE on the expiry index, with a pause between them,
        so handshakes never wait long behind it.
        """
        lock = f"socketio_session.purge.{self.config.database}.{self.table}"[:64]
        pool = await self._get_pool()
        try:
            async with asyncio.timeout(self.config.operation_timeout):
                conn = await pool.acquire()
        except (pymysql.err.MySQLError, OSError) as exc:
            # Acquiring is connecting (minsize=0): any failure here is the store's, named as such.
            raise (self._store_error(exc) or self._unavailable(exc)) from exc
        try:
            async with conn.cursor() as cursor:
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
            conn.close()
            # Any failure, bugs included, is StoreUnavailable here: the periodic purge
            # (application/purge.py) skips a round on it instead of dying for good.
            raise StoreUnavailable(
                f"purge of table {self.table} failed: {self._store_error(exc) or _said(exc)}"
            ) from exc
        except BaseException:
            conn.close()
            raise
        finally:
            pool.release(conn)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        await self._run("SELECT 1", (), idempotent=True)
