"""Hostile clients cannot fill the database, read another user's data, or outlive expiry.

Each test drives a real server (SQLite and MariaDB where the store matters)
through real clients, and checks what the store holds afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from domain.token import Token
from tests.support.client import Client
from tests.support.deployment import Deployment, deploy
from tests.support.sqlite_lock import locked_by_another_process

pytestmark = pytest.mark.e2e

KINDS = ["sqlite", "mysql"]


# uvicorn takes the client's address from X-Forwarded-For when the peer is a trusted proxy, and
# 127.0.0.1 (every test client) is one by default: these servers trust none, as for direct clients.
DIRECT = ("--no-proxy-headers",)


def deploy_kind(request: pytest.FixtureRequest, tmp_path: Path, **settings: str) -> Iterator[Deployment]:
    return deploy(str(request.param), tmp_path, migrate=True, flags=DIRECT, **settings)


# -- rows per client address ---------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def per_address(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    # The default limit (60 new sessions per address per window), as a deployment has it.
    yield from deploy_kind(request, tmp_path, SESSION_NEW_PER_ADDRESS="60", SESSION_HANDSHAKE_WINDOW="600")


async def test_a_hundred_fresh_connections_from_one_address_make_at_most_the_limit_of_rows(
    per_address: Deployment,
) -> None:
    statuses: list[str] = []
    tokens: list[str] = []
    for _ in range(100):
        async with Client(per_address.server.url, auth={"token": ""}) as client:
            message = await client.next_token()
            statuses.append(message["status"])
            tokens.append(message["token"])
            if message["status"] == "rate_limited":
                assert message == {"token": "", "errors": "Too Many Requests", "status": "rate_limited"}
    assert statuses.count("created") == 60
    assert statuses.count("rate_limited") == 40
    assert await per_address.count_rows() == 60
    async with Client(per_address.server.url) as client:
        # A token the server never issued would cost a new row: refused too.
        assert (await client.get_token(Token.generate().value))["status"] == "rate_limited"
        # A resume makes no row, so the limit never stands in its way.
        assert (await client.get_token(tokens[0]))["status"] == "resumed"
    assert await per_address.count_rows() == 60


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy("sqlite", tmp_path, flags=DIRECT, SESSION_NEW_PER_ADDRESS="3", SESSION_TRUST_PROXY="1")


async def test_behind_a_trusted_proxy_the_first_forwarded_hop_is_the_address(behind_proxy: Deployment) -> None:
    async def status(forwarded_for: str) -> str:
        headers = {"X-Forwarded-For": forwarded_for}
        async with Client(behind_proxy.server.url, auth={"token": ""}, headers=headers) as client:
            return str((await client.next_token())["status"])

    assert [await status("10.0.0.1, 127.0.0.1") for _ in range(4)] == ["created"] * 3 + ["rate_limited"]
    assert await status("10.0.0.2") == "created"


@pytest.fixture
def untrusted_header(tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy("sqlite", tmp_path, flags=DIRECT, SESSION_NEW_PER_ADDRESS="3")


async def test_without_a_trusted_proxy_a_forwarded_header_changes_nothing(untrusted_header: Deployment) -> None:
    statuses = []
    for n in range(4):
        headers = {"X-Forwarded-For": f"10.0.0.{n}"}  # a client naming a new address each time
        async with Client(untrusted_header.server.url, auth={"token": ""}, headers=headers) as client:
            statuses.append((await client.next_token())["status"])
    assert statuses == ["created"] * 3 + ["rate_limited"]


async def _raw_handshake(url: str, local_address: str) -> dict[str, Any]:
    """A Socket.IO connection from ``local_address`` (raw engine.io over websocket), with ``auth: {token: ""}``."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(ws_url, local_addr=(local_address, 0)) as ws:
        assert str(await ws.recv()).startswith("0{")  # engine.io open
        await ws.send('40{"token":""}')  # Socket.IO connect to "/", with auth
        while True:
            frame = str(await asyncio.wait_for(ws.recv(), 5))
            if frame.startswith('42["gotToken",'):
                return dict(json.loads(frame[2:])[1])


