"""Fuzz the wire protocol through a real server with what a broken or hostile client may send.

Hypothesis drives one long-lived python-socketio client per test against a real uvicorn
server, on the embedded SQLite store and on MariaDB, with the per-socket ``getToken`` limit
raised so that it does not answer everything with "Too Many Requests". An example is a short
sequence of events (in the burst test, a burst of concurrent ones) with payloads of every
shape: wrong types, nested junk, NaN and Infinity, bytes, huge strings, unicode with 4-byte
emoji, tokens of every length and alphabet, SQL and JSON-path metacharacters
(tests/support/wire_strategies.py). The test keeps a model of the sessions its socket holds
(token, data, owner), so most answers are checked exactly, not only for their shape.

After every event, and then after every example, these invariants must hold:

1. Every ack is an object with a boolean ``ok``; when ``ok`` is false, ``error`` is the name
   of a known error (InvalidKey, InvalidValue, SessionTooLarge, InvalidPayload,
   SessionNotReady, SessionEnded, SessionKeyMissing, StoreUnavailable), never InternalError,
   and no ack or ``gotToken`` carries exception text, a stack trace, SQL or a driver's name.
   In the sequential tests the error is exactly the one the model predicts (so
   StoreUnavailable or SessionEnded, which a healthy store never needs, fail them).
2. Every ``gotToken`` has exactly the keys token, errors, status and expires, with a status
   the protocol knows (created, resumed, expired, not_found, invalid, rotated), the old
   package's error string for it and a token that parses; with the rate limit raised,
   "Too Many Requests" (status rate_limited, no token) is a failure too.
3. The socket stays usable: the server never drops it, and after each example a
   ``demo:set {key: "probe", value: n}`` then ``demo:get {key: "probe"}`` round-trips (the
   socket is given a session first with ``getToken ""`` when it has none).
4. No row changes that should not: a bystander session, created once per test by another
   client and holding known data, reads back identical (data, version, owner, times), and
   its socket is never told its session ended; the fuzzing socket's own row always holds
   exactly what the model says, and tokens that ended have no row.
5. The server log gains no "Traceback", no ERROR line and no driver warning.
6. A ``demo:set`` that is accepted is durable: after resuming the session from the store,
   ``demo:get`` returns the value as JSON round-trips it (NaN and bytes are never accepted).

Running
-------
The default run (100 examples per test: 5 tests x 2 stores = 1,000 cases, about a minute)::

    .venv/bin/pytest tests/e2e/test_fuzz_wire.py -q

The full run (1,200 examples per test: 12,000 cases; prints the count per test)::

    HYPOTHESIS_PROFILE=full .venv/bin/pytest tests/e2e/test_fuzz_wire.py -q --hypothesis-show-statistics

``FUZZ_EXAMPLES=N`` sets the number of examples per test for either run.

Found by this fuzz
------------------
What the fuzz found is kept at the end of this module as regular tests, all fixed now, with
docstrings that say what used to happen: any event sent with two arguments was InternalError
(getToken: no answer); on MariaDB a userId over 191 characters was InternalError after the
token had been rotated silently; a login whose userId no longer fit the session rotated the
token silently too (logins are now one atomic store step); an integer of more than 100
characters got no answer at all (python-engineio dropped the packet; our packet codec now
hands the event a value that is refused by name); a lone-surrogate userId was InternalError;
MariaDB refused values nested 31+ levels as InvalidKey or StoreUnavailable. Some generators
still leave such inputs out (tests/support/wire_strategies.py); the regression tests cover them.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from application.user_sessions import public_id
from domain.errors import MalformedToken
from domain.session import Session
from domain.token import Token
from domain.values import MAX_USER_ID_CHARS, MAX_VALUE_DEPTH
from tests.e2e.conftest import Deployment, _deploy
from tests.support.client import Client
from tests.support.wire_strategies import (
    SESSION_MAX_BYTES,
    WIRE_LIMIT,
    Action,
    IdRef,
    Special,
    TokenRef,
    any_actions,
    call_actions,
    depth,
    get_token_actions,
    store_actions,
    user_actions,
    weighted,
    wire_chars,
)

pytestmark = pytest.mark.e2e

MAX_BYTES = SESSION_MAX_BYTES
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

KNOWN_ERRORS = frozenset(
    {
        "InvalidKey",
        "InvalidValue",
        "SessionTooLarge",
        "InvalidPayload",
        "SessionNotReady",
        "SessionEnded",
        "SessionKeyMissing",
        "StoreUnavailable",
    }
)
TOKEN_ERRORS = {
    "created": "",
    "resumed": "",
    "rotated": "",
    "expired": "Session Expired",
    "not_found": "Session Not Found",
    "invalid": "Session Not Found",
}
# Lower-cased fragments that only exception text, a trace, SQL or a driver would put on the wire.
LEAKS = ("traceback", "error:", "exception", 'file "', "pymysql", "aiomysql", "sqlite", "select ", "update ", "insert ")
# Server log lines that mean something went wrong.
LOG_ALARMS = ("Traceback", " ERROR ", "ERROR:", "Task exception", "Warning:")

OK = "ok"
starts = weighted((3, st.just("new")), (2, st.just("keep")), (1, st.just("none")))
"""How an example begins: on a fresh session, on whatever the last one left, or on a new socket with no session."""


# -- helpers -------------------------------------------------------------------------------------


def short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def canonical(value: Any) -> str:
    """JSON text that tells apart what JSON tells apart (1 and 1.0, key sets), not key order."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)


