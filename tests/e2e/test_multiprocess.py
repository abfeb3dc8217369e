"""Two uvicorn processes on one MariaDB, with Redis as python-socketio's message queue."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from attrs import define

from adapters.socketio.relay import sign
from domain.token import Token
from tests.support.client import Client
from tests.support.deployment import Deployment, deploy
from tests.support.server import Server
from tests.support.stores import redis_url

pytestmark = pytest.mark.e2e


RELAY_KEY = secrets.token_urlsafe(32)


@define
class Pair:
    a: Deployment
    b: Server


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("pair")
    deployments = deploy("mysql", workdir, SOCKETIO_MESSAGE_QUEUE=redis_url(), SESSION_RELAY_KEY=RELAY_KEY)
    a = next(deployments)
    b = Server(env=dict(a.env), log_path=workdir / "server-b.log").start()
    try:
        yield Pair(a, b)
    finally:
        b.stop()
        next(deployments, None)


async def test_a_value_set_through_one_process_is_read_through_the_other(pair: Pair) -> None:
    async with Client(pair.a.server.url, auth={"token": ""}) as on_a:
        token = (await on_a.next_token())["token"]
        assert await on_a.call("demo:set", {"key": "where", "value": "set on A"}) == {"ok": True}
    async with Client(pair.b.url, auth={"token": token}) as on_b:
        assert (await on_b.next_token())["status"] == "resumed"
        assert await on_b.call("demo:get", {"key": "where"}) == {"ok": True, "value": "set on A"}


async def test_a_logout_on_one_process_ends_the_session_on_the_other_at_once(pair: Pair) -> None:
    async with Client(pair.a.server.url, auth={"token": ""}) as on_a:
        await on_a.next_token()
        assert await on_a.call("user:login", {"userId": "bob"}) == {"ok": True}
        token = (await on_a.next_token())["token"]
        async with Client(pair.b.url, auth={"token": token}) as on_b:
            assert (await on_b.next_token())["status"] == "resumed"
            assert await on_b.call("user:securedEvent") == {"ok": True, "userId": "bob"}
            assert await on_a.call("user:logout") == {"ok": True}
            await on_a.next_token()  # A's own fresh session
            pushed = await on_b.next_token(timeout=2)  # pushed because of A, without B asking
            assert (pushed["status"], pushed["errors"]) == ("not_found", "Session Not Found")
            assert pushed["token"] != token
            Token.parse(pushed["token"])
            assert await on_b.call("user:securedEvent") == {"ok": False, "error": "SessionKeyMissing"}
    assert await pair.a.row(token) is None


async def _fifty_writers_per_process(pair: Pair, payload: Callable[[int], dict[str, Any]]) -> str:
    """100 sockets on one token, half on each process, each sending one ``demo:set`` at once."""
    async with Client(pair.a.server.url, auth={"token": ""}) as owner:
        token = (await owner.next_token())["token"]
    writers = [Client(server, auth={"token": token}) for server in [pair.a.server.url] * 50 + [pair.b.url] * 50]
    await asyncio.gather(*(w.__aenter__() for w in writers))
    try:
        acks = await asyncio.gather(*(w.call("demo:set", payload(i), timeout=20) for i, w in enumerate(writers)))
    finally:
        await asyncio.gather(*(w.__aexit__() for w in writers))
    assert acks == [{"ok": True}] * 100
    return str(token)


async def test_fifty_writers_per_process_to_distinct_keys_lose_nothing(pair: Pair) -> None:
    token = await _fifty_writers_per_process(pair, lambda i: {"key": f"writer-{i}", "value": i})
    row = await pair.a.row(token)
    assert row is not None
    assert dict(row.data) == {f"writer-{i}": i for i in range(100)}  # 0 keys lost
    assert row.version == 100


async def test_fifty_writers_per_process_to_one_key_leave_a_written_value_and_count_every_write(pair: Pair) -> None:
    token = await _fifty_writers_per_process(pair, lambda i: {"key": "same", "value": f"from-{i}"})
    row = await pair.a.row(token)
    assert row is not None
    assert row.data["same"] in {f"from-{i}" for i in range(100)}
    assert row.version == 100


async def test_ending_a_users_other_sessions_tells_every_process(pair: Pair) -> None:
    async with (
        Client(pair.a.server.url, auth={"token": ""}) as phone,
        Client(pair.b.url, auth={"token": ""}) as laptop,
    ):
        await phone.next_token()
        await laptop.next_token()
        user = f"carol-{id(phone)}"
        for device in (phone, laptop):
            assert await device.call("user:login", {"userId": user}) == {"ok": True}
            await device.next_token()
        listed = await phone.call("user:sessions")
        assert listed["ok"] is True
        assert len(listed["sessions"]) == 2
        assert sorted(s["current"] for s in listed["sessions"]) == [False, True]
        assert all(set(s) == {"id", "created", "lastSeen", "expires", "current"} for s in listed["sessions"])
        assert await phone.call("user:endOtherSessions") == {"ok": True, "ended": 1}
        pushed = await laptop.next_token(timeout=2)
        assert pushed["status"] == "not_found"
        assert await laptop.call("user:securedEvent") == {"ok": False, "error": "SessionKeyMissing"}
        assert (await phone.call("user:securedEvent"))["ok"] is True
        assert len((await phone.call("user:sessions"))["sessions"]) == 1


async def test_a_forged_relay_message_ends_nothing(pair: Pair) -> None:
    """Anyone who can publish on Redis, and has a table dump's digests, still cannot end a session."""
    async with Client(pair.b.url, auth={"token": ""}) as victim:
        token = (await victim.next_token())["token"]
        assert await victim.call("user:login", {"userId": "victim"}) == {"ok": True}
        token = (await victim.next_token())["token"]
        digest = Token(token).digest.hex()
        channel = f"socketio_session:{pair.a.env['SESSION_TABLE']}:ended"
        body = json.dumps({"origin": "forger", "at": time.time(), "digests": [digest]}).encode()
        forgeries = [
            body,  # the old, unauthenticated shape
            sign(b"a key that is not the relay key, but long enough", body),
            sign(RELAY_KEY.encode(), body).replace(b"forger", b"forgeR"),  # tampered after signing
            sign(
                RELAY_KEY.encode(),
                json.dumps({"origin": "forger", "at": time.time() - 3600, "digests": [digest]}).encode(),
            ),  # replayed
        ]
        publisher = redis.Redis.from_url(redis_url())
        try:
            for forged in forgeries:
                assert await publisher.publish(channel, forged) == 2  # both processes listen
        finally:
            await publisher.aclose()
        await asyncio.sleep(1)
        assert victim.no_more_tokens()  # nothing pushed: the session was not ended
        assert await victim.call("user:securedEvent") == {"ok": True, "userId": "victim"}
    assert await pair.a.row(token) is not None
    for log in (pair.a.server.log(), pair.b.log()):
        # The first is reported at once; the next ones are counted into a line a minute later, not one each.
        assert log.count("relay messages on") == 1
        assert "WARNING socketio_session.relay dropped 1 relay messages" in log


def test_the_two_processes_logged_no_traceback(pair: Pair, tmp_path: Path) -> None:
    assert "Traceback" not in pair.a.server.log()
    assert "Traceback" not in pair.b.log()
