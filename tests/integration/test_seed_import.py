"""Importing the old npm package's ``session`` table into ours, against the real MariaDB."""

from __future__ import annotations

import json
import secrets
import string
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal

import pymysql
import pytest
from attrs import frozen

from adapters.stores.ddl import drop_tables
from adapters.stores.mysql import MySQLConfig, MySQLStore, hexkey, seed_import
from adapters.stores.mysql.seed_import import ImportReport, SeedImporter, SeedImportError, Skip, convert
from application.errors import SchemaMissing
from domain.expiry import Deadlines
from domain.session import Change, Session
from domain.token import Token
from entrypoints import cli
from tests.support.seed_table import OLD_DDL
from tests.support.stores import mysql_url

pytestmark = pytest.mark.mysql

ABSOLUTE_TTL = 1000.0
MAX_BYTES = 200


def old_token() -> str:
    """A token as the old package issued them: 32 URL-safe characters."""
    return secrets.token_urlsafe(24)


@frozen
class Tables:
    store: MySQLStore
    old: str

    async def add_old(self, rows: list[tuple[str, int, str | None]]) -> None:
        placeholders = ", ".join(["(%s, %s, %s)"] * len(rows))
        await self.store.connection.run(
            f"INSERT INTO `{self.old}` (sessionId, expires, data) VALUES {placeholders}",
            [value for row in rows for value in row],
            idempotent=False,
        )

    async def stored_text(self, token: str) -> str:
        outcome = await self.store.connection.run(
            f"SELECT data FROM {self.store.table} WHERE id = UNHEX(%s)", (hexkey(Token(token).digest),), idempotent=True
        )
        return str(outcome.rows[0][0])

    async def count(self) -> int:
        outcome = await self.store.connection.run(f"SELECT COUNT(*) FROM {self.store.table}", (), idempotent=True)
        return int(outcome.rows[0][0])

    async def run(
        self, now: float, *, batch: int = 500, progress: Callable[[ImportReport], None] | None = None
    ) -> ImportReport:
        return await SeedImporter(
            self.store,
            self.old,
            now=now,
            absolute_ttl=ABSOLUTE_TTL,
            max_bytes=MAX_BYTES,
            batch=batch,
            progress=progress,
        ).run()


@pytest.fixture
async def tables() -> AsyncIterator[Tables]:
    suffix = secrets.token_hex(5)
    store = MySQLStore(MySQLConfig.from_url(mysql_url(), table=f"seed_new_{suffix}"))
    old = f"seed_old_{suffix}"
    await store.migrate()
    await store.connection.run(OLD_DDL.format(table=old), (), idempotent=True)
    try:
        yield Tables(store, old)
    finally:
        await store.connection.run(f"DROP TABLE IF EXISTS `{old}`", (), idempotent=True)
        await store.connection.run(drop_tables(store.table), (), idempotent=True)
        await store.close()