def doc_size(data: dict[str, Any]) -> int:
    """The session's size as the server measures it: compact UTF-8 JSON."""
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode())


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def assert_no_leak(message: dict[str, Any], context: str, echo: tuple[str, ...] = ()) -> None:
    """No exception text, SQL or driver name in the server's own words (echoed user data aside)."""
    own = {key: value for key, value in message.items() if key not in echo}
    for text in strings_in(own):
        found = [leak for leak in LEAKS if leak in text.lower()]
        assert not found, f"{context}: the server put {found} on the wire: {short(message)}"


def check_token_message(message: Any, context: str) -> dict[str, Any]:
    """Invariant 2: a well-formed gotToken (or getToken ack)."""
    assert isinstance(message, dict), f"{context}: gotToken is not an object: {short(message)}"
    assert set(message) == {"token", "errors", "status", "expires"}, f"{context}: gotToken keys: {short(message)}"
    status = message["status"]
    assert status in TOKEN_ERRORS, f"{context}: unknown status: {short(message)}"
    assert message["errors"] == TOKEN_ERRORS[status], f"{context}: errors does not match status: {short(message)}"
    assert type(message["expires"]) is int, f"{context}: expires: {short(message)}"
    Token.parse(message["token"])
    assert_no_leak(message, context)
    return message


def check_ack(ack: Any, context: str, echo: tuple[str, ...] = ()) -> dict[str, Any]:
    """Invariant 1: an object with a boolean ``ok``; a refusal is a known error's name."""
    assert isinstance(ack, dict), f"{context}: the ack is not an object: {short(ack)}"
    assert type(ack.get("ok")) is bool, f"{context}: the ack has no boolean ok: {short(ack)}"
    if not ack["ok"]:
        assert ack.get("error") != "InternalError", f"{context}: InternalError for client input"
        assert set(ack) == {"ok", "error"}, f"{context}: refusal keys: {short(ack)}"
        assert ack["error"] in KNOWN_ERRORS, f"{context}: unknown error: {short(ack)}"
    assert_no_leak(ack, context, echo)
    return ack


def wire_args(payload: Any, extra: tuple[Any, ...] = ()) -> Any:
    """The ``data`` argument of python-socketio's emit/call for ``payload`` (and ``extra`` arguments)."""
    if extra:
        return (received(payload), *extra)  # a tuple is sent as several arguments
    if payload is Special.ABSENT:
        return None  # the event carries no argument
    if payload is Special.NULL or payload is None:
        return (None,)  # one argument: null
    return payload


def received(payload: Any) -> Any:
    """What the server's handler gets for ``payload``."""
    return None if isinstance(payload, Special) else payload


def well_formed(token: object) -> bool:
    try:
        Token.parse(token)
    except MalformedToken:
        return False
    return True


def valid_key(key: str) -> bool:
    """domain.values.check_key's rule (lone surrogates are not generated)."""
    return 0 < len(key) <= 256 and "\x00" not in key


