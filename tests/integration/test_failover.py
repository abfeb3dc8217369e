"""Several database nodes in one URL: the store uses the first that answers and moves on when it stops.

Two TCP proxies in front of the test MariaDB stand in for two nodes of one
cluster (the same data behind both): cutting a proxy is its node dying.
tests/integration/test_galera.py does the same on a real Galera cluster.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from adapters.stores.ddl import drop_tables
from adapters.stores.mysql import MySQLConfig, MySQLStore
from application.errors import StoreUnavailable
from domain.expiry import ExpiryPolicy
from domain.session import Change, Session
from domain.values import encode
from tests.support.server import free_port
from tests.support.stores import mysql_url
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.mysql

POLICY = ExpiryPolicy(idle_ttl=600, absolute_ttl=6000)


def _url_for(*ports: int) -> str:
    parts = urlsplit(mysql_url())
    credentials = parts.netloc.rpartition("@")[0]
    nodes = ",".join(f"127.0.0.1:{port}" for port in ports)
    return f"{parts.scheme}://{credentials}@{nodes}{parts.path}"


@pytest.fixture
async def proxies() -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    target = urlsplit(mysql_url())
    first = await TcpProxy(target.hostname or "127.0.0.1", target.port or 3306).start()
    second = await TcpProxy(target.hostname or "127.0.0.1", target.port or 3306).start()
    try:
        yield first, second
    finally:
        await first.cut()
        await second.cut()


@pytest.fixture
async def table() -> AsyncIterator[str]:
    name = f"fo_{secrets.token_hex(5)}"
    store = MySQLStore(MySQLConfig.from_url(mysql_url(), table=name))
    await store.migrate()
    try:
        yield name
    finally:
        await store.connection.run(drop_tables(name), (), idempotent=True)
        await store.close()


def test_a_url_may_name_several_nodes_each_with_or_without_a_port() -> None:
    config = MySQLConfig.from_url("mysql://app:p%40ss@db1:3307,db2,[::1]:3309/sessions")
    assert config.nodes == (("db1", 3307), ("db2", 3306), ("::1", 3309))
    assert (config.user, config.password, config.database) == ("app", "p@ss", "sessions")
    assert config.where == "db1:3307,db2:3306,[::1]:3309"
    assert MySQLConfig.from_url("mysql://app@db1:3307/s").nodes == (("db1", 3307),)
    for bad in ("mysql://app@db1,,db2/s", "mysql://app@db1:x,db2/s", "mysql://app@db1,:3306/s"):
        with pytest.raises(ValueError, match="mysql:// URL"):
            MySQLConfig.from_url(bad)


async def test_the_store_opens_on_the_first_node_that_answers(table: str) -> None:
    real = urlsplit(mysql_url()).port or 3306
    store = MySQLStore(MySQLConfig.from_url(_url_for(free_port(), real), table=table))
    try:
        await store.open()
        assert store.health() == {"node": f"127.0.0.1:{real}", "galera": False}
    finally:
        await store.close()


async def test_when_the_node_in_use_dies_the_store_moves_to_the_next_within_the_bound(
    proxies: tuple[TcpProxy, TcpProxy], table: str
) -> None:
    first, second = proxies
    store = MySQLStore(MySQLConfig.from_url(_url_for(first.port, second.port), table=table))
    await store.open()
    try:
        now = time.time()
        digests = [secrets.token_bytes(32) for _ in range(20)]
        for d in digests:
            await store.insert(d, Session(data={}, created=now, deadlines=POLICY.open(now), last_seen=now))
        acknowledged: dict[bytes, int] = {}
        for d in digests[:10]:
            acknowledged[d] = await store.write(  # type: ignore[assignment]
                d, Change(sets={"n": encode(1)}), now=now, idle_deadline=POLICY.idle_deadline(now), max_bytes=65536
            )
        assert store.health()["node"] == f"127.0.0.1:{first.port}"

        await first.cut()  # the node dies: its connections drop and it refuses new ones
        started = time.monotonic()
        failures = 0
        while True:
            try:
                assert await store.fetch(digests[0]) is not None
                break
            except StoreUnavailable:
                failures += 1
                assert time.monotonic() - started < 5, "no failover within 5 s"
        moved_in = time.monotonic() - started
        assert store.health()["node"] == f"127.0.0.1:{second.port}"
        assert store.connection.failovers == 1
        # A read is retried on the next node within its own bound: its caller never sees the failure.
        assert moved_in < 1.5
        assert failures == 0

        # Writes go on through the second node; an acknowledged write is there whatever happened.
        for d in digests[10:]:
            try:
                version = await store.write(
                    d, Change(sets={"n": encode(2)}), now=now, idle_deadline=POLICY.idle_deadline(now), max_bytes=65536
                )
            except StoreUnavailable:
                continue  # its outcome is unknown: never replayed blindly (not acknowledged either)
            assert version is not None
            acknowledged[d] = version
        assert len(acknowledged) >= 19
        for d, version in acknowledged.items():
            found = await store.fetch(d)
            assert found is not None
            assert found.version == version
    finally:
        await store.close()


async def test_a_lone_node_that_dies_is_unavailable_not_a_failover(
    proxies: tuple[TcpProxy, TcpProxy], table: str
) -> None:
    first, _ = proxies
    store = MySQLStore(MySQLConfig.from_url(_url_for(first.port), table=table))
    await store.open()
    try:
        await first.cut()
        with pytest.raises(StoreUnavailable):
            await store.fetch(secrets.token_bytes(32))
        assert store.connection.failovers == 0
        assert store.health()["node"] == f"127.0.0.1:{first.port}"
    finally:
        await asyncio.wait_for(store.close(), 5)


# -- what is not a failed node -------------------------------------------------------------------


async def _write_load(store: MySQLStore, seconds: float) -> Counter[str]:
    """Writes, health probes and new sessions together for ``seconds``: what each call answered."""
    answered: Counter[str] = Counter()
    digests = [secrets.token_bytes(32) for _ in range(8)]
    for d in digests:
        await store.insert(d, _session())
    stop = time.monotonic() + seconds

    async def worker(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            now = time.time()
            try:
                if i % 3 == 0:
                    await store.ping()
                elif i % 3 == 1:
                    await store.insert(secrets.token_bytes(32), _session())
                else:
                    d = digests[i % len(digests)]
                    change = Change(sets={f"k{i}-{n}": encode(n)})
                    await store.write(d, change, now=now, idle_deadline=POLICY.idle_deadline(now), max_bytes=65536)
                answered["ok"] += 1
            except StoreUnavailable:
                answered["StoreUnavailable"] += 1

    await asyncio.gather(*(worker(i) for i in range(30)))
    return answered


def _session() -> Session:
    now = time.time()
    return Session(data={}, created=now, deadlines=POLICY.open(now), last_seen=now)


async def test_a_busy_pool_is_unavailable_on_the_same_node_never_a_failover(
    proxies: tuple[TcpProxy, TcpProxy], table: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A wait for a pooled connection past the bound says so, and the store stays on its node."""
    first, second = proxies
    store = MySQLStore(MySQLConfig.from_url(_url_for(first.port, second.port), table=table, pool_size=2))
    await store.open()
    try:
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with store.connection.dedicated():
                held.set()
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]  # the whole pool, busy
        await held.wait()
        await asyncio.sleep(0.1)
        with pytest.raises(StoreUnavailable, match=f"no connection to MySQL at 127.0.0.1:{first.port} free"):
            await store.fetch(secrets.token_bytes(32))
        with pytest.raises(StoreUnavailable):
            await store.insert(secrets.token_bytes(32), _session())
        release.set()
        await asyncio.gather(*holders)

        answered = await _write_load(store, 5.0)
        await _probes_done(store)
        print(f"\npool of 2, 30 callers for 5 s: {dict(answered)}; failovers {store.connection.failovers}")
        assert answered["ok"] > 0
        assert store.connection.failovers == 0
        assert store.health()["node"] == f"127.0.0.1:{first.port}"
        assert "stopped answering" not in caplog.text
    finally:
        await store.close()