async def test_an_import_copies_live_sessions_skips_the_rest_and_can_be_repeated(tables: Tables) -> None:
    now = time.time()
    live, far, spaced, null, empty = (old_token() for _ in range(5))
    present = old_token()
    rows: list[tuple[str, int, str | None]] = [
        (live, int(now) + 500, '{"userId":"u1","visits":4,"name":"Zo\\u00eb","city":"Zürich"}'),
        (far, int(now) + 10 * int(ABSOLUTE_TTL), '{"a":[1,2,{"b":null}]}'),
        (spaced, int(now) + 60, '  { "spaced" : true ,\n "n" : 1.5 }  '),
        (null, int(now) + 60, None),
        (empty, int(now) + 60, ""),
        (present, int(now) + 60, '{"old":true}'),
        (old_token(), int(now) - 10, '{"gone":1}'),  # expired
        (old_token(), int(now), "{}"),  # expires at "now" (rounded down): expired
        ("+" + old_token()[1:], int(now) + 60, "{}"),  # not URL-safe
        (old_token()[:31], int(now) + 60, "{}"),  # 31 characters
        (old_token(), int(now) + 60, '{"a":'),  # invalid JSON
        (old_token(), int(now) + 60, "[1,2]"),  # JSON, but not an object
        (old_token(), int(now) + 60, '{"a":NaN}'),  # Python's parser takes it; JSON does not
        (old_token(), int(now) + 60, json.dumps({"k": "x" * MAX_BYTES})),  # too large
    ]
    await tables.add_old(rows)
    # A session already in our table (imported before, used since): never overwritten.
    mine = Session(data={"mine": True}, created=now - 5, deadlines=Deadlines(now + 50, now + 500), last_seen=now - 1)
    await tables.store.insert(Token(present).digest, mine)

    pages: list[str] = []
    report = await tables.run(now, batch=4, progress=lambda r: pages.append(r.progress()))

    assert report == ImportReport(
        read=14, imported=5, expired=2, malformed_token=2, bad_data=3, too_large=1, already_present=1
    )
    assert report.summary(tables.old, tables.store.table) == (
        f"imported 5 sessions from {tables.old} into {tables.store.table} (skipped: 2 expired, "
        "2 malformed token, 3 bad data, 1 too large, 1 already present)"
    )
    assert len(pages) == 4  # 14 rows in pages of 4
    assert pages[-1] == "imported 5 of 14 rows so far"
    assert await tables.count() == 6

    absolute = now + ABSOLUTE_TTL
    assert await tables.store.fetch(Token(live).digest) == Session(
        data={"userId": "u1", "visits": 4, "name": "Zoë", "city": "Zürich"},
        created=now,
        deadlines=Deadlines(idle=int(now) + 500, absolute=absolute),
        last_seen=now,
        version=1,  # written (by the old package): not an anonymous session, so the normal idle timeout
        user_id="u1",  # the old README's login key becomes the owner: the user stays signed in
    )
    far_session = await tables.store.fetch(Token(far).digest)
    assert far_session is not None
    assert far_session.data == {"a": [1, 2, {"b": None}]}
    assert far_session.deadlines == Deadlines(idle=absolute, absolute=absolute)  # capped by the absolute deadline
    for token in (null, empty):
        imported = await tables.store.fetch(Token(token).digest)
        assert imported is not None
        assert imported.data == {}
    # Stored compactly, without ASCII escapes, as every write stores it.
    assert await tables.stored_text(spaced) == '{"spaced":true,"n":1.5}'
    assert await tables.stored_text(live) == '{"userId":"u1","visits":4,"name":"Zoë","city":"Zürich"}'
    assert await tables.store.fetch(Token(present).digest) == mine

    # Used in between, then imported again: nothing new, nothing overwritten.
    later = now + 1
    version = await tables.store.write(
        Token(live).digest,
        Change(sets={"visits": "5"}),
        now=later,
        idle_deadline=later + 100,
        max_bytes=MAX_BYTES,
    )
    assert version == 2
    before = await tables.store.fetch(Token(live).digest)
    again = await tables.run(later)
    assert again == ImportReport(
        read=14, imported=0, expired=2, malformed_token=2, bad_data=3, too_large=1, already_present=6
    )
    assert await tables.count() == 6
    assert await tables.store.fetch(Token(live).digest) == before
    assert before is not None
    assert before.data["visits"] == 5
    assert await tables.store.fetch(Token(present).digest) == mine


