"""Copy the old npm package's ``session`` table into ours, keeping its users signed in.

The old package (socket.io-mysql-session) kept one row per session::

    CREATE TABLE `session` (
      `sessionId` varchar(32) COLLATE utf8_bin NOT NULL,   -- the token, in clear
      `expires` int(11) unsigned NOT NULL,                 -- Unix seconds
      `data` text COLLATE utf8_bin,                        -- JSON.stringify of an object
      PRIMARY KEY (`sessionId`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8 COLLATE=utf8_bin;

Each live row becomes one of ours, keyed by the SHA-256 of its token, so the
client's stored token resumes it unchanged. The old table is read in
keyset-paginated pages and written in multi-row INSERTs, so a large table is
streamed rather than loaded whole. Running the import again adds nothing and
never overwrites a session already in our table (it may have been used since).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from enum import Enum

import pymysql
from attrs import define, frozen

from adapters.stores.ddl import check_table_name
from adapters.stores.mysql.statements import hexkey, select_existing
from adapters.stores.mysql.store import MySQLStore
from adapters.stores.rows import COLUMNS
from application.errors import SchemaMissing
from domain.errors import InvalidValue, MalformedToken
from domain.token import Token
from domain.values import check_user_id, encode

OLD_COLUMNS = ("sessionId", "expires", "data")

# Raw session bytes per INSERT statement. MariaDB's default max_allowed_packet
# is 16 MiB, and 500 old rows of up to 64 KiB each (TEXT), escaped, would
# exceed it; a statement is sent once it holds this much (a single larger
# session is sent alone).
STATEMENT_BYTES = 1 << 20

# Charset and collation names are spliced into SQL: plain identifiers only.
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,64}")


class SeedImportError(Exception):
    """The import cannot run (no such old table, wrong columns, a bad name); the message says why."""


class Skip(Enum):
    """Why an old row was not imported."""

    EXPIRED = "expired"
    MALFORMED = "malformed token"
    BAD_DATA = "bad data"
    TOO_LARGE = "too large"


@frozen
class Converted:
    """One old row, ready for our table."""

    hex_id: str
    data: str
    expires: float
    user_id: str | None = None

    @property
    def size(self) -> int:
        """Bytes of ``data`` as stored (UTF-8)."""
        return len(self.data.encode("utf-8"))


@define
class ImportReport:
    """Counts, updated as the import goes."""

    read: int = 0
    imported: int = 0
    expired: int = 0
    malformed_token: int = 0
    bad_data: int = 0
    too_large: int = 0
    already_present: int = 0

    def skipped(self, reason: Skip) -> None:
        if reason is Skip.EXPIRED:
            self.expired += 1
        elif reason is Skip.MALFORMED:
            self.malformed_token += 1
        elif reason is Skip.BAD_DATA:
            self.bad_data += 1
        else:
            self.too_large += 1

    def progress(self) -> str:
        return f"imported {self.imported} of {self.read} rows so far"

    def summary(self, source: str, target: str) -> str:
        return (
            f"imported {self.imported} sessions from {source} into {target} (skipped: {self.expired} expired, "
            f"{self.malformed_token} malformed token, {self.bad_data} bad data, {self.too_large} too large, "
            f"{self.already_present} already present)"
        )


def _text(value: object) -> str | None:
    """A column value as text (binary columns come back as bytes), or None if it is not UTF-8."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def convert(
    session_id: object, expires: object, data: object, *, now: float, absolute_ttl: float, max_bytes: int
) -> Converted | Skip:
    """One old row as one of ours, or why it is skipped.

    The idle deadline is the old expiry, capped by the absolute one, which
    starts now: the old table never recorded when a session began.
    """
    try:
        token = Token.parse(_text(session_id))
    except MalformedToken:
        return Skip.MALFORMED
    if isinstance(expires, bool) or not isinstance(expires, int | float | Decimal) or expires <= now:
        # NOT NULL INT in the old DDL; anything else cannot say the session is live.
        return Skip.EXPIRED
    if data is None:
        parsed: object = {}
    else:
        text = _text(data)
        if text is None:
            return Skip.BAD_DATA
        if text.strip() == "":
            parsed = {}
        else:
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                return Skip.BAD_DATA
    if not isinstance(parsed, dict):
        return Skip.BAD_DATA
    try:
        # The compact form every store writes; NaN, Infinity (which Python's
        # parser accepts) and lone surrogates are refused as they are on writes.
        stored = encode(parsed)
    except InvalidValue:
        return Skip.BAD_DATA
    converted = Converted(
        hex_id=hexkey(token.digest),
        data=stored,
        expires=min(float(expires), now + absolute_ttl),
        user_id=_owner(parsed.get("userId")),
    )
    if converted.size > max_bytes:
        return Skip.TOO_LARGE
    return converted