@pytest.fixture
def two_peers(tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy("sqlite", tmp_path, flags=DIRECT, SESSION_NEW_PER_ADDRESS="2")


async def test_each_client_address_has_a_budget_of_its_own(two_peers: Deployment) -> None:
    """python-engineio's environ says 127.0.0.1 for every ASGI client: the peer comes from the ASGI scope."""
    first = [(await _raw_handshake(two_peers.server.url, "127.0.0.1"))["status"] for _ in range(3)]
    second = [(await _raw_handshake(two_peers.server.url, "127.0.0.2"))["status"] for _ in range(3)]
    assert first == ["created", "created", "rate_limited"]
    assert second == ["created", "created", "rate_limited"]
    assert await two_peers.count_rows() == 4


@pytest.fixture
def logout_fan_out(tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy("sqlite", tmp_path, flags=DIRECT, SESSION_NEW_PER_ADDRESS="3")


async def test_a_logout_fanned_out_to_many_sockets_makes_no_more_rows_than_the_limit(
    logout_fan_out: Deployment,
) -> None:
    """Sockets sharing one token are handed fresh sessions when it ends: those count against the address too."""
    url = logout_fan_out.server.url
    async with Client(url, auth={"token": ""}) as owner:
        token = (await owner.next_token())["token"]  # new session 1 of 3
        others = [Client(url, auth={"token": token}) for _ in range(4)]
        for other in others:
            await other.__aenter__()
            assert (await other.next_token())["status"] == "resumed"  # resumes cost nothing
        try:
            assert await owner.call("user:logout") == {"ok": True}
            assert (await owner.next_token())["status"] == "created"  # new session 2 of 3
            pushed = sorted([(await other.next_token(timeout=3))["status"] for other in others])
        finally:
            for other in others:
                await other.__aexit__()
    assert pushed == ["not_found", "rate_limited", "rate_limited", "rate_limited"]  # one more, then refused
    assert await logout_fan_out.count_rows() == 2  # the ended session is gone; two fresh ones


# -- sessions nobody wrote -----------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def short_anonymous(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy_kind(request, tmp_path, SESSION_ANON_TTL="2", SESSION_IDLE_TTL="600")


async def test_a_session_never_written_expires_after_the_anonymous_ttl(short_anonymous: Deployment) -> None:
    async with Client(short_anonymous.server.url, auth={"token": ""}) as client:
        anonymous = (await client.next_token())["token"]
    async with Client(short_anonymous.server.url, auth={"token": ""}) as client:
        written = await client.next_token()
        assert written["expires"] - time.time() < 3  # the anonymous deadline, until the first write
        assert await client.call("demo:set", {"key": "cart", "value": ["tea"]}) == {"ok": True}
    await asyncio.sleep(2.5)
    async with Client(short_anonymous.server.url) as client:
        assert (await client.get_token(anonymous))["status"] == "expired"
        resumed = await client.get_token(written["token"])
        assert resumed["status"] == "resumed"
        assert resumed["expires"] - time.time() > 500  # the first write earned the normal idle TTL
        assert await client.call("demo:get", {"key": "cart"}) == {"ok": True, "value": ["tea"]}


# -- writes queued on one socket -----------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def bounded_writes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy_kind(request, tmp_path, SESSION_MAX_PENDING_WRITES="32")


async def test_a_flood_of_writes_on_one_socket_is_bounded_and_what_was_acked_is_what_is_stored(
    bounded_writes: Deployment,
) -> None:
    async with Client(bounded_writes.server.url, auth={"token": ""}) as client:
        token = (await client.next_token())["token"]
        acks: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        for n in range(200):  # none awaited: python-socketio runs each as its own task

            def acked(reply: Any, n: int = n) -> None:
                acks.put_nowait((n, reply))

            await client.sio.emit("demo:set", {"key": f"k{n}", "value": n}, callback=acked)
        replies = dict([await asyncio.wait_for(acks.get(), 20) for _ in range(200)])
    refused = {n for n, reply in replies.items() if reply == {"ok": False, "error": "TooManyRequests"}}
    accepted = {n for n, reply in replies.items() if reply == {"ok": True}}
    assert refused, "the excess must be refused"
    assert len(accepted) >= 32
    assert refused | accepted == set(range(200))
    row = await bounded_writes.row(token)
    assert row is not None
    assert dict(row.data) == {f"k{n}": n for n in accepted}
    assert row.version == len(accepted)


# -- another user on the same device -------------------------------------------------------------------


@pytest.fixture(scope="module", params=KINDS)
def shared_device(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deploy(str(request.param), tmp_path_factory.mktemp("shared-device"))


async def test_a_login_as_another_user_starts_from_empty_data(shared_device: Deployment) -> None:
    async with Client(shared_device.server.url, auth={"token": ""}) as client:
        await client.next_token()
        assert await client.call("demo:set", {"key": "cart", "value": ["tea"]}) == {"ok": True}
        assert await client.call("user:login", {"userId": "alice"}) == {"ok": True}
        await client.next_token()
        # An anonymous session's first login keeps what was put in it.
        assert await client.call("demo:get", {"key": "cart"}) == {"ok": True, "value": ["tea"]}
        assert await client.call("demo:set", {"key": "secret", "value": "alice's"}) == {"ok": True}
        assert await client.call("user:login", {"userId": "alice"}) == {"ok": True}  # the same user again
        await client.next_token()
        assert await client.call("demo:get", {"key": "secret"}) == {"ok": True, "value": "alice's"}
        assert await client.call("user:login", {"userId": "bob"}) == {"ok": True}
        token = (await client.next_token())["token"]
        assert await client.call("demo:get", {"key": "cart"}) == {"ok": True, "value": ""}
        assert await client.call("demo:get", {"key": "secret"}) == {"ok": True, "value": ""}
        assert await client.call("user:securedEvent") == {"ok": True, "userId": "bob"}
    row = await shared_device.row(token)
    assert row is not None
    assert (dict(row.data), row.user_id) == ({"userId": "bob"}, "bob")


# -- expiry is pushed ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=KINDS)
def short_idle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deploy(str(request.param), tmp_path_factory.mktemp("short-idle"), SESSION_IDLE_TTL="3")


async def test_every_socket_holding_an_expired_session_is_told_within_two_seconds(short_idle: Deployment) -> None:
    async with Client(short_idle.server.url, auth={"token": ""}) as one:
        first = await one.next_token()
        assert await one.call("demo:set", {"key": "cart", "value": ["tea"]}) == {"ok": True}
        async with Client(short_idle.server.url, auth={"token": first["token"]}) as two:
            resumed = await two.next_token()
            assert resumed["status"] == "resumed"
            deadline = resumed["expires"] + 1  # `expires` is whole seconds, rounded down
            await asyncio.sleep(max(0.0, deadline - time.time()))
            # From the deadline on, the old data is never served, whatever the watcher got to.
            assert await one.call("demo:get", {"key": "cart"}) != {"ok": True, "value": ["tea"]}
            for client in (one, two):
                pushed = await client.next_token(timeout=max(0.5, deadline + 2.5 - time.time()))
                assert (pushed["errors"], pushed["status"]) == ("Session Expired", "expired")
                assert pushed["token"] not in ("", first["token"])
            assert time.time() <= deadline + 2.5
            assert await one.call("demo:get", {"key": "cart"}) == {"ok": True, "value": ""}
            assert await two.call("demo:get", {"key": "cart"}) == {"ok": True, "value": ""}


async def test_a_session_kept_alive_by_another_socket_is_not_expired(short_idle: Deployment) -> None:
    async with Client(short_idle.server.url, auth={"token": ""}) as idle:
        token = (await idle.next_token())["token"]
        async with Client(short_idle.server.url, auth={"token": token}) as busy:
            await busy.next_token()
            for n in range(6):  # 6 s of writes, twice the idle TTL; `idle` sends nothing
                assert await busy.call("demo:set", {"key": "n", "value": n}) == {"ok": True}
                await asyncio.sleep(1)
            assert idle.no_more_tokens()
            # Its view is as fresh as its last reload, but it is live: no SessionEnded, no new token.
            seen = await idle.call("demo:get", {"key": "n"})
            assert seen["ok"] is True
            assert seen["value"] in range(6)


# -- the relay between processes -> tests/e2e/test_multiprocess.py ----------------------------------------
# -- packets nested too deep ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deploy("sqlite", tmp_path_factory.mktemp("plain"))


async def test_a_packet_nested_too_deep_is_refused_by_name_with_one_log_line(plain: Deployment) -> None:
    url = plain.server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    deep = "[" * 5000 + "]" * 5000
    async with websockets.connect(url) as ws:
        assert str(await ws.recv()).startswith("0{")  # engine.io open
        await ws.send("40")  # Socket.IO connect to "/"
        assert str(await ws.recv()).startswith("40{")
        for ack_id in (1, 2):
            await ws.send(f'42{ack_id}["demo:set",{{"key":"k","value":{deep}}}]')
            reply = str(await asyncio.wait_for(ws.recv(), 5))
            while not reply.startswith("43"):  # engine.io pings may come in between
                reply = str(await asyncio.wait_for(ws.recv(), 5))
            assert reply == f'43{ack_id}[{{"ok":false,"error":"InvalidPayload"}}]'
    await asyncio.sleep(0.2)
    log = plain.server.log()
    assert "Traceback" not in log
    assert log.count("nested too deep") == 1  # the first at once; a flood adds a line a minute, not one each


# -- the embedded store is bounded too --------------------------------------------------------------------


def _health(url: str) -> tuple[int, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            return response.status, time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - started


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy("sqlite", tmp_path)


async def test_a_sqlite_file_locked_by_another_process_gives_bounded_answers(embedded: Deployment) -> None:
    path = embedded.env["SESSION_STORE_URL"].removeprefix("sqlite:///")
    with locked_by_another_process(path):
        async with Client(embedded.server.url) as client:
            for _ in range(3):
                started = time.monotonic()
                message = await client.get_token("")
                assert message["status"] == "unavailable"
                assert time.monotonic() - started < 2.0
        status, took = await asyncio.to_thread(_health, embedded.server.url)
        assert (status, took < 2.0) == (503, True)
    assert (await asyncio.to_thread(_health, embedded.server.url))[0] == 200
    async with Client(embedded.server.url) as client:
        assert (await client.get_token(""))["status"] == "created"


# -- table names that are SQL words -------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def reserved_table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy_kind(request, tmp_path, SESSION_TABLE="order")


async def test_a_table_named_with_a_reserved_word_works(reserved_table: Deployment) -> None:
    async with Client(reserved_table.server.url, auth={"token": ""}) as client:
        await client.next_token()
        assert await client.call("demo:set", {"key": "k", "value": 1}) == {"ok": True}
        assert await client.call("user:login", {"userId": "dave"}) == {"ok": True}
        token = (await client.next_token())["token"]
    row = await reserved_table.row(token)
    assert row is not None
    assert (dict(row.data), row.user_id) == ({"k": 1, "userId": "dave"}, "dave")


# -- logs ------------------------------------------------------------------------------------------------------


async def test_logs_name_users_by_a_keyed_hash_and_hold_no_engine_io_sid(plain: Deployment) -> None:
    import hashlib

    user = "erin-the-user"
    async with Client(plain.server.url, transports=("polling", "websocket")) as client:  # polls, then upgrades
        await client.get_token("")
        sid = client.sio.eio.sid
        assert await client.call("user:login", {"userId": user}) == {"ok": True}
        await client.next_token()
        assert (await client.call("user:endAllSessions"))["ok"] is True
    await asyncio.sleep(0.2)
    log = plain.server.log()
    assert "sid=<hidden>" in log  # the polling requests and the upgrade were logged, without their sid
    assert sid not in log
    assert user not in log
    assert hashlib.sha256(user.encode()).hexdigest()[:12] not in log
    assert "session rotated" in log
    assert " user=" in log


# -- sessions per user -----------------------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def capped(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy_kind(request, tmp_path, SESSION_MAX_PER_USER="3")


async def test_a_login_beyond_the_cap_ends_the_least_recently_seen_session(capped: Deployment) -> None:
    clients = [Client(capped.server.url, auth={"token": ""}) for _ in range(4)]
    for client in clients:
        await client.__aenter__()
    try:
        for client in clients:
            await client.next_token()
            assert await client.call("user:login", {"userId": "carol"}) == {"ok": True}
            await client.next_token()
            await asyncio.sleep(0.05)  # distinct last-seen instants
        oldest = clients[0]
        pushed = await oldest.next_token(timeout=2)
        assert pushed["status"] == "not_found"
        assert await oldest.call("user:securedEvent") == {"ok": False, "error": "SessionKeyMissing"}
        listed = await clients[3].call("user:sessions")
        assert len(listed["sessions"]) == 3
        for client in clients[1:]:
            assert (await client.call("user:securedEvent"))["ok"] is True
    finally:
        for client in clients:
            await client.__aexit__()


# -- hostile ack packets ------------------------------------------------------------------------------------


class _RawSocket:
    """A Socket.IO client written by hand over Engine.IO's websocket, to send packets no library would."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 1

    async def packet(self, prefix: str, within: float = 30) -> str:
        """The next Socket.IO packet starting with ``prefix``, answering Engine.IO pings meanwhile."""
        async with asyncio.timeout(within):
            while True:
                text = str(await self.ws.recv())
                if text == "2":
                    await self.ws.send("3")
                elif text.startswith(prefix):
                    return text

    async def call(self, event: str, payload: Any) -> Any:
        ack_id, self.next_id = self.next_id, self.next_id + 1
        await self.ws.send(f"42{ack_id}" + json.dumps([event, payload]))
        reply = await self.packet(f"43{ack_id}[")
        return json.loads(reply[len(f"43{ack_id}") :])[0]

    async def notice(self) -> tuple[int, str]:
        """The next delivered notice: its ack id and its text."""
        text = await self.packet("42")
        while '"notice"' not in text:
            text = await self.packet("42")
        digits = text[2 : text.index("[")]
        return int(digits), json.loads(text[len("42") + len(digits) :])[1]["text"]


async def test_a_hostile_ack_packet_changes_nothing_and_never_stops_a_connection_s_deliveries(
    plain: Deployment,
) -> None:
    """Ack id 0 (python-socketio's own counter), ids never issued, no data, null, a number, a string,
    repeats: the connection still receives and acknowledges every message after them, and the log holds
    one line about them and no traceback."""
    url = plain.server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url) as ws, Client(plain.server.url) as sender:
        raw = _RawSocket(ws)
        assert str(await ws.recv()).startswith("0{")  # engine.io open
        await ws.send('40{"token":""}')  # connect with auth: bound at once
        await raw.packet("40{")
        assert (await raw.call("user:login", {"userId": "ack-target"})) == {"ok": True}
        hostile = ["430[]", "430", "430null", "43999[]", "43", "43[]", "431null", "4315"]
        for packet in hostile:
            await ws.send(packet)
        seen = []
        for n in range(3):
            assert (await sender.call("demo:notify", {"userId": "ack-target", "text": f"n{n}"}))["queued"] == 1
            ack_id, text = await raw.notice()
            seen.append(text)
            # Its own id, hostile forms first: no data, null, a number; then repeats of an answered id.
            for packet in (f"43{ack_id}", f"43{ack_id}null", f"43{ack_id}5", f"43{ack_id}[]", f"43{ack_id}[]"):
                await ws.send(packet)
        assert seen == ["n0", "n1", "n2"]
    await asyncio.sleep(0.3)
    log = plain.server.log()
    assert "Traceback" not in log
    assert log.count("dropped") == 1  # a line at once, then at most one a minute with the count
