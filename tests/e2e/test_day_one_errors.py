"""Errors met on day one: one clear line on stderr, a non-zero exit, never a traceback.

The CLI runs as a subprocess, as a user would run it, against the shared
MariaDB (a wrong password, a database the test user may not use, a closed
port) and against a private one (tests/support/private_mariadb.py) on which
the test creates accounts of its own: one without CREATE, one that may only
read. No database is mocked.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pymysql
import pytest
from attrs import frozen

from adapters.stores.ddl import drop_tables
from adapters.stores.mysql import MySQLConfig
from tests.support.private_mariadb import DATABASE, PrivateMariaDB
from tests.support.server import REPO, free_port, run_cli, run_until_exit, server_env
from tests.support.stores import mysql_url

pytestmark = pytest.mark.e2e

WRONG_PASSWORD = f"Wr0ng-{secrets.token_hex(6)}"
LIMITED_PASSWORD = f"Lim1ted-{secrets.token_hex(6)}"


def _url(
    base: str, *, user: str | None = None, password: str | None = None, port: int | None = None, db: str = ""
) -> str:
    """``base`` with some of its parts replaced."""
    c = MySQLConfig.from_url(base)
    user = quote(c.user if user is None else user, safe="")
    password = quote(c.password if password is None else password, safe="")
    return f"{urlsplit(base).scheme}://{user}:{password}@{c.host}:{port or c.port}/{db or c.database}"


def _cli(url: str, *args: str, table: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(server_env({"SESSION_STORE_URL": url, "SESSION_TABLE": table or _table()}), *args)


def _table() -> str:
    return f"day1_{secrets.token_hex(5)}"


def _one_line(result: subprocess.CompletedProcess[str], *, status: int = 1, secret: str = "") -> str:
    """The single stderr line of a failed command, after checking how it failed."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == status, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert result.stdout == "", output
    if secret:
        assert secret not in output
    return lines[0]


# -- the shared server: a wrong password, a database we may not use, nothing listening ----------------------

COMMANDS = [("check",), ("purge",), ("migrate",), ("import-seed-table", "--from", "session")]


@pytest.mark.mysql
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_wrong_password_is_one_line_in_the_servers_words_without_the_password(command: tuple[str, ...]) -> None:
    line = _one_line(_cli(_url(mysql_url(), password=WRONG_PASSWORD), *command), secret=WRONG_PASSWORD)
    c = MySQLConfig.from_url(mysql_url())
    assert line.startswith(f"error: MySQL at {c.host}:{c.port} refused: (1045) Access denied for user '{c.user}'@")
    assert "(using password: YES)" in line


@pytest.mark.mysql
@pytest.mark.parametrize("command", COMMANDS[:2], ids=lambda c: c[0])
def test_a_database_the_user_may_not_use_is_one_line(command: tuple[str, ...]) -> None:
    database = f"not_ours_{secrets.token_hex(4)}"
    # (The shared test user's password is its name, so its absence cannot be checked here; it is on the private server.)
    line = _one_line(_cli(_url(mysql_url(), db=database), *command))
    # The shared test user has no global privileges: the server says "access denied" even for a database
    # that does not exist rather than tell it whether it does.
    assert "refused: (1044) Access denied for user" in line
    assert f"to database '{database}'" in line


@pytest.mark.mysql
@pytest.mark.parametrize("command", COMMANDS[:3], ids=lambda c: c[0])
def test_an_unreachable_server_is_one_line_that_says_why(command: tuple[str, ...]) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    line = _one_line(_cli(_url(mysql_url(), port=port), *command))
    assert time.monotonic() - started < 15
    assert line.startswith(f"error: cannot reach MySQL at 127.0.0.1:{port}: (2003) Can't connect to MySQL server")
    assert "Errno 111" in line  # the reason: refused


# -- migrate: quiet, idempotent, and honest about a table that is not ours -----------------------------------


def _drop(table: str) -> None:
    c = MySQLConfig.from_url(mysql_url())
    conn = pymysql.connect(host=c.host, port=c.port, user=c.user, password=c.password, database=c.database)
    try:
        with conn.cursor() as cursor:
            cursor.execute(drop_tables(table))
    finally:
        conn.close()


