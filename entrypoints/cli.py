"""Command line: ``python -m entrypoints.cli {schema,migrate,check,purge}``.

Each command prints one clear line (or the DDL) and exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from adapters.stores.ddl import ddl
from adapters.stores.mysql import MySQLStore
from adapters.stores.sqlite import SQLiteStore
from application.errors import SchemaMissing, StoreUnavailable
from entrypoints.bootstrap import build_store
from entrypoints.settings import ConfigError, Settings, load_settings


def _where(store: MySQLStore | SQLiteStore) -> str:
    if isinstance(store, MySQLStore):
        c = store.config
        return f"mysql {c.host}:{c.port}/{c.database} table {store.table}"
    return f"sqlite {store.path} table {store.table}"


async def _schema(settings: Settings) -> int:
    print(ddl("mysql" if settings.uses_mysql else "sqlite", settings.session_table))
    return 0


async def _migrate(settings: Settings) -> int:
    store = build_store(settings)
    try:
        if isinstance(store, MySQLStore):
            await store.migrate()
            await store.check_schema()
        else:
            await store.open()  # the embedded store applies its own schema
        print(f"schema applied: {_where(store)}")
        return 0
    finally:
        await store.close()


async def _check(settings: Settings) -> int:
    store = build_store(settings)
    try:
        await store.open()
        await store.ping()
        print(f"ok: {_where(store)} answers and has the schema")
        return 0
    finally:
        await store.close()


async def _purge(settings: Settings, batch: int) -> int:
    store = build_store(settings)
    total = 0
    try:
        await store.open()
        while True:
            deleted = await store.purge(now=time.time(), batch=batch)
            total += deleted
            if deleted:
                print(f"purged {total} expired sessions so far", file=sys.stderr)
            if deleted < batch:
                break
        print(f"purged {total} expired sessions from {_where(store)}")
        return 0
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m entrypoints.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("schema", help="print the DDL for the configured store and table")
    commands.add_parser("migrate", help="apply the DDL (CREATE TABLE IF NOT EXISTS) to the configured store")
    commands.add_parser("check", help="connect and verify the schema")
    purge = commands.add_parser("purge", help="delete expired sessions in bounded batches")
    purge.add_argument("--batch", type=int, default=1000, help="rows per DELETE (default 1000)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "schema":
            return asyncio.run(_schema(settings))
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command == "check":
            return asyncio.run(_check(settings))
        return asyncio.run(_purge(settings, max(1, args.batch)))
    except (ConfigError, SchemaMissing, StoreUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
