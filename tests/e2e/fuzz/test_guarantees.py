"""Guarantees at the edges of the wire protocol, each pinned by a regular test on both stores.

The fuzz draws these inputs too, but only now and then; here they are checked on every run.

Each test states its guarantee in its docstring; the invariants it leans on (a named
refusal, a well-formed gotToken, a quiet log) are those of tests/e2e/fuzz/invariants.py.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from domain.values import MAX_USER_ID_CHARS, MAX_VALUE_DEPTH
from tests.e2e.fuzz.invariants import alarms_since, check_ack, check_token_message, refusal
from tests.e2e.fuzz.model import MAX_BYTES
from tests.support.client import Client
from tests.support.deployment import Deployment

pytestmark = pytest.mark.e2e


def deep_list(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


async def test_a_get_token_with_an_extra_argument_is_answered_as_invalid(fuzz_deployment: Deployment) -> None:
    """``getToken`` sent with two arguments is not the old client's ``{token}``: it gets an ``invalid`` gotToken.

    Answered like any other malformed handshake, with a fresh session and nothing alarming logged.
    """
    offset = fuzz_deployment.server.log_path.stat().st_size
    async with Client(fuzz_deployment.server.url) as client:
        await client.sio.emit("getToken", ({"token": ""}, "extra"))
        message = check_token_message(await client.next_token(timeout=3), "getToken with two arguments")
        assert message["status"] == "invalid", message
    assert alarms_since(fuzz_deployment, offset) == []


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("demo:set", {"key": "k", "value": 1}),
        ("demo:get", {"key": "k"}),
        ("user:login", {"userId": "carol"}),
        ("user:securedEvent", {}),
        ("user:logout", {}),
        ("user:sessions", {}),
        ("user:endSession", {"id": "0" * 24}),
    ],
)
async def test_an_event_with_an_extra_argument_is_answered_by_name(
    fuzz_deployment: Deployment, event: str, payload: dict[str, Any]
) -> None:
    """Every demo event takes one payload: sent with two arguments, it is refused as InvalidPayload, quietly."""
    offset = fuzz_deployment.server.log_path.stat().st_size
    async with Client(fuzz_deployment.server.url) as client:
        await client.get_token("")
        assert await client.call("user:login", {"userId": f"extra-{secrets.token_hex(4)}"}) == {"ok": True}
        ack = check_ack(await client.call(event, (payload, "extra")), f"{event} with two arguments")
        assert ack == refusal("InvalidPayload"), ack
    assert alarms_since(fuzz_deployment, offset) == []


@pytest.mark.parametrize(
    "user_id",
    ["u" * (MAX_USER_ID_CHARS + 1), "😀" * 200, "\ud800"],
    ids=["192-chars", "200-emoji", "lone-surrogate"],
)
async def test_a_user_id_the_store_cannot_keep_is_refused_before_the_token_moves(
    fuzz_deployment: Deployment, user_id: str
) -> None:
    """user:login with a userId no store can keep is refused as InvalidValue, and the token stays.

    A userId is at most 191 characters (MAX_USER_ID_CHARS: MariaDB's indexed VARCHAR) and has
    a UTF-8 form. It is checked before the login rotates anything, so the client keeps a token
    that still names its session, unowned, on every store.
    """
    offset = fuzz_deployment.server.log_path.stat().st_size
    async with Client(fuzz_deployment.server.url) as client:
        token = (await client.get_token(""))["token"]
        ack = check_ack(await client.call("user:login", {"userId": user_id}), "user:login")
        assert ack == refusal("InvalidValue"), ack
        assert client.no_more_tokens(), "refused, yet the token was rotated"
        row = await fuzz_deployment.row(token)
        assert row is not None
        assert row.user_id is None
    assert alarms_since(fuzz_deployment, offset) == []


@pytest.mark.parametrize("levels", [MAX_VALUE_DEPTH + 1, MAX_VALUE_DEPTH + 2, 40])
async def test_a_value_nested_too_deep_is_refused_as_invalid_value_on_every_store(
    fuzz_deployment: Deployment, levels: int
) -> None:
    """demo:set of a value nested more than 30 levels deep (MAX_VALUE_DEPTH) is refused as InvalidValue.

    The same answer on every store: MariaDB's JSON functions stop at 32 levels and the
    session document adds one, so the limit is checked before any store sees the value.
    """
    async with Client(fuzz_deployment.server.url) as client:
        await client.get_token("")
        ack = check_ack(await client.call("demo:set", {"key": "deep", "value": deep_list(levels)}), "demo:set")
        assert ack == refusal("InvalidValue"), ack


async def test_an_integer_of_more_than_100_characters_is_refused_by_name(fuzz_deployment: Deployment) -> None:
    """A payload holding an integer of more than 100 characters is answered, and nothing alarming is logged.

    The packet reader (adapters/socketio/packet_json.py) hands the event a value that is not
    JSON in its place: a write is refused as InvalidValue, a token is ``invalid``, with or
    without binary attachments in the same packet.
    """
    offset = fuzz_deployment.server.log_path.stat().st_size
    async with Client(fuzz_deployment.server.url) as client:
        await client.get_token("")
        ack = check_ack(await client.call("demo:set", {"key": "n", "value": 10**100}, timeout=2), "demo:set")
        assert ack == refusal("InvalidValue"), ack
        await client.sio.emit("getToken", {"token": -(10**100), "blob": b"\x00\x01"})
        message = check_token_message(await client.next_token(timeout=2), "getToken")
        assert message["status"] == "invalid", message
    assert alarms_since(fuzz_deployment, offset) == []


async def test_a_login_that_does_not_fit_changes_nothing(fuzz_deployment: Deployment) -> None:
    """user:login on a session with no room left for userId is refused as SessionTooLarge, and nothing moves.

    A login is one store step: no rotation, no owner, no gotToken, so the client's token
    still names its session.
    """
    async with Client(fuzz_deployment.server.url) as client:
        token = (await client.get_token(""))["token"]
        filler = "x" * (MAX_BYTES - len('{"fill":""}') - 5)
        assert await client.call("demo:set", {"key": "fill", "value": filler}) == {"ok": True}
        ack = check_ack(await client.call("user:login", {"userId": "alice"}), "user:login")
        assert ack == refusal("SessionTooLarge"), ack
        assert client.no_more_tokens()
        row = await fuzz_deployment.row(token)
        assert row is not None, "refused, but the client's token no longer has a session"
        assert row.user_id is None