async def test_a_session_that_appears_after_the_check_is_left_alone(
    tables: Tables, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another import running at the same time may insert a row between our
    # "already present?" check and our INSERT: the INSERT must neither fail nor
    # overwrite it.
    now = time.time()
    token, other = old_token(), old_token()
    await tables.add_old([(token, int(now) + 60, '{"old":1}'), (other, int(now) + 60, '{"other":1}')])
    mine = Session(data={"mine": 1}, created=now, deadlines=Deadlines(now + 50, now + 500), last_seen=now, version=3)
    await tables.store.insert(Token(token).digest, mine)

    async def nothing_present(self: seed_import.SeedImporter, keys: list[str]) -> set[str]:
        return set()

    monkeypatch.setattr(seed_import.SeedImporter, "_present", nothing_present)
    await tables.run(now)
    assert await tables.store.fetch(Token(token).digest) == mine
    imported = await tables.store.fetch(Token(other).digest)
    assert imported is not None
    assert imported.data == {"other": 1}


async def test_a_large_table_is_paged_in_key_order_and_split_into_bounded_statements(
    tables: Tables, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    # Tokens differing only in case or in '-' / '_' must all be seen: the pages
    # compare keys in the column's own (binary) collation.
    base = "A" * 31
    tokens = [base + c for c in string.ascii_letters + string.digits + "-_"]
    tokens += [old_token() for _ in range(1000)]
    await tables.add_old([(t, int(now) + 600, json.dumps({"i": i})) for i, t in enumerate(tokens)])
    # Small statements: a page of rows becomes several INSERTs.
    monkeypatch.setattr(seed_import, "STATEMENT_BYTES", 64)
    statements: list[list[int]] = []
    insert = seed_import.SeedImporter._insert

    async def counting(self: seed_import.SeedImporter, rows: list[seed_import.Converted]) -> None:
        statements.append([row.size for row in rows])
        await insert(self, rows)

    monkeypatch.setattr(seed_import.SeedImporter, "_insert", counting)

    report = await tables.run(now, batch=97)

    assert report.read == report.imported == len(tokens)
    assert await tables.count() == len(tokens)
    assert all(sum(sizes) <= 64 for sizes in statements)
    assert max(len(sizes) for sizes in statements) > 1  # still several rows per statement
    assert sum(len(sizes) for sizes in statements) == len(tokens)
    for i, token in enumerate(tokens[:70]):
        session = await tables.store.fetch(Token(token).digest)
        assert session is not None
        assert session.data == {"i": i}


async def test_a_missing_old_table_is_named(tables: Tables) -> None:
    with pytest.raises(SeedImportError, match=r"old session table `no_such_old_table` does not exist"):
        await SeedImporter(
            tables.store, "no_such_old_table", now=time.time(), absolute_ttl=ABSOLUTE_TTL, max_bytes=MAX_BYTES
        ).run()


async def test_an_old_table_without_the_old_columns_is_refused(tables: Tables) -> None:
    other = f"seed_other_{secrets.token_hex(4)}"
    await tables.store.connection.run(
        f"CREATE TABLE {other} (sessionId VARCHAR(32) PRIMARY KEY, stuff TEXT)", (), idempotent=True
    )
    try:
        with pytest.raises(SeedImportError, match="lacks the old package's columns expires, data"):
            await SeedImporter(
                tables.store, other, now=time.time(), absolute_ttl=ABSOLUTE_TTL, max_bytes=MAX_BYTES
            ).run()
    finally:
        await tables.store.connection.run(drop_tables(other), (), idempotent=True)


@pytest.mark.parametrize("name", ["session; DROP TABLE x", "`session`", "", "a.b"])
async def test_the_old_table_name_must_be_a_plain_identifier(tables: Tables, name: str) -> None:
    with pytest.raises(SeedImportError, match="--from"):
        await SeedImporter(tables.store, name, now=time.time(), absolute_ttl=ABSOLUTE_TTL, max_bytes=MAX_BYTES).run()


async def test_our_table_must_exist(tables: Tables) -> None:
    missing = MySQLStore(MySQLConfig.from_url(mysql_url(), table=f"seed_absent_{secrets.token_hex(4)}"))
    try:
        with pytest.raises(SchemaMissing, match="migrate"):
            await SeedImporter(
                missing, tables.old, now=time.time(), absolute_ttl=ABSOLUTE_TTL, max_bytes=MAX_BYTES
            ).run()
    finally:
        await missing.close()


def test_conversion_of_one_row() -> None:
    now = 1_700_000_000.0
    token = old_token()

    def one(session_id: object, expires: object, data: object) -> seed_import.Converted | Skip:
        return convert(session_id, expires, data, now=now, absolute_ttl=ABSOLUTE_TTL, max_bytes=MAX_BYTES)

    assert one(token, now + 5, '{"a":1}') == seed_import.Converted(hexkey(Token(token).digest), '{"a":1}', now + 5)
    assert one(token.encode(), Decimal(int(now) + 5), b"  ") == seed_import.Converted(
        hexkey(Token(token).digest), "{}", now + 5
    )
    assert one(token, now, "{}") is Skip.EXPIRED
    assert one(token, None, "{}") is Skip.EXPIRED
    assert one(None, now + 5, "{}") is Skip.MALFORMED
    assert one("x" * 65, now + 5, "{}") is Skip.MALFORMED
    assert one(token, now + 5, b"\xff{}") is Skip.BAD_DATA
    assert one(token, now + 5, '"text"') is Skip.BAD_DATA
    assert one(token, now + 5, '{"s":"\\ud800"}') is Skip.BAD_DATA  # a lone surrogate is not UTF-8
    assert one(token, now + 5, "[" * 100_000) is Skip.BAD_DATA
    # The limit is in UTF-8 bytes of the compact text: 2 bytes per "é".
    assert one(token, now + 5, json.dumps({"k": "é" * 97})) is Skip.TOO_LARGE
    assert isinstance(one(token, now + 5, json.dumps({"k": "é" * 96})), seed_import.Converted)


# -- the command line, in process -------------------------------------------------------


@pytest.fixture
def mysql_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    table = f"seed_cli_{secrets.token_hex(5)}"
    monkeypatch.setenv("SESSION_STORE_URL", mysql_url())
    monkeypatch.setenv("SESSION_TABLE", table)
    yield table
    config = MySQLConfig.from_url(mysql_url())
    conn = pymysql.connect(
        host=config.host, port=config.port, user=config.user, password=config.password, database=config.database
    )
    with conn.cursor() as cursor:
        cursor.execute(drop_tables(table))
    conn.close()


def test_the_cli_needs_a_mysql_store(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SESSION_STORE_URL", "sqlite:///./never-created.sqlite3")
    assert cli.main(["import-seed-table", "--from", "session"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: import-seed-table needs a MySQL store (SESSION_STORE_URL=mysql://...)")
    assert err.count("\n") == 1


def test_the_cli_names_a_missing_table(mysql_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import-seed-table", "--from", "session"]) == 1
    assert f"error: table `{mysql_env}` in database" in capsys.readouterr().err  # ours, before migrate
    assert cli.main(["migrate"]) == 0
    capsys.readouterr()
    assert cli.main(["import-seed-table", "--from", "no_such_old_table"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: the old session table `no_such_old_table` does not exist in database")
    assert err.count("\n") == 1
    assert cli.main(["import-seed-table", "--from", "bad-name"]) == 2  # refused by argparse, as any bad argument
    assert "argument --from: table name 'bad-name' must match" in capsys.readouterr().err