def _owner(user_id: object) -> str | None:
    """The owner of an old session: its ``userId`` key (the old README's login pattern), if usable.

    Migrated users stay signed in: guards that need a login-recorded owner accept them.
    """
    if isinstance(user_id, bool) or not isinstance(user_id, str | int):
        return None
    try:
        return check_user_id(str(user_id))
    except InvalidValue:
        return None


class SeedImporter:
    """Imports the old table ``source`` into ``store``'s table, in the same database.

    ``now``, ``absolute_ttl`` and ``max_bytes`` are the settings' values
    (SESSION_ABSOLUTE_TTL, SESSION_MAX_BYTES). Our table must exist.
    """

    def __init__(
        self,
        store: MySQLStore,
        source: str,
        *,
        now: float,
        absolute_ttl: float,
        max_bytes: int,
        batch: int = 500,
        progress: Callable[[ImportReport], None] | None = None,
    ) -> None:
        try:
            self.source = check_table_name(source)
        except ValueError as exc:
            raise SeedImportError(f"--from: {exc}") from None
        if self.source == store.table:
            raise SeedImportError(f"--from names our own table `{store.table}`; name the old package's table")
        self.store = store
        self.now = now
        self.absolute_ttl = absolute_ttl
        self.max_bytes = max_bytes
        self.batch = max(1, batch)
        self.progress = progress
        self.report = ImportReport()

    async def run(self) -> ImportReport:
        await self.store.schema.check()  # SchemaMissing, with the usual message, if ours is not there
        after = await self._key_comparison()
        last: object = None
        try:
            while True:
                rows = await self._page(after, last)
                if not rows:
                    break
                last = rows[-1][0]
                self.report.read += len(rows)
                await self._import(rows)
                if self.progress is not None:
                    self.progress(self.report)
                if len(rows) < self.batch:
                    break
        except pymysql.err.MySQLError as exc:
            # Not a connection problem (the store maps those to StoreUnavailable): say what the server said.
            raise SeedImportError(f"MySQL refused a statement of the import: {exc}") from exc
        return self.report

    # -- reading the old table -------------------------------------------------------

    async def _key_comparison(self) -> str:
        """The old table's shape, checked, and the SQL that compares ``sessionId`` with a bound key.

        Keyset pagination is only correct if ``sessionId > key`` compares in the
        very order of ``ORDER BY sessionId``, i.e. in the column's own collation.
        The connection speaks utf8mb4 while the old column is utf8 (utf8mb3), so
        the bound key is converted to the column's charset and collation (which
        also keeps the primary key usable for the range).
        """
        outcome = await self.store.connection.run(
            "SELECT COLUMN_NAME, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (self.source,),
            idempotent=True,
        )
        columns = {str(name).lower(): (charset, collation) for name, charset, collation in outcome.rows}
        database = self.store.config.database
        if not columns:
            raise SeedImportError(
                f"the old session table `{self.source}` does not exist in database `{database}` "
                "(name it with --from; it must be in the same database as ours)"
            )
        missing = [name for name in OLD_COLUMNS if name.lower() not in columns]
        if missing:
            raise SeedImportError(
                f"table `{self.source}` in database `{database}` lacks the old package's columns {', '.join(missing)}"
            )
        charset, collation = columns["sessionid"]
        if charset is None:  # a binary column: bytes compare as bytes
            return "UNHEX(%s)"
        if not (_IDENTIFIER.fullmatch(str(charset)) and _IDENTIFIER.fullmatch(str(collation))):
            raise SeedImportError(
                f"unexpected charset {charset!r} / collation {collation!r} of {self.source}.sessionId"
            )
        return f"CONVERT(%s USING {charset}) COLLATE {collation}"

    async def _page(self, after: str, last: object) -> list[tuple[object, ...]]:
        where = ""
        params: list[object] = []
        if last is not None:
            where = f" WHERE `sessionId` > {after}"
            # Bytes cannot be bound through aiomysql 0.3.2 (see hexkey): a binary key goes as hex.
            params.append(bytes(last).hex() if isinstance(last, bytes | bytearray) else last)
        try:
            outcome = await self.store.connection.run(
                f"SELECT `sessionId`, `expires`, `data` FROM `{self.source}`{where} ORDER BY `sessionId` LIMIT %s",
                (*params, self.batch),
                idempotent=True,
            )
        except SchemaMissing as exc:  # the store reads "no such table" as ours missing; here it is the old one
            raise SeedImportError(f"the old session table `{self.source}` disappeared during the import") from exc
        return outcome.rows

    # -- writing ours -------------------------------------------------------------------

    async def _import(self, rows: Sequence[tuple[object, ...]]) -> None:
        converted: dict[str, Converted] = {}
        for session_id, expires, data in rows:
            result = convert(
                session_id, expires, data, now=self.now, absolute_ttl=self.absolute_ttl, max_bytes=self.max_bytes
            )
            if isinstance(result, Skip):
                self.report.skipped(result)
            else:
                converted[result.hex_id] = result
        if not converted:
            return
        present = await self._present(list(converted))
        self.report.already_present += len(present)
        fresh = [row for key, row in converted.items() if key not in present]
        statement: list[Converted] = []
        size = 0
        for row in fresh:
            if statement and size + row.size > STATEMENT_BYTES:
                await self._insert(statement)
                statement, size = [], 0
            statement.append(row)
            size += row.size
        if statement:
            await self._insert(statement)

    async def _present(self, keys: list[str]) -> set[str]:
        """Which of these keys our table already holds.

        Asked before inserting because the affected-rows count cannot tell: the
        pool's connections set CLIENT.FOUND_ROWS, with which a row skipped by
        ``ON DUPLICATE KEY UPDATE id = id`` counts 1, exactly like a row inserted.
        """
        outcome = await self.store.connection.run(
            select_existing(self.store.sql_name, len(keys)), keys, idempotent=True
        )
        return {str(row[0]) for row in outcome.rows}

    async def _insert(self, rows: Sequence[Converted]) -> None:
        # One multi-row statement, built here: aiomysql's executemany breaks on
        # INSERT ... ON DUPLICATE KEY UPDATE (docs/decisions.md, executemany). The no-op update
        # leaves a row that appeared since _present (another import running at
        # the same time) exactly as it is; unlike INSERT IGNORE it turns no
        # other error into a warning. Repeating it is harmless, so a lost
        # connection may retry it.
        absolute = self.now + self.absolute_ttl
        values: list[object] = []
        for row in rows:
            values += [row.hex_id, row.data, self.now, self.now, row.expires, absolute, row.user_id]
        # Version 1: an imported session was written (by the old package), so it is not anonymous
        # (ExpiryPolicy.anon_ttl) and keeps the normal idle timeout.
        # An empty mailbox: mail_last_id and mail_waiting are 0.
        placeholders = ", ".join(["(UNHEX(%s), %s, 1, %s, %s, %s, %s, %s, 0, 0)"] * len(rows))
        await self.store.connection.run(
            f"INSERT INTO {self.store.sql_name} ({', '.join(COLUMNS)}) VALUES {placeholders}"
            " ON DUPLICATE KEY UPDATE id = id",
            values,
            idempotent=True,
        )
        self.report.imported += len(rows)
