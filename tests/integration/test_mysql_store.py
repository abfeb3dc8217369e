"""MySQL-specific behaviour of the store, against a real MariaDB (docs/decisions.md: one test per workaround)."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable

import aiomysql
import pymysql
import pytest

from adapters.clock import SystemClock
from adapters.stores.ddl import drop_tables
from adapters.stores.mysql import MySQLConfig, MySQLStore, hexkey
from adapters.stores.mysql.statements import RowWrite, batch
from application.handle import SessionHandle
from application.sessions import Sessions
from domain.errors import SessionTooLarge
from domain.expiry import ExpiryPolicy
from domain.session import Change, Session
from tests.support.stores import mysql_url

pytestmark = pytest.mark.usefixtures("_log_retries")

POLICY = ExpiryPolicy(idle_ttl=100, absolute_ttl=1000)
NOW = time.time()


@pytest.fixture
def _log_retries(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="socketio_session.mysql")


@pytest.fixture
async def store() -> AsyncIterator[MySQLStore]:
    opened = MySQLStore(
        MySQLConfig.from_url(mysql_url(), table=f"it_{secrets.token_hex(5)}", operation_timeout=8, lock_wait_timeout=1)
    )
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.connection.run(drop_tables(opened.table), (), idempotent=True)
        await opened.close()


def admin() -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    c = MySQLConfig.from_url(mysql_url())
    return pymysql.connect(host=c.host, port=c.port, user=c.user, password=c.password, database=c.database)


async def new_row(store: MySQLStore, now: float = NOW) -> bytes:
    digest = secrets.token_bytes(32)
    await store.insert(digest, Session(data={}, created=now, deadlines=POLICY.open(now), last_seen=now))
    return digest


async def test_raw_bytes_parameters_still_break_so_digests_are_bound_as_hex() -> None:
    """aio-libs/aiomysql#1080: if this starts passing, the hexkey/UNHEX workaround can go."""
    c = MySQLConfig.from_url(mysql_url())
    conn = await aiomysql.connect(host=c.host, port=c.port, user=c.user, password=c.password, db=c.database)
    try:
        async with conn.cursor() as cursor:
            with pytest.raises(TypeError):
                await cursor.execute("SELECT %s", (b"\x00\x01",))
            await cursor.execute("SELECT UNHEX(%s)", (hexkey(b"\x00\x27\x5c\xff"),))
            assert (await cursor.fetchone())[0] == b"\x00\x27\x5c\xff"
    finally:
        conn.close()


async def test_a_pooled_reader_sees_another_writers_commit_at_once(store: MySQLStore) -> None:
    """Autocommit on: without it a pooled connection keeps reading its first snapshot (aiomysql #121, #972)."""
    digest = await new_row(store)
    other = MySQLStore(MySQLConfig.from_url(mysql_url(), table=store.table, pool_size=1))
    try:
        assert (await other.fetch(digest)) is not None  # the pooled connection has read once
        await store.write(digest, Change(sets={"k": "1"}), now=NOW, idle_deadline=NOW + 100, max_bytes=65536)
        found = await other.fetch(digest)
        assert found is not None
        assert dict(found.data) == {"k": 1}
    finally:
        await other.close()


def _hold_row_lock(table: str, digest: bytes, seconds: float, locked: threading.Event) -> None:
    conn = admin()
    try:
        with conn.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(f"SELECT id FROM {table} WHERE id = UNHEX(%s) FOR UPDATE", (digest.hex(),))
            locked.set()
            time.sleep(seconds)
            cursor.execute("COMMIT")
    finally:
        conn.close()


