"""The MySQL store on a Galera cluster: two nodes writing the same sessions at once.

Galera certifies each transaction at COMMIT against what the other nodes
committed meanwhile; the loser gets 1213 and nothing of it is applied. Our
single statements are retried; a group-commit batch that loses is re-run one
write at a time (adapters/stores/mysql/batching.py). Either way no write is
lost or applied twice, so every session's version counts exactly the writes
acknowledged, and each acknowledged version is a different one.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from adapters.stores.ddl import drop_tables
from adapters.stores.mysql import MySQLConfig, MySQLStore
from application.errors import StoreUnavailable
from domain.expiry import ExpiryPolicy
from domain.session import Change, Session
from domain.values import encode
from tests.support.galera import GaleraCluster, galera_cluster

pytestmark = [pytest.mark.mysql, pytest.mark.galera]

POLICY = ExpiryPolicy(idle_ttl=600, absolute_ttl=6000)
ROWS = 5
WRITES_PER_NODE = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GaleraCluster]:
    yield from galera_cluster(tmp_path_factory)


@pytest.fixture
async def stores(cluster: GaleraCluster) -> AsyncIterator[tuple[MySQLStore, MySQLStore]]:
    table = f"gs_{secrets.token_hex(4)}"
    one = MySQLStore(MySQLConfig.from_url(cluster.node_url(1), table=table, pool_size=20))
    two = MySQLStore(MySQLConfig.from_url(cluster.node_url(2), table=table, pool_size=20))
    await one.migrate()
    await one.open()
    await two.open()
    try:
        yield one, two
    finally:
        await one.connection.run(drop_tables(table), (), idempotent=True)
        await one.close()
        await two.close()


async def test_both_nodes_report_galera_and_read_each_others_writes_causally(
    stores: tuple[MySQLStore, MySQLStore],
) -> None:
    one, two = stores
    assert one.health()["galera"] is True
    assert two.health()["galera"] is True
    now = time.time()
    for _ in range(200):
        digest = secrets.token_bytes(32)
        await one.insert(digest, Session(data={}, created=now, deadlines=POLICY.open(now), last_seen=now))
        assert await two.fetch(digest) is not None  # never "not found" right after the insert elsewhere


async def test_conflicting_batches_on_two_nodes_lose_and_double_nothing(stores: tuple[MySQLStore, MySQLStore]) -> None:
    one, two = stores
    now = time.time()
    digests = [secrets.token_bytes(32) for _ in range(ROWS)]
    for digest in digests:
        await one.insert(digest, Session(data={}, created=now, deadlines=POLICY.open(now), last_seen=now))
    await two.fetch(digests[0])  # causal: the rows are on node 2 too

    async def write(store: MySQLStore, n: int) -> tuple[bytes, str, int | None]:
        digest, key = digests[n % ROWS], f"{id(store)}-{n}"
        at = time.time()
        try:
            version = await store.write(
                digest, Change(sets={key: encode(n)}), now=at, idle_deadline=POLICY.idle_deadline(at), max_bytes=1 << 20
            )
        except StoreUnavailable:
            version = None  # gave up within the bound: not acknowledged
        return digest, key, version

    results = await asyncio.gather(
        *(write(store, n) for n in range(WRITES_PER_NODE) for store in (one, two)),
    )
    acknowledged = [(d, k, v) for d, k, v in results if v is not None]
    print(
        f"\ngalera: {len(acknowledged)}/{len(results)} writes acknowledged; batches re-run after a refused"
        f" COMMIT: {one.group.reruns} + {two.group.reruns}; statements retried: {one.retries} + {two.retries}"
    )
    assert len(acknowledged) >= len(results) * 0.95
    for digest in digests:
        row = await two.fetch(digest)
        assert row is not None
        mine = [(k, v) for d, k, v in acknowledged if d == digest]
        # Every acknowledged key is there, and the version counts the writes: none lost, none applied twice.
        assert {k for k, _ in mine} <= set(row.data)
        assert row.version == len(row.data)
        versions = [v for _, v in mine]
        assert len(set(versions)) == len(versions)
        assert max(versions) <= row.version
