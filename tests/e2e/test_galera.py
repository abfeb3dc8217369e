"""Two uvicorn processes on a private 3-node Galera cluster: causal reads, one hot row, a node killed.

Process A lists node 1 first, process B node 2 first (``SESSION_STORE_URL`` names all three), with
Redis as python-socketio's message queue between them. What a cluster is for, shown end to end:

- a write acknowledged through A is read through B in the very next handshake (causal reads);
- 50 writers per process on one token, distinct keys, lose nothing and count every write once;
- node 1 killed with SIGKILL under write load: A moves to another node within 5 s, every
  acknowledged write is on the surviving nodes, and node 1, once rejoined, serves the same sessions.

Each test prints what it measured (``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from attrs import Factory, define, field

from adapters.stores.mysql import MySQLConfig, MySQLStore
from domain.session import Session
from domain.token import Token
from tests.support.client import Client
from tests.support.galera import QUICK_EVICTION, GaleraCluster, galera_cluster
from tests.support.server import Server, run_cli, server_env
from tests.support.stores import redis_url

pytestmark = [pytest.mark.galera, pytest.mark.e2e]

TABLE = "galera_e2e"
RELAY_KEY = secrets.token_urlsafe(32)
ROUNDS = 1000  # write-through-A-then-resume-on-B rounds, with causal reads on and then off
WRITERS_PER_PROCESS = 50
HOT_ROW_ROUNDS = 5  # each of the 100 writers sets its own key this many times, all at once each time
LOAD_WRITERS_PER_PROCESS = 10
LOAD_PAUSE = 0.02  # between one writer's writes: load, without starving a 2-core machine shared with others
FAILOVER_BOUND = 5.0  # issue 13: the processes on a killed node fail over within 5 s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GaleraCluster]:
    # Galera's default eviction stalls every commit (and causal read) on the survivors ~6 s after a
    # SIGKILL, past the 5 s failover bound; with QUICK_EVICTION ~3 s (tests/support/galera.py).
    yield from galera_cluster(tmp_path_factory, provider_options=QUICK_EVICTION)


@define
class Site:
    """The cluster, the servers started on it (stopped at the end), and a direct line to each node."""

    cluster: GaleraCluster
    workdir: Path
    servers: list[Server] = Factory(list)

    def url(self, *order: int) -> str:
        """``SESSION_STORE_URL`` naming the nodes ``order`` in that order."""
        c = self.cluster
        hosts = ",".join(self.node_name(i) for i in order)
        return f"mysql://{c.user}:{c.password}@{hosts}/{c.database}"

    def node_name(self, i: int) -> str:
        """How /healthz names node ``i``."""
        return f"127.0.0.1:{self.cluster.node(i).port}"

    def env(self, *order: int, **extra: str) -> dict[str, str]:
        return server_env(
            {
                "SESSION_STORE_URL": self.url(*order),
                "SESSION_TABLE": TABLE,
                "SOCKETIO_MESSAGE_QUEUE": redis_url(),
                "SESSION_RELAY_KEY": RELAY_KEY,
                # One socket resumes ROUNDS times within a minute; the default allows 10.
                "SESSION_HANDSHAKE_LIMIT": "1000000",
                **extra,
            }
        )

    def serve(self, name: str, *order: int, **extra: str) -> Server:
        server = Server(env=self.env(*order, **extra), log_path=self.workdir / f"server-{name}.log")
        self.servers.append(server.start())
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        self.servers.remove(server)

    async def row(self, node: int, token: str) -> Session | None:
        """The session of ``token`` read through node ``node`` alone (a causal read: Galera is detected)."""
        store = MySQLStore(MySQLConfig.from_url(self.cluster.node_url(node), table=TABLE))
        await store.open()
        try:
            return await store.fetch(Token(token).digest)
        finally:
            await store.close()


@define
class Pair:
    site: Site
    a: Server  # nodes 1, 2, 3
    b: Server  # nodes 2, 3, 1


@pytest.fixture(scope="module")
def pair(cluster: GaleraCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    site = Site(cluster, tmp_path_factory.mktemp("galera-e2e"))
    migrated = run_cli(site.env(1, 2, 3), "migrate")
    assert migrated.returncode == 0, migrated.stderr
    try:
        yield Pair(site, site.serve("a", 1, 2, 3), site.serve("b", 2, 3, 1))
    finally:
        for server in list(site.servers):
            site.stop(server)


def health(server: Server) -> dict[str, Any]:
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


async def poll(condition: Any, *, within: float, what: str) -> None:
    """Wait until ``condition()`` is true; fail saying ``what`` did not happen ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within:.0f}s")
        await asyncio.sleep(0.05)