def refusal(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def accepted(ack: dict[str, Any], fields: set[str], context: str) -> None:
    assert ack["ok"] is True, f"{context}: refused: {short(ack)}"
    assert set(ack) == {"ok", *fields}, f"{context}: ack keys: {short(ack)}"


# -- the fuzzing socket and its model ------------------------------------------------------------


@dataclass
class Known:
    """What a session holds, as far as the test knows."""

    data: dict[str, Any] = field(default_factory=dict)
    user: str | None = None


class Wire:
    """One fuzzing socket, a bystander session, and the model the answers are checked against."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.client: Client | None = None
        self.token: str | None = None  # the socket's session; None before any handshake
        self.sessions: dict[str, Known] = {}  # every live session this test made, by token
        self.dead: list[str] = []  # tokens that ended (rotated, logged out, ended by id)
        self.newly_dead: list[str] = []
        self.listed: list[str] = []  # ids from the last user:sessions
        self.store = deployment.store()
        self.log_start = self.log_offset = 0
        self.probes = 0
        self.bystander: Client | None = None
        self.bystander_user = f"bystander-{secrets.token_hex(8)}"
        self.bystander_token = ""
        self.bystander_row: Session | None = None

    # -- setup and teardown ------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        self.log_start = self.log_offset = self.deployment.server.log_path.stat().st_size
        self.bystander = Client(self.deployment.server.url)
        await self.bystander.__aenter__()
        await self.bystander.get_token("")
        data = {"color": "teal", "$.a": "b", "😀": "🎉", "-lead": -1, "nested": {"l": [1, 2.5, None, True], "s": "'--"}}
        for key, value in data.items():
            assert await self.bystander.call("demo:set", {"key": key, "value": value}) == {"ok": True}
        assert await self.bystander.call("user:login", {"userId": self.bystander_user}) == {"ok": True}
        self.bystander_token = (await self.bystander.next_token())["token"]
        assert await self.bystander.call("demo:set", {"key": "after", "value": [1, {"x": "y"}]}) == {"ok": True}
        self.bystander_row = await self.store.fetch(Token(self.bystander_token).digest)
        assert self.bystander_row is not None
        assert self.bystander_row.user_id == self.bystander_user
        await self.connect()

    async def finish(self) -> None:
        try:
            # Invariant 4, read back through a store of its own, and invariant 5 over the whole test.
            assert await self.deployment.row(self.bystander_token) == self.bystander_row
            assert self.bystander is not None
            assert self.bystander.no_more_tokens()
            log = self.deployment.server.log_path.read_bytes()[self.log_start :].decode(errors="replace")
            assert "Traceback" not in log, log[-4000:]
        finally:
            for client in (self.client, self.bystander):
                if client is not None and client.sio.connected:
                    await client.sio.disconnect()
            await self.store.close()

    async def connect(self, auth: Any = None) -> None:
        """A new socket (no session unless ``auth`` carries a token)."""
        if self.client is not None and self.client.sio.connected:
            await self.client.sio.disconnect()
        self.client = Client(self.deployment.server.url, auth=auth)
        await self.client.__aenter__()
        self.token = None

    @property
    def socket(self) -> Client:
        assert self.client is not None
        return self.client

    @property
    def current(self) -> Known:
        assert self.token is not None
        return self.sessions[self.token]

    # -- one example ---------------------------------------------------------------------------

    async def run(self, start: str, actions: list[Action]) -> None:
        for action in actions:
            assume(wire_chars(action) <= WIRE_LIMIT)
        await self.prepare(start)
        for action in actions:
            await self.act(action)
        await self.after_example()

    async def prepare(self, start: str) -> None:
        if self.client is None or not self.client.sio.connected:
            await self.connect()  # the last example lost the socket (and failed for it)
        if start == "none":
            await self.connect()
        elif start == "new" or self.token is None or doc_size(self.current.data) > MAX_BYTES // 4:
            await self.new_session()

    async def after_example(self) -> None:
        await self.probe()
        await self.check_bystander()
        self.check_log("after the example")

    async def act(self, action: Action) -> None:
        payload = self.resolve(action.payload)
        context = f"{action.event} {action.mode} {short(payload)}" + (
            f" + {short(action.extra)}" if action.extra else ""
        )
        if action.event == "getToken":
            await self.get_token(payload, action.mode, action.extra, context)
        else:
            handlers = {
                "demo:set": self.demo_set,
                "demo:get": self.demo_get,
                "user:login": self.login,
                "user:securedEvent": self.secured,
                "user:logout": self.logout,
                "user:sessions": self.list_sessions,
                "user:endSession": self.end_session,
            }
            await handlers[action.event](payload, context)
        assert self.socket.sio.connected, f"{context}: the server dropped the socket"
        assert self.socket.no_more_tokens(), f"{context}: unexpected gotToken {self.socket.tokens.get_nowait()}"
        await self.check_rows(context)
        self.check_log(context)

    # -- resolving references to this test's tokens --------------------------------------------

    def tokens(self, which: str) -> list[str]:
        if which == "current":
            return [self.token] if self.token is not None else []
        if which == "left_behind":
            return [token for token in self.sessions if token != self.token]
        return list(self.dead)

    def resolve(self, payload: Any) -> Any:
        if not isinstance(payload, dict):
            return payload
        return {key: self.resolve_ref(value) for key, value in payload.items()}

    def resolve_ref(self, value: Any) -> Any:
        if isinstance(value, TokenRef):
            pool = self.tokens(value.which)
            return pool[value.index % len(pool)] if pool else Token.generate().value
        if isinstance(value, IdRef):
            if value.which == "bystander":
                return public_id(Token(self.bystander_token).digest)
            if value.which == "listed":
                ids = self.listed
            else:
                ids = [public_id(Token(token).digest) for token in self.tokens(value.which)]
            return ids[value.index % len(ids)] if ids else "0" * 24
        return value

    # -- sending ----------------------------------------------------------------------------------

    async def call(self, name: str, payload: Any) -> Any:
        """Send a fuzzed event and note its outcome for --hypothesis-show-statistics."""
        ack = await self.socket.call(name, wire_args(payload))
        if isinstance(ack, dict) and "ok" in ack:
            event(f"{name} -> {'ok' if ack.get('ok') else ack.get('error')}")
        return ack

    def took_token(self, message: dict[str, Any], expected: str, presented: Any, context: str) -> None:
        """Check a handshake's answer against the model and move the socket to its session."""
        event(f"getToken -> {message['status']}")
        assert message["status"] == expected, f"{context}: expected {expected}, got {short(message)}"
        if expected == "resumed":
            assert message["token"] == presented, f"{context}: resumed another token"
            self.token = presented
            return
        token = message["token"]
        assert token != presented, f"{context}: adopted the presented token"
        assert token not in self.sessions, f"{context}: handed out a live token again"
        assert token not in self.dead, f"{context}: handed out an ended token again"
        self.sessions[token] = Known()
        self.token = token

    def moved(self, message: dict[str, Any], status: str, context: str, keep: Known | None = None) -> None:
        """The server moved the socket to another token (rotation, logout, session ended)."""
        check_token_message(message, context)
        assert message["status"] == status, f"{context}: expected a {status} gotToken, got {short(message)}"
        assert self.token is not None
        old = self.token
        self.sessions.pop(old)
        self.dead.append(old)
        self.newly_dead.append(old)
        assert message["token"] not in self.sessions, f"{context}: moved to a live token"
        assert message["token"] not in self.dead, f"{context}: moved to an ended token"
        self.sessions[message["token"]] = keep if keep is not None else Known()
        self.token = message["token"]

    async def new_session(self) -> None:
        message = check_token_message(await self.socket.get_token(""), "getToken ''")
        self.took_token(message, "created", "", "getToken ''")

    # -- getToken ---------------------------------------------------------------------------------

    def expect_handshake(self, payload: Any, *, connect: bool, extra: bool = False) -> str | None:
        """The status the server must answer, or None when it must not bind a session (connect)."""
        if connect and not (isinstance(payload, dict) and "token" in payload):
            return None
        if extra or not isinstance(payload, dict):
            return "invalid"  # several arguments are not the old client's {token}
        presented = payload.get("token", "")
        if isinstance(presented, str) and presented == "":
            return "created"
        if not well_formed(presented):
            return "invalid"
        return "resumed" if presented in self.sessions else "not_found"

    async def get_token(self, payload: Any, mode: str, extra: tuple[Any, ...], context: str) -> None:
        data = received(payload)
        expected = self.expect_handshake(data, connect=mode == "connect", extra=bool(extra))
        presented = data.get("token", "") if isinstance(data, dict) else None
        if mode == "connect":
            await self.connect(None if payload is Special.ABSENT else payload)
            if expected is None:
                # No session: events that need one say so, and no gotToken comes.
                ack = check_ack(await self.call("demo:get", {"key": "probe"}), context)
                assert ack == refusal("SessionNotReady"), f"{context}: {short(ack)}"
                return
            message = await self.socket.next_token()
        elif mode == "emit":
            await self.socket.sio.emit("getToken", wire_args(payload, extra))
            message = await self.socket.next_token()
        else:
            ack = await self.socket.call("getToken", wire_args(payload, extra))
            message = await self.socket.next_token()
            assert ack == message, f"{context}: the ack {short(ack)} is not the gotToken {short(message)}"
        check_token_message(message, context)
        assert expected is not None
        self.took_token(message, expected, presented, context)

    # -- demo:set / demo:get ----------------------------------------------------------------------

    def expect_set(self, payload: Any) -> str:
        """What demo:set must answer: ``ok`` or the name of the error, in the server's order of checks."""
        if not isinstance(payload, dict) or not isinstance(payload.get("key"), str) or "value" not in payload:
            return "InvalidPayload"
        key, value = payload["key"], payload["value"]
        if not valid_key(key):
            return "InvalidKey"
        if depth(value) > MAX_VALUE_DEPTH:
            return "InvalidValue"
        try:
            text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            return "InvalidValue"
        if self.token is None:
            return "SessionNotReady"
        if len(key.encode()) + len(text.encode()) > MAX_BYTES:
            return "SessionTooLarge"
        return self.fits({**self.current.data, key: json.loads(text)})

    def fits(self, data: dict[str, Any]) -> str:
        """``ok`` if ``data`` is within SESSION_MAX_BYTES (compact UTF-8 JSON, on every store), else SessionTooLarge."""
        return OK if doc_size(data) <= MAX_BYTES else "SessionTooLarge"

    async def demo_set(self, payload: Any, context: str) -> None:
        data = received(payload)
        expected = self.expect_set(data)
        ack = check_ack(await self.call("demo:set", payload), context)
        if expected != OK:
            assert ack == refusal(expected), f"{context}: expected {expected}, got {short(ack)}"
            return
        assert ack == {"ok": True}, f"{context}: {short(ack)}"
        key, value = data["key"], json.loads(json.dumps(data["value"]))
        self.current.data[key] = value
        # Invariant 6: durable, and read back as stored once the session is resumed from the store.
        assert self.token is not None
        answer = await self.call("getToken", {"token": self.token})
        message = check_token_message(await self.socket.next_token(), context)
        assert answer == message, f"{context}: the ack {short(answer)} is not the gotToken {short(message)}"
        self.took_token(message, "resumed", self.token, context)
        got = check_ack(await self.call("demo:get", {"key": key}), context, echo=("value",))
        accepted(got, {"value"}, context)
        assert canonical(got["value"]) == canonical(value), f"{context}: read back {short(got['value'])}"

    async def demo_get(self, payload: Any, context: str) -> None:
        data = received(payload)
        ack = check_ack(await self.call("demo:get", payload), context, echo=("value",))
        if not isinstance(data, dict) or not isinstance(data.get("key"), str):
            assert ack == refusal("InvalidPayload"), f"{context}: {short(ack)}"
        elif self.token is None:
            assert ack == refusal("SessionNotReady"), f"{context}: {short(ack)}"
        else:
            accepted(ack, {"value"}, context)
            want = self.current.data.get(data["key"], "")
            assert canonical(ack["value"]) == canonical(want), f"{context}: got {short(ack['value'])}"

    # -- user events ------------------------------------------------------------------------------

    async def login(self, payload: Any, context: str) -> None:
        data = received(payload)
        user_id = data.get("userId") if isinstance(data, dict) else None
        valid = isinstance(user_id, str | int) and not isinstance(user_id, bool) and str(user_id) != ""
        ack = check_ack(await self.call("user:login", payload), context)
        if not valid:
            assert ack == refusal("InvalidPayload"), f"{context}: {short(ack)}"
            return
        text = str(user_id)
        if len(text) > MAX_USER_ID_CHARS or "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            assert ack == refusal("InvalidValue"), f"{context}: {short(ack)}"  # refused before anything moved
            return
        if self.token is None:
            assert ack == refusal("SessionNotReady"), f"{context}: {short(ack)}"
            return
        # A login as another owner than the one recorded starts from empty data.
        kept = self.current.data if self.current.user in (None, text) else {}
        if self.fits({**kept, "userId": user_id}) != OK:
            # A login lands whole or not at all: refused, the token unchanged.
            assert ack == refusal("SessionTooLarge"), f"{context}: {short(ack)}"
            return
        assert ack == {"ok": True}, f"{context}: {short(ack)}"
        # A new token (no fixation), the owner recorded and userId stored.
        known = Known({**kept, "userId": user_id}, text)
        self.moved(await self.socket.next_token(), "rotated", context, keep=known)

    def guard(self, *keys: str) -> str | None:
        """The refusal of a ``guarded(*keys, user=True)`` event for the current state, if any."""
        if self.token is None:
            return "SessionNotReady"
        if any(key not in self.current.data for key in keys) or self.current.user is None:
            return "SessionKeyMissing"
        return None

    async def secured(self, payload: Any, context: str) -> None:
        ack = check_ack(await self.call("user:securedEvent", payload), context, echo=("userId",))
        refused = self.guard("userId")
        if refused is not None:
            assert ack == refusal(refused), f"{context}: {short(ack)}"
            return
        accepted(ack, {"userId"}, context)
        assert canonical(ack["userId"]) == canonical(self.current.data["userId"]), f"{context}: {short(ack)}"

    async def logout(self, payload: Any, context: str) -> None:
        ack = check_ack(await self.call("user:logout", payload), context)
        if self.token is None:
            assert ack == refusal("SessionNotReady"), f"{context}: {short(ack)}"
            return
        assert ack == {"ok": True}, f"{context}: {short(ack)}"
        self.moved(await self.socket.next_token(), "created", context)

    async def list_sessions(self, payload: Any, context: str) -> None:
        ack = check_ack(await self.call("user:sessions", payload), context)
        refused = self.guard()
        if refused is not None:
            assert ack == refusal(refused), f"{context}: {short(ack)}"
            return
        accepted(ack, {"sessions"}, context)
        assert isinstance(ack["sessions"], list), f"{context}: {short(ack)}"
        for entry in ack["sessions"]:
            assert isinstance(entry, dict), short(ack)
            assert set(entry) == {"id", "created", "lastSeen", "expires", "current"}, short(entry)
            assert isinstance(entry["id"], str), short(entry)
            assert len(entry["id"]) == 24, short(entry)
            assert type(entry["current"]) is bool, short(entry)
        ids = [entry["id"] for entry in ack["sessions"]]
        assert self.token is not None
        assert [e["id"] for e in ack["sessions"] if e["current"]] == [public_id(Token(self.token).digest)], short(ack)
        user = self.current.user
        mine = {public_id(Token(t).digest) for t, known in self.sessions.items() if known.user == user}
        assert mine <= set(ids), f"{context}: sessions of {user!r} missing from {short(ack)}"
        assert public_id(Token(self.bystander_token).digest) not in ids, f"{context}: lists the bystander"
        self.listed = ids

    async def end_session(self, payload: Any, context: str) -> None:
        data = received(payload)
        ack = check_ack(await self.call("user:endSession", payload), context)
        refused = self.guard()
        if refused is None and (not isinstance(data, dict) or not isinstance(data.get("id"), str)):
            refused = "InvalidPayload"
        if refused is not None:
            assert ack == refusal(refused), f"{context}: {short(ack)}"
            return
        accepted(ack, {"ended"}, context)
        user, target = self.current.user, data["id"]
        mine = [t for t, known in self.sessions.items() if known.user == user and public_id(Token(t).digest) == target]
        if mine:
            assert ack["ended"] == 1, f"{context}: {short(ack)}"
        elif target in self.listed:
            assert ack["ended"] in (0, 1), f"{context}: {short(ack)}"  # another test's session of this user
        else:
            assert ack["ended"] == 0, f"{context}: ended someone else's session: {short(ack)}"
        for token in mine:
            if token == self.token:  # the socket is told at once and handed a fresh session
                self.moved(await self.socket.next_token(), "not_found", context)
            else:
                self.sessions.pop(token)
                self.dead.append(token)
                self.newly_dead.append(token)

    # -- invariants 3, 4 and 5 --------------------------------------------------------------------

    async def check_rows(self, context: str) -> None:
        if self.token is not None:
            row = await self.store.fetch(Token(self.token).digest)
            assert row is not None, f"{context}: the socket's session has no row"
            assert canonical(dict(row.data)) == canonical(self.current.data), (
                f"{context}: the row holds {short(dict(row.data))}, expected {short(self.current.data)}"
            )
            assert row.user_id == self.current.user, f"{context}: owner {row.user_id!r}"
        for token in self.newly_dead:
            assert await self.store.fetch(Token(token).digest) is None, f"{context}: an ended session kept its row"
        self.newly_dead.clear()

    async def probe(self) -> None:
        if self.token is None or doc_size(self.current.data) > MAX_BYTES // 2:
            await self.new_session()
        self.probes += 1
        n = self.probes
        assert await self.socket.call("demo:set", {"key": "probe", "value": n}) == {"ok": True}, "probe: set"
        self.current.data["probe"] = n
        assert await self.socket.call("demo:get", {"key": "probe"}) == {"ok": True, "value": n}, "probe: get"
        assert self.socket.no_more_tokens()
        await self.check_rows("probe")

    async def check_bystander(self) -> None:
        assert self.bystander is not None
        assert await self.store.fetch(Token(self.bystander_token).digest) == self.bystander_row, "bystander changed"
        assert self.bystander.no_more_tokens(), f"the bystander was told {self.bystander.tokens.get_nowait()}"

    def check_log(self, context: str) -> None:
        with self.deployment.server.log_path.open("rb") as log:
            log.seek(self.log_offset)
            new = log.read()
        self.log_offset += len(new)
        text = new.decode(errors="replace")
        alarms = [line for line in text.splitlines() if any(alarm in line for alarm in LOG_ALARMS)]
        assert not alarms, f"{context}: the server logged:\n{text[-4000:]}"

    # -- bursts of concurrent events ----------------------------------------------------------------

    async def burst(self, actions: list[Action]) -> None:
        for action in actions:
            assume(wire_chars(action) <= WIRE_LIMIT)
        await self.prepare("new")
        payloads = [self.resolve(action.payload) for action in actions]
        answers = await asyncio.gather(
            *(
                self.socket.call(action.event, wire_args(payload, action.extra))
                for action, payload in zip(actions, payloads, strict=True)
            ),
            return_exceptions=True,
        )
        for action, payload, answer in zip(actions, payloads, answers, strict=True):
            context = f"burst: {action.event} {short(payload)}"
            assert not isinstance(answer, BaseException), f"{context}: no answer ({answer!r})"
            if action.event == "getToken":
                check_token_message(answer, context)
            else:
                ack = check_ack(answer, context, echo=("value", "userId"))
                assert ack.get("error") != "StoreUnavailable", f"{context}: the store is healthy"
        while not self.socket.no_more_tokens():
            check_token_message(self.socket.tokens.get_nowait(), "burst")
        assert self.socket.sio.connected, "the server dropped the socket during a burst"
        self.check_log(f"burst of {[a.event for a in actions]}")
        # Which session the socket ends on, and what the others hold, is up to the interleaving:
        # the model forgets them and starts over on a fresh session.
        self.sessions.clear()
        self.dead.clear()
        self.listed.clear()
        await self.new_session()
        await self.after_example()


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def fuzz_deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    kind = str(request.param)
    yield from _deploy(
        kind,
        tmp_path_factory.mktemp(f"fuzz-{kind}"),
        SESSION_HANDSHAKE_LIMIT="100000",
        SESSION_MAX_BYTES=str(MAX_BYTES),
    )


@pytest.fixture
async def wire(fuzz_deployment: Deployment) -> AsyncIterator[Wire]:
    fuzzing = Wire(fuzz_deployment)
    await fuzzing.start()
    try:
        yield fuzzing
    finally:
        await fuzzing.finish()


# -- the fuzz ----------------------------------------------------------------------------------------


@FUZZ
@given(start=starts, actions=st.lists(get_token_actions, min_size=1, max_size=4))
@example(start="keep", actions=[Action("getToken", {"token": "A" * 31}, "call")])
@example(start="keep", actions=[Action("getToken", {"token": "A" * 65}, "emit")])
@example(start="new", actions=[Action("getToken", {"token": TokenRef("current")}, "connect")])
@example(start="new", actions=[Action("getToken", {"token": "' OR 1=1 -- ' OR 1=1 -- ' OR 1=1 -- ' OR 1="})])
@example(start="none", actions=[Action("getToken", Special.ABSENT, "emit")])
async def test_get_token_payloads(wire: Wire, start: str, actions: list[Action]) -> None:
    """getToken with any payload: a well-formed gotToken with the status the model predicts.

    Invariants 1-5 of the module docstring hold after every example; the status is exactly
    created (empty or absent token), resumed (a live token of this test, kept), not_found (a
    well-formed unknown or ended token) or invalid (anything else), and a new token is fresh.
    Sent as a plain emit, with an ack (equal to the gotToken) and as Socket.IO ``auth``.
    """
    await wire.run(start, actions)


@FUZZ
@given(start=starts, actions=st.lists(store_actions, min_size=1, max_size=4))
@example(start="new", actions=[Action("demo:set", {"key": "k", "value": float("nan")})])
@example(start="new", actions=[Action("demo:set", {"key": "$.a[0]", "value": {"😀": [b"\x00", 1]}})])
@example(start="new", actions=[Action("demo:set", {"key": "-x", "value": "x" * 70_000})])
@example(start="none", actions=[Action("demo:set", {"key": "k", "value": 1}), Action("demo:get", {"key": "k"})])
async def test_demo_set_and_get_payloads(wire: Wire, start: str, actions: list[Action]) -> None:
    """demo:set / demo:get with any key and value: exactly the model's answer, and durable when accepted.

    Invariants 1-6 of the module docstring hold: a bad payload is InvalidPayload, a bad key
    InvalidKey, a value that is not JSON (NaN, Infinity, bytes) InvalidValue, a session that
    would grow past SESSION_MAX_BYTES SessionTooLarge (nothing written), no session
    SessionNotReady; an accepted value reads back unchanged from the store, and demo:get
    answers what the model holds ("" for a missing key).
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
async def test_user_event_payloads(wire: Wire, start: str, actions: list[Action]) -> None:
    """user:login, securedEvent, logout, sessions and endSession with any payload.

    Invariants 1-5 of the module docstring hold, and the model's answer comes back exactly:
    login rotates the token (gotToken rotated, the old token has no row) and records the
    owner; the guarded events are refused with SessionKeyMissing without a userId; logout
    hands out a fresh session; sessions lists every session of the owner this test made and
    never the bystander's; endSession ends only the owner's sessions (never the bystander's,
    whose id it is given too) and, for the current one, hands the socket a fresh session.
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


# -- Bugs the fuzz found: regular tests that fail until the server is fixed ---------------------------


def deep_list(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def alarms_since(deployment: Deployment, offset: int) -> list[str]:
    text = deployment.server.log_path.read_bytes()[offset:].decode(errors="replace")
    return [line for line in text.splitlines() if any(alarm in line for alarm in LOG_ALARMS)]


async def test_get_token_with_an_extra_argument_is_answered(fuzz_deployment: Deployment) -> None:
    """``getToken`` sent with two arguments is answered (invalid), with a quiet log.

    Found by this fuzz: it used to get no answer at all, and the server logged a TypeError.
    """
    offset = fuzz_deployment.server.log_path.stat().st_size
    async with Client(fuzz_deployment.server.url) as client:
        await client.sio.emit("getToken", ({"token": ""}, "extra"))
        check_token_message(await client.next_token(timeout=3), "getToken with two arguments")
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
async def test_an_extra_argument_is_not_an_internal_error(
    fuzz_deployment: Deployment, event: str, payload: dict[str, Any]
) -> None:
    """Any demo event sent with two arguments is refused by name, not as InternalError.

    Found by this fuzz: the handlers took one payload and failed with a TypeError traceback.
    """
    offset = fuzz_deployment.server.log_path.stat().st_size
    async with Client(fuzz_deployment.server.url) as client:
        await client.get_token("")
        assert await client.call("user:login", {"userId": f"extra-{secrets.token_hex(4)}"}) == {"ok": True}
        ack = check_ack(await client.call(event, (payload, "extra")), f"{event} with two arguments")
        assert ack.get("error") != "InternalError"
    assert alarms_since(fuzz_deployment, offset) == []


@pytest.mark.parametrize("user_id", ["u" * 192, "😀" * 200, "\ud800"], ids=["192-chars", "200-emoji", "lone-surrogate"])
async def test_a_user_id_the_store_cannot_keep_is_refused_before_rotating(
    fuzz_deployment: Deployment, user_id: str
) -> None:
    """user:login with a userId the store cannot keep is refused (InvalidValue) before anything moves.

    Found by this fuzz; what it did before:

    On MariaDB the user_id column is VARCHAR(191): a longer id raises pymysql's DataError
    1406 "Data too long for column 'user_id'" (a traceback in the log, InternalError on the
    wire). ``SessionHandle.login`` has already renamed the row to a new token by then and the
    failure skips the gotToken announcement: the client keeps a token that no longer resumes
    ("Session Not Found" on its next connection), and the session it had is unreachable.
    The embedded store keeps such ids. (A lone surrogate was the same InternalError on both
    stores until login checked its values first; it is now refused as InvalidValue.)
    Expected: accepted, or refused by name with the token unchanged.
    """
    offset = fuzz_deployment.server.log_path.stat().st_size
    async with Client(fuzz_deployment.server.url) as client:
        token = (await client.get_token(""))["token"]
        ack = check_ack(await client.call("user:login", {"userId": user_id}), "user:login")
        if ack["ok"]:
            rotated = check_token_message(await client.next_token(), "login")
            assert rotated["status"] == "rotated"
            assert await client.call("user:securedEvent") == {"ok": True, "userId": user_id}
        else:
            assert client.no_more_tokens(), "refused, yet the token was rotated"
            row = await fuzz_deployment.row(token)
            assert row is not None
            assert row.user_id is None
    assert alarms_since(fuzz_deployment, offset) == []


@pytest.mark.parametrize("levels", [31, 32, 40])
async def test_a_deeply_nested_value_is_kept_or_refused_as_invalid_value(
    fuzz_deployment: Deployment, levels: int
) -> None:
    """demo:set of a value nested 31 or more levels deep is refused as InvalidValue on every store.

    Found by this fuzz; what it did before:

    MariaDB's JSON functions stop at 32 levels (warning 4040, "Limit of 32 on JSON nested
    structures depth"); the session document adds one. At 31 levels JSON_SET yields NULL and
    the store reports InvalidKey; from 32 on, JSON_EXTRACT's warning becomes an error under
    STRICT_ALL_TABLES and the store reports StoreUnavailable, though the store is fine. The
    embedded store keeps such values. Expected: kept, or refused as InvalidValue on every store.
    """
    async with Client(fuzz_deployment.server.url) as client:
        await client.get_token("")
        ack = check_ack(await client.call("demo:set", {"key": "deep", "value": deep_list(levels)}), "demo:set")
        assert ack in ({"ok": True}, refusal("InvalidValue")), ack
        if ack["ok"]:
            assert await client.call("demo:get", {"key": "deep"}) == {"ok": True, "value": deep_list(levels)}


async def test_an_integer_of_more_than_100_characters_is_answered(fuzz_deployment: Deployment) -> None:
    """A payload holding an integer of more than 100 characters is answered (adapters/socketio/packet_json.py).

    Found by this fuzz; what it did before:

    python-engineio's JSON reader (engineio/json.py, ``_safe_int``) refuses such integers, so
    python-socketio drops the whole packet: no ack and no gotToken, the client waits until its
    timeout, and the server logs "message async handler error" with a ValueError("Integer is
    too large") traceback. When the packet had binary attachments, each attachment is then
    read as a packet of its own: one more traceback each. Expected: an answer (the value
    stored or refused by name; an invalid-token gotToken) and a quiet log.
    """
    offset = fuzz_deployment.server.log_path.stat().st_size
    async with Client(fuzz_deployment.server.url) as client:
        await client.get_token("")
        ack = check_ack(await client.call("demo:set", {"key": "n", "value": 10**100}, timeout=2), "demo:set")
        assert ack in ({"ok": True}, refusal("InvalidValue"), refusal("InvalidPayload")), ack
        await client.sio.emit("getToken", {"token": -(10**100), "blob": b"\x00\x01"})
        check_token_message(await client.next_token(timeout=2), "getToken")
    assert alarms_since(fuzz_deployment, offset) == []


async def test_a_login_that_does_not_fit_leaves_the_client_on_a_dead_token(fuzz_deployment: Deployment) -> None:
    """user:login on a session with no room left for userId: refused, and nothing moved.

    Found by this fuzz; what it did before:

    ``SessionHandle.login`` renames the row to a new token and records the owner before it
    writes userId; that write fails with SessionTooLarge, the exception skips the gotToken
    announcement, and the client is left holding the old token, which has no row any more: its
    next connection gets "Session Not Found" and a fresh, empty session (the data is lost to
    it), while the server-side session under the new token is owned by the user but never
    reached again. Expected: refused with nothing changed (the old token still resumes), or
    accepted with the gotToken push.
    """
    async with Client(fuzz_deployment.server.url) as client:
        token = (await client.get_token(""))["token"]
        filler = "x" * (MAX_BYTES - len('{"fill":""}') - 5)
        assert await client.call("demo:set", {"key": "fill", "value": filler}) == {"ok": True}
        ack = check_ack(await client.call("user:login", {"userId": "alice"}), "user:login")
        if ack["ok"]:
            assert check_token_message(await client.next_token(), "login")["status"] == "rotated"
        else:
            assert ack == refusal("SessionTooLarge")
            assert client.no_more_tokens()
            row = await fuzz_deployment.row(token)
            assert row is not None, "refused, but the client's token no longer has a session"
            assert row.user_id is None