@pytest.fixture
def table() -> Iterator[str]:
    name = _table()
    try:
        yield name
    finally:
        _drop(name)


@pytest.mark.mysql
def test_migrate_twice_prints_the_same_one_line_and_no_driver_warning(table: str) -> None:
    first = _cli(mysql_url(), "migrate", table=table)
    second = _cli(mysql_url(), "migrate", table=table)
    for result in (first, second):
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # no pymysql "Table ... already exists" Warning
        assert len(result.stdout.splitlines()) == 1
    assert first.stdout == second.stdout
    assert first.stdout.startswith("schema applied: ")
    checked = _cli(mysql_url(), "check", table=table)
    assert checked.returncode == 0, checked.stderr


@pytest.fixture
def foreign_table(table: str) -> str:
    """A table under our name that some other software made."""
    c = MySQLConfig.from_url(mysql_url())
    conn = pymysql.connect(host=c.host, port=c.port, user=c.user, password=c.password, database=c.database)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, Data TEXT, payload TEXT, expires INT)")
    finally:
        conn.close()
    return table


def _says_it_is_not_ours(
    line: str,
    table: str,
    *,
    missing: str = "version, created, last_seen, absolute_expires, user_id",
    extra: str | None = "payload",
) -> None:
    assert f"table `{table}`" in line
    assert "not a session table of ours" in line
    assert f"lacks our columns {missing}" in line
    if extra is None:
        assert "columns we do not use" not in line
    else:
        assert f"columns we do not use: {extra}" in line
    assert "SESSION_TABLE" in line
    assert "entrypoints.cli migrate" not in line  # running it again would change nothing


@pytest.mark.mysql
@pytest.mark.parametrize("command", ["migrate", "check", "purge"])
def test_a_table_that_is_not_ours_says_what_differs_and_how_to_proceed(foreign_table: str, command: str) -> None:
    _says_it_is_not_ours(_one_line(_cli(mysql_url(), command, table=foreign_table)), foreign_table)


@pytest.mark.mysql
@pytest.mark.parametrize("auto_migrate", ["0", "1"])
def test_server_startup_on_a_table_that_is_not_ours_says_what_differs(foreign_table: str, auto_migrate: str) -> None:
    result = run_until_exit(
        server_env(
            {"SESSION_STORE_URL": mysql_url(), "SESSION_TABLE": foreign_table, "SESSION_AUTO_MIGRATE": auto_migrate}
        )
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "cannot start" in line]
    _says_it_is_not_ours(line, foreign_table)


@pytest.mark.mysql
def test_server_startup_with_a_wrong_password_is_one_line_without_the_password() -> None:
    result = run_until_exit(server_env({"SESSION_STORE_URL": _url(mysql_url(), password=WRONG_PASSWORD)}))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    assert WRONG_PASSWORD not in output
    [line] = [line for line in output.splitlines() if "cannot start" in line]
    assert "refused: (1045) Access denied for user" in line


@pytest.mark.parametrize("separator", ["#", "/", "?"])
@pytest.mark.parametrize("head", ["s3cr", "60917"], ids=["letters", "digits"])
def test_a_password_holding_a_url_delimiter_is_never_echoed_and_the_fix_is_named(separator: str, head: str) -> None:
    # urlsplit ends the credentials at the delimiter: the head of the password once came back as
    # "the port in 'u:s3cr'", and a numeric head passed as a port, the tail as part of the database name.
    tail = f"Et{secrets.token_hex(4)}"
    url = f"mysql://someone:{head}{separator}{tail}@127.0.0.1:{free_port()}/db"
    env = server_env({"SESSION_STORE_URL": url})
    line = _one_line(run_cli(env, "check"))
    server = run_until_exit(env)
    started = server.stdout + server.stderr
    assert server.returncode != 0
    assert "Traceback" not in started
    for output in (line, started):
        assert "SESSION_STORE_URL" in output
        assert "must be percent-encoded (# as %23, / as %2F" in output
        for fragment in (head, tail):
            assert fragment not in output