def no_traceback(*servers: Server) -> None:
    for server in servers:
        assert "Traceback" not in server.log(), server.log_path


# -- health -------------------------------------------------------------------------------------


def test_each_process_says_it_is_on_a_galera_node_and_which(pair: Pair) -> None:
    assert health(pair.a) == {"status": "ok", "store": "mysql", "node": pair.site.node_name(1), "galera": True}
    assert health(pair.b) == {"status": "ok", "store": "mysql", "node": pair.site.node_name(2), "galera": True}


# -- causal reads -------------------------------------------------------------------------------


@define
class Rounds:
    stale: list[tuple[int, str, object]] = Factory(list)  # (round, handshake status, value read)
    seconds: float = 0.0


async def write_on_a_then_resume_on_b(a: Server, b: Server, rounds: int) -> Rounds:
    """Each round: A sets n = i (acknowledged: committed), B resumes the token (a store read) and gets n."""
    result = Rounds()
    async with Client(a.url, auth={"token": ""}) as on_a:
        token = (await on_a.next_token())["token"]
        assert await on_a.call("demo:set", {"key": "n", "value": -1}) == {"ok": True}
        # Without causal reads B may not see the row yet and hand out a new session: the rounds rebind.
        async with Client(b.url, auth={"token": token}) as on_b:
            await on_b.next_token()
            started = time.monotonic()
            for i in range(rounds):
                assert await on_a.call("demo:set", {"key": "n", "value": i}) == {"ok": True}
                resumed = await on_b.get_token(token)
                value = (await on_b.call("demo:get", {"key": "n"}))["value"] if resumed["token"] == token else None
                if resumed["status"] != "resumed" or value != i:
                    result.stale.append((i, str(resumed["status"]), value))
            result.seconds = time.monotonic() - started
    return result


async def test_a_write_acknowledged_through_one_node_is_read_through_another_every_time(pair: Pair) -> None:
    causal = await write_on_a_then_resume_on_b(pair.a, pair.b, ROUNDS)
    print(
        f"\ngalera causal reads on: {len(causal.stale)} stale of {ROUNDS} write-on-A/resume-on-B rounds"
        f" ({causal.seconds:.1f}s, {ROUNDS / causal.seconds:.0f} rounds/s)"
    )
    assert causal.stale == []

    site = pair.site
    a_off = site.serve("a-no-causal", 1, 2, 3, SESSION_CAUSAL_READS="0")
    b_off = site.serve("b-no-causal", 2, 3, 1, SESSION_CAUSAL_READS="0")
    try:
        assert health(b_off)["galera"] is True
        off = await write_on_a_then_resume_on_b(a_off, b_off, ROUNDS)
    finally:
        site.stop(a_off)
        site.stop(b_off)
    no_traceback(a_off, b_off)
    # Galera applies a commit on the other nodes after acknowledging it; whether a read through
    # node 2 lands in that gap depends on timing. On a quiet machine it may be 0: that the count
    # can be above 0 at all is what causal reads remove, so it is reported, not asserted.
    print(
        f"galera causal reads off: {len(off.stale)} stale of {ROUNDS} rounds ({off.seconds:.1f}s,"
        f" {ROUNDS / off.seconds:.0f} rounds/s){' (0 can happen on a quiet machine)' if not off.stale else ''};"
        f" first: {off.stale[:5]}"
    )


# -- one hot row, two nodes -----------------------------------------------------------------------