async def test_a_lock_wait_timeout_is_retried_and_the_write_lands(
    store: MySQLStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Error 1205: InnoDB gives up waiting for a row lock (after 1 s here); the write is retried."""
    digest = await new_row(store)
    locked = threading.Event()
    holder = threading.Thread(target=_hold_row_lock, args=(store.table, digest, 1.6, locked))
    holder.start()
    await asyncio.to_thread(locked.wait, 5)
    version = await store.write(digest, Change(sets={"k": '"v"'}), now=NOW, idle_deadline=NOW + 100, max_bytes=65536)
    await asyncio.to_thread(holder.join)
    assert version == 1
    assert store.retries >= 1
    assert "retrying after MySQL error 1205" in caplog.text
    found = await store.fetch(digest)
    assert found is not None
    assert found.data == {"k": "v"}


def _deadlock_partner(table: str, first: bytes, second: bytes, ready: threading.Event, go: threading.Event) -> None:
    conn = admin()
    try:
        with conn.cursor() as cursor:
            cursor.execute("BEGIN")
            # Make this transaction the heavier one, so InnoDB picks the store's statement as the victim.
            for _ in range(20):
                cursor.execute(f"UPDATE {table} SET version = version + 1 WHERE id = UNHEX(%s)", (second.hex(),))
            ready.set()
            go.wait(5)
            time.sleep(0.3)  # let the store's DELETE take `first` and block on `second`
            cursor.execute(f"SELECT id FROM {table} WHERE id = UNHEX(%s) FOR UPDATE", (first.hex(),))
            time.sleep(0.2)
            cursor.execute("COMMIT")
    finally:
        conn.close()


async def test_a_deadlock_is_retried_and_the_statement_lands(
    store: MySQLStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Error 1213: two transactions lock two rows in opposite orders; the victim's statement is retried."""
    first, second = sorted([await new_row(store), await new_row(store)])
    ready, go = threading.Event(), threading.Event()
    partner = threading.Thread(target=_deadlock_partner, args=(store.table, first, second, ready, go))
    partner.start()
    await asyncio.to_thread(ready.wait, 5)
    go.set()
    removed = await store.delete_many([first, second])  # locks `first`, then waits on `second`
    await asyncio.to_thread(partner.join)
    assert removed == 2
    assert store.retries >= 1
    assert "retrying after MySQL error 1213" in caplog.text
    assert await store.fetch(first) is None
    assert await store.fetch(second) is None


async def test_only_one_process_purges_at_a_time(store: MySQLStore) -> None:
    expired = NOW - 10_000
    values = ", ".join(["(UNHEX(%s), '{}', 0, %s, %s, %s, %s, NULL)"] * 2000)
    params: list[object] = []
    for _ in range(2000):
        params += [secrets.token_hex(32), expired, expired, expired + 100, expired + 1000]
    for _ in range(10):
        await store.connection.run(
            f"INSERT INTO {store.table} (id, data, version, created, last_seen, expires, absolute_expires, user_id)"
            f" VALUES {values}",
            params,
            idempotent=False,
        )
        params = [secrets.token_hex(32) if isinstance(p, str) else p for p in params]
    live = await new_row(store)
    other = MySQLStore(MySQLConfig.from_url(mysql_url(), table=store.table))
    try:
        results = await asyncio.gather(store.purge(now=NOW, batch=500), other.purge(now=NOW, batch=500))
    finally:
        await other.close()
    assert None in results  # the second purger found the lock taken and stood back
    assert sum(r or 0 for r in results) == 20_000
    assert await store.purge(now=NOW, batch=500) == 0
    assert await store.fetch(live) is not None


@pytest.mark.parametrize(("rows", "expired", "written"), [(50, 0, 20), (10, 0, 8), (20, 2000, 10)])
async def test_a_merged_write_round_reads_only_its_own_rows_by_primary_key(
    store: MySQLStore, rows: int, expired: int, written: int
) -> None:
    """Without FORCE INDEX (PRIMARY), MariaDB scans the whole table or the expires index for these
    (seen in review): every row gets locked, and two processes' batches deadlock or wait on each other."""
    live = [await new_row(store) for _ in range(rows)]
    if expired:
        conn = admin()
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {store.table} (id, data, version, created, last_seen, expires, absolute_expires)"
                    " SELECT UNHEX(SHA2(CONCAT('x', seq), 256)), '{}', 0, 0, 0, 1, 2 FROM seq_1_to_" + str(expired)
                )
                cursor.execute(f"ANALYZE TABLE {store.table}")
            conn.commit()
        finally:
            conn.close()
    later = NOW + 1
    payloads = [
        RowWrite(hexkey(d), "JSON_SET(data, %s, JSON_EXTRACT(%s, '$'))", ('$."k"', "1"), later, later + 100, 65536)
        for d in live[:written]
    ]
    plan = batch(store.sql_name, payloads)
    conn = admin()
    try:
        with conn.cursor() as cursor:
            for sql, params in plan.statements:
                cursor.execute("EXPLAIN " + cursor.mogrify(sql, params))
                columns = [c[0] for c in cursor.description]
                (row,) = cursor.fetchall()
                plan_row = dict(zip(columns, row, strict=True))
                assert (plan_row["key"], plan_row["type"]) == ("PRIMARY", "range"), (sql[:40], plan_row)
    finally:
        conn.close()