async def test_a_statement_slow_past_the_bound_on_a_healthy_node_is_not_a_failover(
    proxies: tuple[TcpProxy, TcpProxy], table: str
) -> None:
    first, second = proxies
    store = MySQLStore(MySQLConfig.from_url(_url_for(first.port, second.port), table=table))
    await store.open()
    try:
        with pytest.raises(StoreUnavailable, match=f"MySQL at 127.0.0.1:{first.port} did not answer"):
            await store.connection.run("SELECT SLEEP(3)", (), idempotent=True)
        await _probes_done(store)  # a fresh connection answered SELECT 1: the node is alive
        assert store.connection.failovers == 0
        assert store.health()["node"] == f"127.0.0.1:{first.port}"
    finally:
        await store.close()


async def test_a_silent_node_is_left_once_a_fresh_connection_to_it_cannot_answer(
    proxies: tuple[TcpProxy, TcpProxy], table: str, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = proxies
    store = MySQLStore(MySQLConfig.from_url(_url_for(first.port, second.port), table=table))
    await store.open()
    try:
        digest = secrets.token_bytes(32)
        await store.insert(digest, _session())
        first.freeze()  # no byte passes any more; connections stay open
        with pytest.raises(StoreUnavailable, match=f"MySQL at 127.0.0.1:{first.port} did not answer"):
            await store.fetch(digest)
        await _probes_done(store)
        assert store.connection.failovers == 1
        assert f"MySQL node 127.0.0.1:{first.port} stopped answering" in caplog.text
        assert await store.fetch(digest) is not None  # through the second node
        assert store.health()["node"] == f"127.0.0.1:{second.port}"
    finally:
        await asyncio.wait_for(store.close(), 10)


async def _probes_done(store: MySQLStore) -> None:
    """Wait for a probe of a silent node to end (it is bounded by the operation's bound; this wait is generous)."""
    async with asyncio.timeout(30):
        while store.connection._probing is not None:
            await asyncio.sleep(0.05)
