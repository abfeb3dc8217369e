"""The old package's protocol and our extensions, through a real server and client."""

from __future__ import annotations

import asyncio
import math

import pytest

from domain.token import Token
from tests.support.client import Client
from tests.support.deployment import Deployment

pytestmark = pytest.mark.e2e


async def test_an_empty_token_gets_a_new_one(deployment: Deployment) -> None:
    async with Client(deployment.server.url) as client:
        reply = await client.get_token("")
    assert (reply["errors"], reply["status"]) == ("", "created")
    Token.parse(reply["token"])
    assert isinstance(reply["expires"], int)
    assert await deployment.row(reply["token"]) is not None


async def test_a_live_token_resumes_with_its_data(deployment: Deployment) -> None:
    async with Client(deployment.server.url) as client:
        token = (await client.get_token(""))["token"]
        assert await client.call("demo:set", {"key": "color", "value": "teal"}) == {"ok": True}
    async with Client(deployment.server.url) as client:
        reply = await client.get_token(token)
        assert (reply["token"], reply["errors"], reply["status"]) == (token, "", "resumed")
        assert await client.call("demo:get", {"key": "color"}) == {"ok": True, "value": "teal"}


async def test_an_unknown_token_gets_a_new_one_and_session_not_found(deployment: Deployment) -> None:
    foreign = Token.generate().value
    async with Client(deployment.server.url) as client:
        reply = await client.get_token(foreign)
    assert reply["token"] != foreign
    assert (reply["errors"], reply["status"]) == ("Session Not Found", "not_found")
    assert await deployment.row(foreign) is None


@pytest.mark.parametrize(
    "payload",
    [
        {"token": 12345},
        {"token": "x" * 10_000},
        {"token": "'; DROP TABLE socketio_session; --"},
        {"token": ["a"]},
        {"token": None},
        "just a string",
        [1, 2, 3],
        None,
    ],
    ids=["number", "10kB", "sql", "list", "null", "string-payload", "list-payload", "no-payload"],
)
async def test_a_malformed_token_or_payload_is_invalid(deployment: Deployment, payload: object) -> None:
    async with Client(deployment.server.url) as client:
        if payload is None:
            await client.sio.emit("getToken")
            reply = await client.next_token()
        else:
            reply = await client.get_token(raw=payload, send_raw=True)
        assert (reply["errors"], reply["status"]) == ("Session Not Found", "invalid")
        Token.parse(reply["token"])
        assert await client.call("demo:set", {"key": "still", "value": "usable"}) == {"ok": True}


async def test_the_auth_payload_binds_the_session_at_connect(deployment: Deployment) -> None:
    async with Client(deployment.server.url, auth={"token": ""}) as client:
        created = await client.next_token()
        assert created["status"] == "created"
        assert await client.call("demo:set", {"key": "n", "value": 1}) == {"ok": True}
    async with Client(deployment.server.url, auth={"token": created["token"]}) as client:
        # No getToken round trip: the first event already sees the session.
        assert await client.call("demo:get", {"key": "n"}) == {"ok": True, "value": 1}
        resumed = await client.next_token()
        assert (resumed["token"], resumed["status"], resumed["errors"]) == (created["token"], "resumed", "")


async def test_a_socket_without_auth_token_is_left_alone(deployment: Deployment) -> None:
    rows = await deployment.count_rows()
    async with Client(deployment.server.url) as client, Client(deployment.server.url, auth={"other": 1}):
        await asyncio.sleep(0.3)
        assert client.no_more_tokens()
        assert await client.call("demo:set", {"key": "a", "value": 1}) == {"ok": False, "error": "SessionNotReady"}
        assert await client.call("demo:get", {"key": "a"}) == {"ok": False, "error": "SessionNotReady"}
    assert await deployment.count_rows() == rows  # no orphan rows


async def test_login_rotates_the_token_and_logout_ends_the_session(deployment: Deployment) -> None:
    async with Client(deployment.server.url) as client, Client(deployment.server.url) as other:
        first = (await client.get_token(""))["token"]
        assert (await other.get_token(first))["status"] == "resumed"
        assert await client.call("user:securedEvent") == {"ok": False, "error": "SessionKeyMissing"}
        assert await client.call("user:login", {"userId": "alice"}) == {"ok": True}
        rotated = await client.next_token()
        assert rotated["status"] == "rotated"
        assert rotated["token"] != first
        assert await deployment.row(first) is None
        assert await client.call("user:securedEvent") == {"ok": True, "userId": "alice"}
        # The other socket held the old token: it is told at once with a fresh,
        # empty session of its own (never the rotated token: no fixation), and refused.
        pushed = await other.next_token()
        assert (pushed["status"], pushed["errors"]) == ("not_found", "Session Not Found")
        assert pushed["token"] not in (first, rotated["token"])
        assert await other.call("user:securedEvent") == {"ok": False, "error": "SessionKeyMissing"}
        assert await client.call("user:logout") == {"ok": True}
        fresh = await client.next_token()
        assert (fresh["status"], fresh["errors"]) == ("created", "")
        assert fresh["token"] != rotated["token"]
        assert await deployment.row(rotated["token"]) is None
        assert await client.call("user:securedEvent") == {"ok": False, "error": "SessionKeyMissing"}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"key": "k", "value": math.nan}, "InvalidValue"),
        ({"key": "k", "value": b"\x00binary"}, "InvalidValue"),
        ({"key": "", "value": 1}, "InvalidKey"),
        ({"key": "k", "value": "x" * 5000}, "SessionTooLarge"),
        ({"key": 7, "value": 1}, "InvalidPayload"),
        ("not an object", "InvalidPayload"),
    ],
    ids=["nan", "bytes", "empty-key", "too-large", "key-not-string", "payload-not-object"],
)
async def test_a_bad_write_is_a_named_error_and_the_row_is_unchanged(
    deployment: Deployment, payload: object, error: str
) -> None:
    async with Client(deployment.server.url) as client:
        token = (await client.get_token(""))["token"]
        assert await client.call("demo:set", {"key": "keep", "value": "x" * 3000}) == {"ok": True}
        before = await deployment.row(token)
        assert await client.call("demo:set", payload) == {"ok": False, "error": error}
        assert await deployment.row(token) == before
        assert await client.call("demo:get", {"key": "keep"}) == {"ok": True, "value": "x" * 3000}


async def test_a_write_that_makes_the_session_too_large_is_refused(deployment: Deployment) -> None:
    async with Client(deployment.server.url) as client:
        token = (await client.get_token(""))["token"]
        assert await client.call("demo:set", {"key": "a", "value": "x" * 3000}) == {"ok": True}
        before = await deployment.row(token)
        assert await client.call("demo:set", {"key": "b", "value": "y" * 1500}) == {
            "ok": False,
            "error": "SessionTooLarge",
        }
        assert await deployment.row(token) == before


async def test_health_check_answers(deployment: Deployment) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(deployment.server.url + "/healthz", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read())["status"] == "ok"