async def test_a_write_told_it_landed_has_landed_whatever_the_nows_in_its_batch(store: MySQLStore) -> None:
    """Writes to one row in one batch, with `now`s on both sides of its expiry: none may be acked unstored.

    When each round used its own latest `now`, a row could miss round 1 (a later `now`) and match round 2
    (an earlier one); the version read-back then credited the first write, which never landed.
    """
    expiring = await new_row(store, now=NOW - POLICY.idle_ttl + 5)  # expires at NOW + 5
    other, first = await new_row(store), await new_row(store)
    # `first` goes out alone at once; the other three queue behind it and form one batch.
    changes = [(first, "f", NOW), (expiring, "a", NOW + 10), (other, "x", NOW + 10), (expiring, "b", NOW + 1)]
    versions = await asyncio.gather(
        *(
            store.write(d, Change(sets={key: "1"}), now=now, idle_deadline=POLICY.idle_deadline(now), max_bytes=65536)
            for d, key, now in changes
        )
    )
    assert store.merged_batches > 0
    for (d, key, _), version in zip(changes, versions, strict=True):
        found = await store.fetch(d)
        if version is not None:
            assert found is not None
            assert key in found.data, (key, version)


async def test_a_write_the_store_refuses_stays_alone_and_its_batch_commits_the_rest(store: MySQLStore) -> None:
    """A write that would make its session too large, in a batch with others: refused by name, the
    others committed in that same batch (not re-run one by one), their versions exact."""
    full, busy = await new_row(store), await new_row(store)
    others = [await new_row(store) for _ in range(10)]
    fill = Change(sets={"fill": '"' + "x" * 60000 + '"'})
    await store.write(full, fill, now=NOW, idle_deadline=NOW + 100, max_bytes=65536)
    too_much = Change(sets={"big": '"' + "y" * 9000 + '"'})

    def write(digest: bytes, change: Change) -> Awaitable[int | None]:
        return store.write(digest, change, now=NOW, idle_deadline=NOW + 100, max_bytes=65536)

    # The first goes out alone at once; the rest queue behind it and form one batch.
    results = await asyncio.gather(
        write(busy, Change(sets={"k": "0"})),
        *(write(d, Change(sets={"k": "1"})) for d in others[:5]),
        write(full, too_much),
        *(write(d, Change(sets={"k": "1"})) for d in others[5:]),
        return_exceptions=True,
    )
    refused = results[6]
    assert isinstance(refused, SessionTooLarge)
    assert [r for i, r in enumerate(results) if i != 6] == [1] + [1] * 10
    assert (store.group.refused, store.group.reruns, store.group.batches) == (1, 0, 1)
    found = await store.fetch(full)
    assert found is not None
    assert (set(found.data), found.version) == ({"fill"}, 1)


