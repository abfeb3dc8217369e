"""The private Galera cluster of tests/support/galera.py works as the cluster tests need it to.

A write on one node is read on another with causal reads; a node killed with SIGKILL leaves two
that still serve; the killed node rejoins and sees what was written while it was down. Each step
is timed (``pytest -s`` prints the figures).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.galera import GaleraCluster, galera_cluster

pytestmark = [pytest.mark.mysql, pytest.mark.galera]

TABLE = "galera_smoke"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GaleraCluster]:
    yield from galera_cluster(tmp_path_factory)


def _write(cluster: GaleraCluster, node: int, key: str) -> None:
    with cluster.client(node) as conn, conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (k, node) VALUES (%s, %s)", (key, node))


def _causal_read(cluster: GaleraCluster, node: int, key: str) -> tuple[object, ...] | None:
    with cluster.client(node) as conn, conn.cursor() as cursor:
        # Waits until this node has applied every write the cluster committed before the read.
        cursor.execute("SET SESSION wsrep_sync_wait = 1")
        cursor.execute(f"SELECT k, node FROM {TABLE} WHERE k = %s", (key,))
        row: tuple[object, ...] | None = cursor.fetchone()
        return row


def _timed(timings: dict[str, float], step: str, started: float) -> None:
    timings[step] = time.monotonic() - started
    print(f"galera: {step}: {timings[step]:.2f}s")


def test_a_killed_node_leaves_two_serving_and_rejoins_with_what_it_missed(cluster: GaleraCluster) -> None:
    timings: dict[str, float] = {}
    with cluster.client(1) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {TABLE} (k VARCHAR(32) PRIMARY KEY, node INT NOT NULL)")

    started = time.monotonic()
    _write(cluster, 1, "from-node-1")
    assert _causal_read(cluster, 3, "from-node-1") == ("from-node-1", 1)
    _timed(timings, "write on node 1, causal read on node 3", started)

    started = time.monotonic()
    cluster.kill(2)
    _write(cluster, 1, "after-kill")  # blocks until the group has evicted node 2
    _timed(timings, "SIGKILL node 2 -> first write on node 1 committed", started)
    for survivor in (1, 3):
        assert cluster.wait_until(survivor, cluster_size=2).synced
    _timed(timings, "SIGKILL node 2 -> nodes 1 and 3 Synced in a cluster of 2", started)
    _write(cluster, 3, "while-2-is-down")
    assert _causal_read(cluster, 1, "while-2-is-down") == ("while-2-is-down", 3)

    started = time.monotonic()
    cluster.start(2)
    _timed(timings, "node 2 restarted -> Synced in a cluster of 3", started)
    assert cluster.status(2).synced
    assert cluster.status(2).cluster_size == 3
    assert _causal_read(cluster, 2, "while-2-is-down") == ("while-2-is-down", 3)
    assert _causal_read(cluster, 2, "after-kill") == ("after-kill", 1)


def test_node_1_killed_rejoins_the_cluster_it_bootstrapped_and_a_stopped_node_catches_up(
    cluster: GaleraCluster,
) -> None:
    timings: dict[str, float] = {}
    history = cluster.status(2).cluster_uuid

    started = time.monotonic()
    cluster.kill(1)
    _write(cluster, 2, "while-1-is-down")
    _timed(timings, "SIGKILL node 1 -> first write on node 2 committed", started)
    started = time.monotonic()
    cluster.start(1)
    _timed(timings, "node 1 restarted -> Synced in a cluster of 3", started)
    # Joined the running cluster: a second bootstrap would have begun a history of its own.
    assert cluster.status(1).cluster_uuid == history
    assert cluster.status(1).cluster_size == 3
    assert _causal_read(cluster, 1, "while-1-is-down") == ("while-1-is-down", 2)

    started = time.monotonic()
    cluster.stop(3)
    _timed(timings, "clean stop of node 3", started)
    assert cluster.wait_until(1, cluster_size=2).synced
    _write(cluster, 1, "while-3-is-stopped")
    started = time.monotonic()
    cluster.start(3)  # a clean stop saved its position: incremental state transfer
    _timed(timings, "node 3 restarted -> Synced in a cluster of 3", started)
    assert _causal_read(cluster, 3, "while-3-is-stopped") == ("while-3-is-stopped", 1)
