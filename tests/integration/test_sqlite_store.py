"""SQLite-only behaviour of the embedded store: bounded waits, and a cancelled caller that jams nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.stores.sqlite import SQLiteStore
from application.errors import StoreUnavailable
from domain.expiry import ExpiryPolicy
from domain.session import Session
from domain.token import Token
from tests.support.sqlite_lock import locked_by_another_process

NOW = 1_700_000_000.0
POLICY = ExpiryPolicy(idle_ttl=100, absolute_ttl=1000)


def new_session() -> Session:
    return Session(data={}, created=NOW, deadlines=POLICY.open(NOW), last_seen=NOW)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(str(tmp_path / "s.sqlite3"), operation_timeout=1.0)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_write_behind_another_process_lock_gives_up_within_the_bound(store: SQLiteStore) -> None:
    with locked_by_another_process(store.path):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(StoreUnavailable):
            await store.insert(Token.generate().digest, new_session())
        assert loop.time() - started < 1.5


async def test_a_caller_cancelled_while_waiting_for_the_file_leaves_the_store_usable(store: SQLiteStore) -> None:
    """Its BEGIN still runs on aiosqlite's thread; it must end its transaction, not leave one open."""
    with locked_by_another_process(store.path) as release:
        waiting = asyncio.create_task(store.insert(Token.generate().digest, new_session()))
        await asyncio.sleep(0.2)  # the BEGIN IMMEDIATE is waiting on the file's lock
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
    digest = Token.generate().digest
    await store.insert(digest, new_session())  # not "cannot start a transaction within a transaction"
    assert await store.fetch(digest) == new_session()
    await store.ping()
