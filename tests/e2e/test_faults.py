"""Faults: a stopped database, killed connections, a server killed mid-load, interleaved events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.support.client import Client
from tests.support.deployment import Deployment, deploy
from tests.support.private_mariadb import PrivateMariaDB

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def private_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    db = PrivateMariaDB(tmp_path_factory.mktemp("mariadb")).install()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture
def on_private_db(private_db: PrivateMariaDB, tmp_path: Path) -> Iterator[Deployment]:
    # Retrying clients hammer getToken during an outage; the per-socket limit is not under test here.
    yield from deploy("mysql", tmp_path, SESSION_STORE_URL=private_db.url, SESSION_HANDSHAKE_LIMIT="1000")


def _health(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


async def test_a_stopped_database_is_reported_within_two_seconds_and_service_resumes_by_itself(
    private_db: PrivateMariaDB, on_private_db: Deployment
) -> None:
    async with Client(on_private_db.server.url) as client:
        token = (await client.get_token(""))["token"]
        assert await client.call("demo:set", {"key": "kept", "value": "before"}) == {"ok": True}
        await asyncio.to_thread(private_db.stop)
        try:
            outage_started = time.monotonic()
            while time.monotonic() - outage_started < 4:  # several seconds of outage
                started = time.monotonic()
                reply = await client.get_token(token)
                assert time.monotonic() - started < 2.0
                assert reply == {"token": "", "errors": "Session Store Unavailable", "status": "unavailable"}
                started = time.monotonic()
                ack = await client.call("demo:set", {"key": "kept", "value": "during"})
                assert time.monotonic() - started < 2.0
                assert ack == {"ok": False, "error": "StoreUnavailable"}
            assert await asyncio.to_thread(_health, on_private_db.server.url) == 503
        finally:
            await asyncio.to_thread(private_db.start)
        reply = await client.get_token(token)  # no app restart
        assert (reply["token"], reply["status"]) == (token, "resumed")
        assert await client.call("demo:get", {"key": "kept"}) == {"ok": True, "value": "before"}
        assert await asyncio.to_thread(_health, on_private_db.server.url) == 200
    assert "Traceback" not in on_private_db.server.log()


async def test_killed_connections_under_load_fail_by_name_or_succeed_and_the_server_recovers(
    private_db: PrivateMariaDB, on_private_db: Deployment
) -> None:
    clients = [Client(on_private_db.server.url, auth={"token": ""}) for _ in range(10)]
    await asyncio.gather(*(c.__aenter__() for c in clients))
    tokens = [(await c.next_token())["token"] for c in clients]
    acked: dict[int, list[str]] = {i: [] for i in range(len(clients))}
    outcomes: dict[str, int] = {}
    stop = asyncio.Event()

    async def write(i: int, client: Client) -> None:
        n = 0
        while not stop.is_set():
            key = f"k{n}"
            ack = await client.call("demo:set", {"key": key, "value": n}, timeout=10)
            name = "ok" if ack == {"ok": True} else ack.get("error", repr(ack))
            outcomes[name] = outcomes.get(name, 0) + 1
            if ack == {"ok": True}:
                acked[i].append(key)
            n += 1

    kills = 0

    def killer() -> None:
        nonlocal kills
        admin = private_db.admin()
        try:
            with admin.cursor() as cursor:
                for _ in range(30):
                    cursor.execute(
                        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                        ("sessions",),
                    )
                    for (thread_id,) in cursor.fetchall():
                        with contextlib.suppress(Exception):
                            cursor.execute(f"KILL CONNECTION {int(thread_id)}")
                            kills += 1
                    time.sleep(0.1)
        finally:
            admin.close()

    writers = [asyncio.create_task(write(i, c)) for i, c in enumerate(clients)]
    await asyncio.to_thread(killer)
    stop.set()
    await asyncio.gather(*writers)
    print(f"\nKILL CONNECTION: {kills} connections killed; outcomes {outcomes}")
    assert kills > 0
    assert set(outcomes) <= {"ok", "StoreUnavailable"}  # nothing else, no exception text
    assert outcomes.get("ok", 0) > 0
    # Recovery without a restart: every client can write again at once.
    acks = await asyncio.gather(*(c.call("demo:set", {"key": "after", "value": 1}) for c in clients))
    assert acks == [{"ok": True}] * len(clients)
    # Acked means stored.
    for i, token in enumerate(tokens):
        row = await on_private_db.row(token)
        assert row is not None
        missing = [k for k in acked[i] if k not in row.data]
        assert missing == []
    await asyncio.gather(*(c.__aexit__() for c in clients))
    assert "Traceback" not in on_private_db.server.log()


@pytest.fixture(params=["sqlite", "mysql"])
def crashable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy(str(request.param), tmp_path)


async def test_every_acknowledged_write_survives_kill_dash_nine(crashable: Deployment) -> None:
    clients = [Client(crashable.server.url, auth={"token": ""}) for _ in range(20)]
    await asyncio.gather(*(c.__aenter__() for c in clients))
    tokens = [(await c.next_token())["token"] for c in clients]
    acked: dict[int, list[str]] = {i: [] for i in range(len(clients))}

    async def write(i: int, client: Client) -> None:
        n = 0
        with contextlib.suppress(Exception):  # the server dies under us: that is the test
            while True:
                key = f"k{n}"
                if await client.call("demo:set", {"key": key, "value": n}, timeout=2) == {"ok": True}:
                    acked[i].append(key)
                n += 1

    writers = [asyncio.create_task(write(i, c)) for i, c in enumerate(clients)]
    await asyncio.sleep(1.5)
    assert crashable.server.process is not None
    os.kill(crashable.server.process.pid, signal.SIGKILL)
    await asyncio.gather(*writers)
    for c in clients:
        with contextlib.suppress(Exception):
            await c.__aexit__()
    total = sum(len(keys) for keys in acked.values())
    print(f"\nkill -9 ({crashable.kind}): {total} writes acknowledged before the kill")
    assert total > 100
    await asyncio.to_thread(crashable.server.restart)
    for i, token in enumerate(tokens):
        row = await crashable.row(token)
        assert row is not None
        assert [k for k in acked[i] if k not in row.data] == []


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # 200 writes in flight on one socket: above the default bound of queued writes (test_hostile_clients.py).
    yield from deploy("mysql", tmp_path_factory.mktemp("ordering"), SESSION_MAX_PENDING_WRITES="1000")


async def test_writes_through_one_socket_apply_in_the_order_they_were_sent(shared: Deployment) -> None:
    """python-socketio runs each event as its own task; our handle still applies them in order."""
    async with Client(shared.server.url, auth={"token": ""}) as client:
        token = (await client.next_token())["token"]
        acks: asyncio.Queue[Any] = asyncio.Queue()
        for n in range(200):
            await client.sio.emit("demo:set", {"key": "n", "value": n}, callback=acks.put_nowait)
        replies = [await asyncio.wait_for(acks.get(), 10) for _ in range(200)]
        assert replies == [{"ok": True}] * 200
        assert await client.call("demo:get", {"key": "n"}) == {"ok": True, "value": 199}
    row = await shared.row(token)
    assert row is not None
    assert (row.data["n"], row.version) == (199, 200)


@pytest.fixture
def rate_limited(tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy("sqlite", tmp_path, SESSION_HANDSHAKE_LIMIT="3", SESSION_HANDSHAKE_WINDOW="60")


async def test_get_token_is_rate_limited_per_socket(rate_limited: Deployment) -> None:
    rows = await rate_limited.count_rows()
    async with Client(rate_limited.server.url) as client:
        replies = [await client.get_token("") for _ in range(5)]
        assert [r["status"] for r in replies] == ["created"] * 3 + ["rate_limited"] * 2
        assert replies[-1] == {"token": "", "errors": "Too Many Requests", "status": "rate_limited"}
        assert await client.call("demo:set", {"key": "still", "value": "works"}) == {"ok": True}
    async with Client(rate_limited.server.url) as fresh:  # the limit is per socket
        assert (await fresh.get_token(""))["status"] == "created"
    assert await rate_limited.count_rows() == rows + 4  # no rows minted past the limit


async def test_an_oversized_message_is_refused_and_the_server_stays_up(rate_limited: Deployment) -> None:
    # SESSION_MAX_BYTES is 64 KiB by default: messages are bounded at twice that plus framing.
    async with Client(rate_limited.server.url) as client:
        await client.get_token("")
        with pytest.raises(socketio.exceptions.TimeoutError):  # never acknowledged: engine.io drops the connection
            await client.call("demo:set", {"key": "big", "value": "x" * 400_000}, timeout=3)
        assert not client.sio.connected
    async with Client(rate_limited.server.url) as other:
        assert (await other.get_token(""))["status"] == "created"
    log = rate_limited.server.log()
    assert "Traceback" not in log
    assert json.dumps("x" * 1000) not in log