async def _writers(sessions: Sessions, seconds: float, *, spoiler: SessionHandle | None) -> tuple[int, list[str]]:
    """20 sockets writing to their own sessions for ``seconds`` (each write awaited), and, with
    ``spoiler``, one socket keeping 30 writes in flight that would make its nearly full session too
    large. Returns the acknowledged count and what the spoiler's writes were told."""
    handles = [SessionHandle(sessions) for _ in range(20)]
    for handle in handles:
        await handle.handshake("")
    stop = time.monotonic() + seconds
    acked = 0
    told: list[str] = []

    async def writer(handle: SessionHandle) -> None:
        nonlocal acked
        n = 0
        while time.monotonic() < stop:
            n += 1
            await handle.set("n", n)
            acked += 1

    async def spoil(handle: SessionHandle) -> None:
        while time.monotonic() < stop:
            await asyncio.sleep(0.01)  # a round trip of the wire and the server's own work on the event
            try:
                await handle.set("big", "y" * 9000)
            except SessionTooLarge as exc:
                told.append(type(exc).__name__)

    tasks = [writer(h) for h in handles]
    if spoiler is not None:
        tasks += [spoil(spoiler) for _ in range(30)]
    await asyncio.gather(*tasks)
    return acked, told


async def test_one_socket_s_over_limit_writes_never_reach_the_store_nor_slow_the_others(store: MySQLStore) -> None:
    """The handle knows its session's size: a write that cannot fit is refused before it joins a batch."""
    sessions = Sessions(store, SystemClock(), policy=POLICY, max_bytes=65536)
    spoiler = SessionHandle(sessions)
    await spoiler.handshake("")
    await spoiler.set("fill", "x" * 60000)
    alone, _ = await _writers(sessions, 3.0, spoiler=None)
    batches_alone = store.group.batches
    spoiled, told = await _writers(sessions, 3.0, spoiler=spoiler)
    batches_spoiled = store.group.batches - batches_alone
    print(
        f"\n20 writers for 3 s: {alone} acknowledged in {batches_alone} merged batches; beside one socket keeping"
        f" 30 over-limit writes in flight: {spoiled} in {batches_spoiled} ({spoiled / alone:.2f} of the"
        f" throughput, {batches_spoiled / batches_alone:.2f} of the batches); {len(told)} refused, of which"
        f" by the store: {store.refusals}"
    )
    assert told
    assert set(told) == {"SessionTooLarge"}
    assert store.refusals == 0  # refused by the handle, before any batch
    assert (store.group.refused, store.group.reruns) == (0, 0)
    assert set(spoiler.session.data) == {"fill"}


async def test_a_batch_of_one_statement_reads_back_exactly_the_rows_it_wrote_even_on_a_fresh_connection() -> None:
    """No transaction: the UPDATE keeps what it matched in a session variable and a SELECT reads it back.
    The first batch on a new connection must see every row (MariaDB reads a variable never set on the
    connection as a constant NULL: the init command sets it), and a row that expired is not claimed."""
    for _ in range(3):  # each time a new store: new connections
        table = f"it_{secrets.token_hex(5)}"
        store = MySQLStore(MySQLConfig.from_url(mysql_url(), table=table, pool_size=2))
        await store.migrate()
        try:
            first = await new_row(store)
            live = [await new_row(store) for _ in range(6)]
            gone = [await new_row(store, now=NOW - POLICY.idle_ttl - 5) for _ in range(2)]
            before = store._batch_number

            # The first goes out alone; the others queue behind it and go as one UPDATE.
            versions = await asyncio.gather(*(_set_k(store, d) for d in [first, *live, *gone]))
            assert store._batch_number > before  # went the one-statement way
            assert versions == [1] + [1] * len(live) + [None] * len(gone)
            again = await asyncio.gather(*(_set_k(store, d) for d in [first, *live]))
            assert again == [2] * (1 + len(live))
        finally:
            await store.connection.run(drop_tables(table), (), idempotent=True)
            await store.close()


def _set_k(store: MySQLStore, digest: bytes) -> Awaitable[int | None]:
    return store.write(digest, Change(sets={"k": "1"}), now=NOW, idle_deadline=NOW + 100, max_bytes=65536)