def test_a_table_name_too_long_for_its_index_names_is_refused_in_one_line() -> None:
    # 57 characters would make the DDL's index names (`<table>_user_id`) longer than MySQL's 64: refused
    # by the settings, before any SQL, instead of failing later with error 1059.
    line = _one_line(_cli(mysql_url(), "migrate", table="t" * 57))
    assert line.startswith("error: invalid configuration: SESSION_TABLE: ")


# -- a private server: accounts of our own -------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    db = PrivateMariaDB(tmp_path_factory.mktemp("mariadb-day-one")).install()
    try:
        with db.admin(database=None) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE other")
            for host in ("127.0.0.1", "localhost"):
                # Everything a server needs, but not CREATE: an application account, as it should be.
                cursor.execute(f"CREATE USER 'limited'@'{host}' IDENTIFIED BY %s", (LIMITED_PASSWORD,))
                cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {DATABASE}.* TO 'limited'@'{host}'")
        yield db
    finally:
        db.stop()


def _limited(db: PrivateMariaDB, *, password: str = LIMITED_PASSWORD, database: str = DATABASE) -> str:
    return _url(db.url, user="limited", password=password, db=database)


@pytest.mark.mysql
def test_migrate_by_a_user_without_create_is_one_line_naming_the_privilege(private_db: PrivateMariaDB) -> None:
    table = _table()
    line = _one_line(_cli(_limited(private_db), "migrate", table=table), secret=LIMITED_PASSWORD)
    assert line.startswith(f"error: MySQL at 127.0.0.1:{private_db.port} refused: (1142) CREATE command denied")
    assert "needs the CREATE, ALTER and REFERENCES privileges" in line
    # The same account serves once someone allowed to has created the table.
    assert _cli(private_db.url, "migrate", table=table).returncode == 0
    for command in ("check", "purge"):
        result = _cli(_limited(private_db), command, table=table)
        assert result.returncode == 0, result.stderr


@pytest.mark.mysql
def test_a_percent_encoded_password_holding_url_delimiters_serves(private_db: PrivateMariaDB) -> None:
    password = f"s3cr#t/{secrets.token_hex(4)}?@:"
    with private_db.admin(database=None) as conn, conn.cursor() as cursor:
        for host in ("127.0.0.1", "localhost"):
            cursor.execute(f"CREATE USER 'punctuated'@'{host}' IDENTIFIED BY %s", (password,))
            cursor.execute(f"GRANT ALL ON {DATABASE}.* TO 'punctuated'@'{host}'")
    url = _url(private_db.url, user="punctuated", password=password)
    assert "%23" in url
    assert "%2F" in url
    table = _table()
    for command in ("migrate", "check"):
        result = _cli(url, command, table=table)
        assert result.returncode == 0, result.stderr


@pytest.mark.mysql
@pytest.mark.parametrize("command", ["check", "purge", "migrate"])
def test_private_server_access_errors_are_one_line(private_db: PrivateMariaDB, command: str) -> None:
    wrong = _one_line(_cli(_limited(private_db, password=WRONG_PASSWORD), command), secret=WRONG_PASSWORD)
    assert "refused: (1045) Access denied for user 'limited'@" in wrong
    other = _one_line(_cli(_limited(private_db, database="other"), command), secret=LIMITED_PASSWORD)
    assert "refused: (1044) Access denied for user 'limited'@" in other
    assert "to database 'other'" in other
    missing = _one_line(_cli(_url(private_db.url, db="no_such_database"), command))
    assert "refused: (1049) Unknown database 'no_such_database'" in missing