async def test_fifty_writers_per_process_on_one_token_lose_no_key_and_count_every_write_once(pair: Pair) -> None:
    async with Client(pair.a.url, auth={"token": ""}) as owner:
        token = (await owner.next_token())["token"]
    urls = [pair.a.url] * WRITERS_PER_PROCESS + [pair.b.url] * WRITERS_PER_PROCESS
    writers = [Client(url, auth={"token": token}) for url in urls]
    await asyncio.gather(*(w.__aenter__() for w in writers))
    acked: dict[str, int] = {}
    failed: Counter[str] = Counter()
    conflicts_before = conflicts(pair.site.cluster)
    started = time.monotonic()
    try:
        assert {(await w.next_token())["status"] for w in writers} == {"resumed"}
        for round_ in range(HOT_ROW_ROUNDS):
            replies = await asyncio.gather(
                *(
                    w.call("demo:set", {"key": f"writer-{i}", "value": round_}, timeout=20)
                    for i, w in enumerate(writers)
                )
            )
            for i, reply in enumerate(replies):
                if reply == {"ok": True}:
                    acked[f"writer-{i}:{round_}"] = round_
                else:
                    failed[str(reply.get("error"))] += 1
    finally:
        await asyncio.gather(*(w.__aexit__() for w in writers))
    seconds = time.monotonic() - started
    conflicts_after = conflicts(pair.site.cluster)
    print(
        f"\ngalera hot row: {len(writers)} writers x {HOT_ROW_ROUNDS} rounds on one token in {seconds:.1f}s:"
        f" {len(acked)} acknowledged, failed {dict(failed)};"
        f" Galera conflicts meanwhile { {k: n - conflicts_before[k] for k, n in conflicts_after.items()} }"
    )
    assert not failed
    for node in (1, 2, 3):
        row = await pair.site.row(node, token)
        assert row is not None
        assert dict(row.data) == {f"writer-{i}": HOT_ROW_ROUNDS - 1 for i in range(len(writers))}  # 0 keys lost
        assert row.version == len(acked)  # every acknowledged write counted once: none lost, none re-run


def conflicts(cluster: GaleraCluster) -> Counter[str]:
    """Certification failures and brute-force aborts so far, summed over the running nodes."""
    total: Counter[str] = Counter()
    for node in cluster.nodes:
        if node.running:
            rows = cluster.sql(
                node.number,
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')",
            )
            total.update({str(name): int(value) for name, value in rows})
    return total


# -- a node killed under write load ------------------------------------------------------------------


@define
class Writer:
    """One socket on its own session, setting k0, k1, … one after another until told to stop."""

    process: str  # "A" or "B"
    client: Client
    token: str = ""
    acked: dict[str, int] = Factory(dict)
    ack_times: list[tuple[float, float]] = Factory(list)  # (sent, acknowledged), monotonic
    failed: Counter[str] = field(factory=Counter)

    async def write_until(self, stop: asyncio.Event) -> None:
        j = 0
        while not stop.is_set():
            key, j = f"k{j}", j + 1
            sent = time.monotonic()
            try:
                reply = await self.client.call("demo:set", {"key": key, "value": j}, timeout=10)
            except socketio.exceptions.SocketIOError as exc:  # no answer at all: worse than an error
                self.failed[type(exc).__name__] += 1
                await asyncio.sleep(LOAD_PAUSE)
                continue
            if reply == {"ok": True}:
                self.acked[key] = j
                self.ack_times.append((sent, time.monotonic()))
            else:
                self.failed[str(reply.get("error"))] += 1
            await asyncio.sleep(LOAD_PAUSE)


def first_ack_after(writers: list[Writer], moment: float) -> float | None:
    """Seconds from ``moment`` to the first acknowledgement of a write sent after it, if any."""
    acks = [acked for w in writers for sent, acked in w.ack_times if sent >= moment]
    return min(acks) - moment if acks else None


