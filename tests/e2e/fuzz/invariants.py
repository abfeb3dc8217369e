"""What must hold after every event of the fuzz, and then after every example.

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

Invariants 1, 2 and 5 are checked here from what the server sent or logged; 3, 4 and 6 need
the fuzzing socket and its model, and are checked by :class:`tests.e2e.fuzz.wire.Wire`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from domain.token import Token
from tests.support.deployment import Deployment

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
"""Invariant 1: the errors an ack may name."""

TOKEN_ERRORS = {
    "created": "",
    "resumed": "",
    "rotated": "",
    "expired": "Session Expired",
    "not_found": "Session Not Found",
    "invalid": "Session Not Found",
}
"""Invariant 2: the statuses a ``gotToken`` may have, with the old package's error string for each."""

LEAKS = ("traceback", "error:", "exception", 'file "', "pymysql", "aiomysql", "sqlite", "select ", "update ", "insert ")
"""Invariant 1: lower-cased fragments that only exception text, a trace, SQL or a driver would put on the wire."""

LOG_ALARMS = ("Traceback", " ERROR ", "ERROR:", "Task exception", "Warning:")
"""Invariant 5: server log lines that mean something went wrong."""


def short(value: object, limit: int = 300) -> str:
    """``repr(value)``, cut to ``limit`` characters for an assertion message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def canonical(value: Any) -> str:
    """JSON text that tells apart what JSON tells apart (1 and 1.0, key sets), not key order."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)


def strings_in(value: Any) -> Iterator[str]:
    """Every string in ``value``, keys of objects included."""
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
    """Invariant 1: no exception text, SQL or driver name in the server's own words (the ``echo`` fields aside)."""
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


def refusal(error: str) -> dict[str, Any]:
    """The ack of an event refused with ``error``."""
    return {"ok": False, "error": error}


def accepted(ack: dict[str, Any], fields: set[str], context: str) -> None:
    """The ack says ok, with exactly ``fields`` besides."""
    assert ack["ok"] is True, f"{context}: refused: {short(ack)}"
    assert set(ack) == {"ok", *fields}, f"{context}: ack keys: {short(ack)}"


def alarms_in(text: str) -> list[str]:
    """Invariant 5: the lines of a server log that mean something went wrong."""
    return [line for line in text.splitlines() if any(alarm in line for alarm in LOG_ALARMS)]


def alarms_since(deployment: Deployment, offset: int) -> list[str]:
    """Invariant 5: the alarming lines the server logged after byte ``offset`` of its log."""
    return alarms_in(deployment.server.log_path.read_bytes()[offset:].decode(errors="replace"))
