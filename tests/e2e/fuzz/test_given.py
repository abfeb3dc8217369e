"""The fuzz: Hypothesis sequences of events with any payload, checked after every event and example.

What is checked is stated in tests/e2e/fuzz/invariants.py (invariants 1-6); the exact
answers come from tests/e2e/fuzz/model.py. How to run the fuzz: tests/e2e/fuzz/__init__.py.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.e2e.fuzz.wire import Wire
from tests.support.wire_strategies import (
    Action,
    IdRef,
    Special,
    TokenRef,
    any_actions,
    call_actions,
    get_token_actions,
    store_actions,
    user_actions,
    weighted,
)

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or (1200 if os.environ.get("HYPOTHESIS_PROFILE") == "full" else 100))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one client and one model per test, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)

starts = weighted((3, st.just("new")), (2, st.just("keep")), (1, st.just("none")))
"""How an example begins: on a fresh session, on whatever the last one left, or on a new socket with no session."""


@FUZZ
@given(start=starts, actions=st.lists(get_token_actions, min_size=1, max_size=4))
@example(start="keep", actions=[Action("getToken", {"token": "A" * 31}, "call")])
@example(start="keep", actions=[Action("getToken", {"token": "A" * 65}, "emit")])
@example(start="new", actions=[Action("getToken", {"token": TokenRef("current")}, "connect")])
@example(start="new", actions=[Action("getToken", {"token": "' OR 1=1 -- ' OR 1=1 -- ' OR 1=1 -- ' OR 1="})])
@example(start="none", actions=[Action("getToken", Special.ABSENT, "emit")])
@example(start="new", actions=[Action("getToken", {"token": ""}, "emit", ("extra",))])
@example(start="new", actions=[Action("getToken", {"token": -(10**100), "blob": b"\x00\x01"}, "emit")])
@example(start="keep", actions=[Action("getToken", {"token": "A" * 40 + "\ud83d"}, "call")])
async def test_get_token_payloads(wire: Wire, start: str, actions: list[Action]) -> None:
    """getToken with any payload: a well-formed gotToken with the status the model predicts.

    Invariants 1-5 hold after every example; the status is exactly created (empty or absent
    token), resumed (a live token of this test, kept), not_found (a well-formed unknown or
    ended token) or invalid (anything else, more than one argument included), and a new
    token is fresh. Sent as a plain emit, with an ack (equal to the gotToken) and as
    Socket.IO ``auth``.
    """
    await wire.run(start, actions)


@FUZZ
@given(start=starts, actions=st.lists(store_actions, min_size=1, max_size=4))
@example(start="new", actions=[Action("demo:set", {"key": "k", "value": float("nan")})])
@example(start="new", actions=[Action("demo:set", {"key": "$.a[0]", "value": {"😀": [b"\x00", 1]}})])
@example(start="new", actions=[Action("demo:set", {"key": "-x", "value": "x" * 70_000})])
@example(start="none", actions=[Action("demo:set", {"key": "k", "value": 1}), Action("demo:get", {"key": "k"})])
@example(start="new", actions=[Action("demo:set", {"key": "n", "value": [10**100, -(10**99)]})])
@example(start="new", actions=[Action("demo:set", {"key": "\ud800", "value": 1})])
@example(start="new", actions=[Action("demo:set", {"key": "k", "value": {"a": "😀\udfff"}})])
@example(start="new", actions=[Action("demo:set", {"key": "k", "value": 1}, "call", ({"key": "k"},))])
async def test_demo_set_and_get_payloads(wire: Wire, start: str, actions: list[Action]) -> None:
    """demo:set / demo:get with any key and value: exactly the model's answer, and durable when accepted.

    Invariants 1-6 hold: a bad payload is InvalidPayload (so is more than one argument), a
    bad key InvalidKey, a value that is not JSON (NaN, Infinity, bytes, an integer of more
    than 100 characters, a lone surrogate) InvalidValue, a session that would grow past
    SESSION_MAX_BYTES SessionTooLarge (nothing written), no session SessionNotReady; an
    accepted value reads back unchanged from the store, and demo:get answers what the model
    holds ("" for a missing key).
    """
    await wire.run(start, actions)


@FUZZ
@given(start=starts, actions=st.lists(user_actions, min_size=1, max_size=5))
@example(
    start="new",
    actions=[
        Action("user:login", {"userId": "alice"}),
        Action("user:endSession", {"id": IdRef("bystander")}),
        Action("user:sessions", None),
        Action("user:endSession", {"id": IdRef("current")}),
    ],
)
@example(
    start="new",
    actions=[
        Action("user:login", {"userId": "u" * 192}),
        Action("user:login", {"userId": "\ud800"}),
        Action("user:login", {"userId": 10**100}),
        Action("user:login", {"userId": "alice "}),
        Action("user:login", {"userId": "carol"}, "call", ("extra",)),
        Action("user:securedEvent", None),
    ],
)
async def test_user_event_payloads(wire: Wire, start: str, actions: list[Action]) -> None:
    """user:login, securedEvent, logout, sessions and endSession with any payload.

    Invariants 1-5 hold, and the model's answer comes back exactly: login rotates the token
    (gotToken rotated, the old token has no row) and records the owner, and a userId the
    stores cannot keep is InvalidValue with nothing moved; the guarded events are refused
    with SessionKeyMissing without a userId; logout hands out a fresh session; sessions
    lists every session of the owner this test made and never the bystander's; endSession
    ends only the owner's sessions (never the bystander's, whose id it is given too) and,
    for the current one, hands the socket a fresh session.
    """
    await wire.run(start, actions)


@FUZZ
@given(start=starts, actions=st.lists(any_actions, min_size=1, max_size=6))
async def test_mixed_event_sequences(wire: Wire, start: str, actions: list[Action]) -> None:
    """Sequences of every event with any payload: invariants 1-6 hold, with the model's exact answers."""
    await wire.run(start, actions)


@FUZZ
@given(actions=st.lists(call_actions, min_size=2, max_size=8))
async def test_concurrent_bursts(wire: Wire, actions: list[Action]) -> None:
    """Bursts of concurrent events on one socket (python-socketio runs each as its own task).

    The outcome depends on the interleaving, so only the shapes are checked: invariants 1
    and 2 for every answer (no InternalError, no StoreUnavailable from a healthy store, every
    gotToken well-formed), then invariants 3-5: the socket stays usable, the bystander is
    untouched and the server logs nothing alarming.
    """
    await wire.burst(actions)