# -- arguments argparse refuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("purge", "--batch", "0"), "--batch"),
        (("purge", "--batch", "-5"), "--batch"),
        (("purge", "--batch", "many"), "--batch"),
        (("import-seed-table", "--from", "session", "--batch", "0"), "--batch"),
        (("import-seed-table", "--from", "session; DROP TABLE x"), "--from"),
        (("import-seed-table", "--from", "db.session"), "--from"),
        (("import-seed-table",), "--from"),
        (("no-such-command",), "command"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_with_status_2(args: tuple[str, ...], named: str) -> None:
    # Refused before any store is touched: the URL points at nothing.
    result = run_cli(server_env({"SESSION_STORE_URL": f"mysql://u:p@127.0.0.1:{free_port()}/db"}), *args)
    line = _one_line(result, status=2)
    assert line.startswith("error: ")
    assert named in line


# -- SQLite: a failed open lets the process exit ---------------------------------------------------------------

_OPEN_AND_RETURN = textwrap.dedent(
    """
    import asyncio, sys
    from adapters.stores.sqlite import SQLiteStore
    from application.errors import StoreUnavailable

    async def main() -> None:
        try:
            await SQLiteStore(sys.argv[1]).open()
        except StoreUnavailable as exc:
            print(exc)
        else:
            print("opened")

    asyncio.run(main())
    """
)


def _bad_sqlite_paths(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a_directory").mkdir()
    (tmp_path / "not_a_database").write_bytes(b"this is not SQLite " * 512)
    (tmp_path / "a_file").write_text("")
    return {
        "directory": tmp_path / "a_directory",
        "not a database": tmp_path / "not_a_database",
        "parent is a file": tmp_path / "a_file" / "sessions.sqlite3",
    }


@pytest.mark.parametrize("case", ["directory", "not a database", "parent is a file"])
def test_a_process_whose_sqlite_open_failed_exits_promptly(tmp_path: Path, case: str) -> None:
    path = _bad_sqlite_paths(tmp_path)[case]
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-c", _OPEN_AND_RETURN, str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung after a failed open: its aiosqlite thread was left running")
    assert time.monotonic() - started < 10
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"cannot open SQLite file {path}: ")


@pytest.mark.parametrize("command", ["check", "purge", "migrate"])
def test_the_cli_on_a_bad_sqlite_path_is_one_line(tmp_path: Path, command: str) -> None:
    path = _bad_sqlite_paths(tmp_path)["not a database"]
    line = _one_line(run_cli(server_env({"SESSION_STORE_URL": f"sqlite:///{path}"}), command))
    assert line == f"error: cannot open SQLite file {path}: file is not a database"


# -- SQLite: a table under our name that is not ours -------------------------------------------------------------

# Tables some other software made. Without `expires`, the DDL's CREATE INDEX failed first with a bare
# "no such column"; with id, data, expires and user_id, check said "ok", the server started and every
# handshake answered "Session Store Unavailable".
SQLITE_FOREIGN_TABLES = {
    "without expires": (
        "CREATE TABLE socketio_session (id BLOB PRIMARY KEY, Data TEXT, payload TEXT)",
        "version, created, last_seen, expires, absolute_expires, user_id",
        "payload",
    ),
    "without version": (
        "CREATE TABLE socketio_session (id BLOB PRIMARY KEY, data TEXT, expires REAL, user_id TEXT)",
        "version, created, last_seen, absolute_expires",
        None,
    ),
}


@frozen
class ForeignSQLite:
    url: str
    missing: str
    extra: str | None

    def check(self, line: str) -> None:
        _says_it_is_not_ours(line, "socketio_session", missing=self.missing, extra=self.extra)
        assert "sql/sqlite.sql" in line


@pytest.fixture(params=sorted(SQLITE_FOREIGN_TABLES))
def foreign_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> ForeignSQLite:
    create, missing, extra = SQLITE_FOREIGN_TABLES[request.param]
    path = tmp_path / "sessions.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(create)
        conn.commit()
    return ForeignSQLite(url=f"sqlite:///{path}", missing=missing, extra=extra)


@pytest.mark.parametrize("command", ["check", "migrate", "purge"])
def test_a_sqlite_table_that_is_not_ours_says_what_differs(foreign_sqlite: ForeignSQLite, command: str) -> None:
    line = _one_line(run_cli(server_env({"SESSION_STORE_URL": foreign_sqlite.url}), command))
    assert line.startswith("error: table `socketio_session` in SQLite file ")
    foreign_sqlite.check(line)


def test_server_startup_on_a_sqlite_table_that_is_not_ours_says_what_differs(foreign_sqlite: ForeignSQLite) -> None:
    result = run_until_exit(server_env({"SESSION_STORE_URL": foreign_sqlite.url}))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "cannot start:" in line]
    foreign_sqlite.check(line)
