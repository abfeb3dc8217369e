"""Command line: ``python -m entrypoints.cli {schema,migrate,check,purge,import-seed-table}``.

``import-seed-table --from session`` copies the old npm package's table (token
in clear, ``expires`` in Unix seconds, ``data`` JSON text) into ours, in the
same MySQL database, so its users stay signed in; running it again adds nothing.

Each command prints one clear line (or the DDL) and exits non-zero on failure:
``error: <what went wrong>`` on stderr, never a traceback; 2 for arguments it refuses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from pymysql.err import MySQLError

from adapters.stores.ddl import check_table_name, ddl
from adapters.stores.mysql import describe_mysql_error
from adapters.stores.mysql.seed_import import ImportReport, SeedImporter, SeedImportError
from application.errors import SchemaMissing, StoreUnavailable
from application.purge import purge_expired
from entrypoints.bootstrap import build_mysql_store, build_sessions, build_store
from entrypoints.settings import ConfigError, Settings, load_settings


async def _schema(settings: Settings) -> int:
    print(ddl("mysql" if settings.uses_mysql else "sqlite", settings.session_table))
    return 0


async def _migrate(settings: Settings) -> int:
    store = build_store(settings)
    try:
        await store.migrate()
        await store.check()
        print(f"schema applied: {store.describe()}")
        return 0
    finally:
        await store.close()


async def _check(settings: Settings) -> int:
    store = build_store(settings)
    try:
        await store.check()
        await store.ping()
        print(f"ok: {store.describe()} answers and has the schema")
        return 0
    finally:
        await store.close()


async def _purge(settings: Settings, batch: int) -> int:
    store = build_store(settings)
    try:
        await store.open()
        purged = await purge_expired(
            build_sessions(settings, store),
            batch=batch,
            on_batch=lambda total: print(f"purged {total} expired sessions so far", file=sys.stderr),
        )
        if purged is None:
            print(f"another process is purging {store.describe()} right now; nothing done")
        else:
            print(f"purged {purged} expired sessions from {store.describe()}")
        return 0
    finally:
        await store.close()


async def _import_seed_table(settings: Settings, source: str, batch: int) -> int:
    if not settings.uses_mysql:  # nothing opened: the SQLite file is left alone
        print(
            "error: import-seed-table needs a MySQL store (SESSION_STORE_URL=mysql://...): "
            "the old package's table is read from the same MySQL database as ours",
            file=sys.stderr,
        )
        return 1
    store = build_mysql_store(settings)

    def progress(report: ImportReport) -> None:
        print(report.progress(), file=sys.stderr)

    try:
        report = await SeedImporter(
            store,
            source,
            now=time.time(),
            absolute_ttl=settings.session_absolute_ttl,
            max_bytes=settings.session_max_bytes,
            batch=batch,
            progress=progress,
        ).run()
        print(report.summary(source, store.table))
        return 0
    finally:
        await store.close()


class _Parser(argparse.ArgumentParser):
    """argparse, with a refusal on one line (the usage is one ``--help`` away) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} rows per batch: it must be 1 or more")
    return value


def _table(text: str) -> str:
    try:
        return check_table_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m entrypoints.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("schema", help="print the DDL for the configured store and table")
    commands.add_parser("migrate", help="create the table from the DDL unless it is there already (safe to repeat)")
    commands.add_parser("check", help="connect and verify the schema")
    purge = commands.add_parser("purge", help="delete expired sessions in bounded batches")
    purge.add_argument("--batch", type=_batch_size, default=1000, help="rows per DELETE (default 1000)")
    seed = commands.add_parser(
        "import-seed-table", help="copy the old npm package's session table into ours (MySQL only; idempotent)"
    )
    seed.add_argument(
        "--from", dest="source", required=True, type=_table, metavar="TABLE", help="the old table, e.g. session"
    )
    seed.add_argument("--batch", type=_batch_size, default=500, help="old rows read per page (default 500)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a refusal already printed: hand back its status like any other
        return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 2
    try:
        settings = load_settings()
        if args.command == "schema":
            return asyncio.run(_schema(settings))
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command == "check":
            return asyncio.run(_check(settings))
        if args.command == "import-seed-table":
            return asyncio.run(_import_seed_table(settings, args.source, args.batch))
        return asyncio.run(_purge(settings, args.batch))
    except (ConfigError, SchemaMissing, StoreUnavailable, SeedImportError) as exc:
        return _failed(str(exc))
    except MySQLError as exc:
        # Not one the store names (those are above), so likely a bug or an unusual server:
        # still one line, in the server's words, not a traceback.
        return _failed(describe_mysql_error(exc))
    except OSError as exc:  # a file we could not read (the DDL) or write
        return _failed(str(exc))
    except KeyboardInterrupt:
        return _failed("interrupted", status=130)


def _failed(line: str, status: int = 1) -> int:
    print(f"error: {line}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