def longest_gap(writers: list[Writer]) -> float:
    """The longest time without any acknowledgement, across these writers."""
    times = sorted(acked for w in writers for _, acked in w.ack_times)
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def test_a_node_killed_under_write_load_fails_over_keeps_every_acknowledged_write_and_rejoins(
    pair: Pair,
) -> None:
    site, cluster = pair.site, pair.site.cluster
    writers = [Writer("A", Client(pair.a.url, auth={"token": ""})) for _ in range(LOAD_WRITERS_PER_PROCESS)] + [
        Writer("B", Client(pair.b.url, auth={"token": ""})) for _ in range(LOAD_WRITERS_PER_PROCESS)
    ]
    on_a = [w for w in writers if w.process == "A"]
    on_b = [w for w in writers if w.process == "B"]
    await asyncio.gather(*(w.client.__aenter__() for w in writers))
    stop = asyncio.Event()
    try:
        for w in writers:
            w.token = (await w.client.next_token())["token"]
        load = [asyncio.create_task(w.write_until(stop)) for w in writers]
        await poll(lambda: all(len(w.acked) >= 5 for w in writers), within=20, what="every writer writing")

        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill, 1)  # SIGKILL node 1, A's node, as a crashed host
        await poll(
            lambda: first_ack_after(on_a, killed_at) is not None and first_ack_after(on_b, killed_at) is not None,
            within=20,
            what="A and B acknowledging a write sent after node 1 was killed",
        )
        a_back, b_back = first_ack_after(on_a, killed_at), first_ack_after(on_b, killed_at)
        await asyncio.sleep(3)  # load goes on after the failover
        stop.set()
        await asyncio.gather(*load)
    finally:
        stop.set()
        await asyncio.gather(*(w.client.__aexit__() for w in writers))

    a_failed = sum((w.failed for w in on_a), Counter[str]())
    b_failed = sum((w.failed for w in on_b), Counter[str]())
    a_now, b_now = health(pair.a), health(pair.b)
    print(
        f"\ngalera SIGKILL node 1 under load ({len(writers)} writers):"
        f" A's first write acknowledged {a_back:.2f}s after the kill, B's {b_back:.2f}s;"
        f" longest time without an ack: A {longest_gap(on_a):.2f}s, B {longest_gap(on_b):.2f}s;"
        f" acknowledged A {sum(len(w.acked) for w in on_a)}, B {sum(len(w.acked) for w in on_b)};"
        f" answered with an error (fine: never acknowledged) A {dict(a_failed)}, B {dict(b_failed)};"
        f" A now on {a_now['node']}, B on {b_now['node']} (node 1 was {site.node_name(1)});"
        f" moves to the next node: A {pair.a.log().count('stopped answering')},"
        f" B {pair.b.log().count('stopped answering')}"
    )
    assert a_back is not None
    assert a_back < FAILOVER_BOUND
    assert not {name for name in a_failed + b_failed if name != "StoreUnavailable"}  # every call answered
    assert (a_now["status"], a_now["galera"]) == ("ok", True)
    assert a_now["node"] in {site.node_name(2), site.node_name(3)}
    assert f"MySQL node {site.node_name(1)} stopped answering" in pair.a.log()

    landed: Counter[str] = Counter()  # reported StoreUnavailable (outcome unknown) yet committed, by process
    for node in (2, 3):  # the survivors hold every acknowledged write
        for w in writers:
            row = await site.row(node, w.token)
            assert row is not None
            missing = {k: v for k, v in w.acked.items() if row.data.get(k) != v}
            assert not missing, f"node {node} lacks acknowledged writes of a writer on {w.process}: {missing}"
            if node == 2:
                landed[w.process] += len(set(row.data) - set(w.acked))
    print(
        "galera: 0 acknowledged writes lost on nodes 2 and 3; writes answered StoreUnavailable that committed"
        f" anyway: A {landed['A']} of {a_failed.total()}, B {landed['B']} of {b_failed.total()}"
    )

    started = time.monotonic()
    await asyncio.to_thread(cluster.start, 1)
    rejoined_in = time.monotonic() - started
    c = site.serve("c", 1)  # node 1 only: what it serves is what it holds after the rejoin
    assert health(c) == {"status": "ok", "store": "mysql", "node": site.node_name(1), "galera": True}
    read_back = await asyncio.gather(*(read_through(c, w) for w in writers))
    print(
        f"galera node 1 rejoined in {rejoined_in:.1f}s; through it alone, server C resumed {len(writers)} sessions"
        f" and read back {sum(read_back)} acknowledged keys"
    )
    assert sum(read_back) == sum(len(w.acked) for w in writers)
    no_traceback(pair.a, pair.b, c)


async def read_through(server: Server, writer: Writer) -> int:
    """Resume ``writer``'s session on ``server`` and read each key it had acknowledged; how many matched."""
    async with Client(server.url, auth={"token": writer.token}) as client:
        assert (await client.next_token())["status"] == "resumed"
        keys = list(writer.acked)
        read: dict[str, Any] = {}
        for chunk in (keys[i : i + 50] for i in range(0, len(keys), 50)):
            replies = await asyncio.gather(*(client.call("demo:get", {"key": k}) for k in chunk))
            read.update({k: r["value"] for k, r in zip(chunk, replies, strict=True)})
    assert read == writer.acked
    return len(read)
