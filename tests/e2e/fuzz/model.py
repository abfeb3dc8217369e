"""The model of the fuzz: what the fuzzing socket's sessions hold, and what the server must answer next.

:class:`Model` knows every session the fuzzing socket made in this test (its token, data and
owner), which one the socket is on, and which tokens ended. Its ``expect_*`` methods state
the server's rules as the answer an event must get in that state, in the server's order of
checks; the fuzzing socket (``tests/e2e/fuzz/wire.py``) sends the event, compares the answer
and then moves the model along with :meth:`Model.adopt`, :meth:`Model.move` and
:meth:`Model.end`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from adapters.socketio.packet_json import MAX_INTEGER_DIGITS
from application.user_sessions import public_id
from domain.errors import MalformedToken
from domain.token import Token
from domain.values import MAX_KEY_CHARS, MAX_USER_ID_CHARS, MAX_VALUE_DEPTH
from tests.support.wire_strategies import SESSION_MAX_BYTES, IdRef, Special, TokenRef, depth

MAX_BYTES = SESSION_MAX_BYTES
"""The fuzzed server's SESSION_MAX_BYTES."""

OK = "ok"
"""What the ``expect_*`` methods return for an event that must be accepted."""

NO_ID = "0" * 24
"""A well-formed public id that names no session."""


@dataclass
class Known:
    """What a session holds, as far as the test knows."""

    data: dict[str, Any] = field(default_factory=dict)
    user: str | None = None


def doc_size(data: dict[str, Any]) -> int:
    """The session's size as the server measures it: compact UTF-8 JSON."""
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode())


def received(payload: Any) -> Any:
    """What the server's handler gets for ``payload``."""
    return None if isinstance(payload, Special) else payload


def well_formed(token: object) -> bool:
    try:
        Token.parse(token)
    except MalformedToken:
        return False
    return True


def has_surrogate(text: str) -> bool:
    """True if ``text`` holds a lone surrogate: it then has no UTF-8 form."""
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def valid_key(key: str) -> bool:
    """domain.values.check_key's rule."""
    return 0 < len(key) <= MAX_KEY_CHARS and "\x00" not in key and not has_surrogate(key)


def oversized(value: Any) -> bool:
    """True if ``value`` holds an integer the packet reader does not parse (more than 100 characters).

    The server gets a value that is not JSON in its place (adapters/socketio/packet_json.py).
    """
    if isinstance(value, dict):
        return any(oversized(item) for item in value.values())
    if isinstance(value, list):
        return any(oversized(item) for item in value)
    return isinstance(value, int) and not isinstance(value, bool) and len(str(value)) > MAX_INTEGER_DIGITS


class Model:
    """The sessions the fuzzing socket made, the one it is on, and the answer each event must get."""

    def __init__(self) -> None:
        self.token: str | None = None  # the socket's session; None before any handshake
        self.sessions: dict[str, Known] = {}  # every live session this test made, by token
        self.dead: list[str] = []  # tokens that ended (rotated, logged out, ended by id)
        self.newly_dead: list[str] = []  # ended since the rows were last checked
        self.listed: list[str] = []  # ids from the last user:sessions
        self.bystander_token = ""  # the other client's session, which nothing may touch

    @property
    def current(self) -> Known:
        assert self.token is not None
        return self.sessions[self.token]

    # -- moving between sessions -------------------------------------------------------------

    def disconnected(self) -> None:
        """The socket was replaced by a new one, which has no session yet."""
        self.token = None

    def adopt(self, token: str) -> None:
        """The socket is on a new, empty session."""
        self.sessions[token] = Known()
        self.token = token

    def resume(self, token: str) -> None:
        """The socket is back on one of its live sessions."""
        self.token = token

    def move(self, token: str, keep: Known | None = None) -> None:
        """The server moved the socket to ``token`` (rotation, logout, session ended); the old one ended."""
        assert self.token is not None
        self.end(self.token)
        self.sessions[token] = keep if keep is not None else Known()
        self.token = token

    def end(self, token: str) -> None:
        """The session of ``token`` ended: its row is gone."""
        self.sessions.pop(token)
        self.dead.append(token)
        self.newly_dead.append(token)

    def forget(self) -> None:
        """Start over: after a burst of concurrent events, what each session holds is up to the interleaving."""
        self.sessions.clear()
        self.dead.clear()
        self.listed.clear()

    # -- references to this test's tokens ----------------------------------------------------

    def tokens(self, which: str) -> list[str]:
        if which == "current":
            return [self.token] if self.token is not None else []
        if which == "left_behind":
            return [token for token in self.sessions if token != self.token]
        return list(self.dead)

    def resolve(self, payload: Any) -> Any:
        """``payload`` with its :class:`TokenRef` and :class:`IdRef` members replaced by what they name now."""
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
            return ids[value.index % len(ids)] if ids else NO_ID
        return value

    # -- the answers the server owes ---------------------------------------------------------

    @staticmethod
    def expect_extra_arguments() -> str:
        """Every event but getToken takes one payload: with more arguments it is refused, whatever the state."""
        return "InvalidPayload"

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

    def expect_set(self, payload: Any) -> str:
        """What demo:set must answer: ``ok`` or the name of the error, in the server's order of checks."""
        if not isinstance(payload, dict) or not isinstance(payload.get("key"), str) or "value" not in payload:
            return "InvalidPayload"
        key, value = payload["key"], payload["value"]
        if not valid_key(key):
            return "InvalidKey"
        if depth(value) > MAX_VALUE_DEPTH or oversized(value):
            return "InvalidValue"
        try:
            text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            return "InvalidValue"
        if has_surrogate(text):
            return "InvalidValue"
        if self.token is None:
            return "SessionNotReady"
        if len(key.encode()) + len(text.encode()) > MAX_BYTES:
            return "SessionTooLarge"
        return self.fits({**self.current.data, key: json.loads(text)})

    def fits(self, data: dict[str, Any]) -> str:
        """``ok`` if ``data`` is within SESSION_MAX_BYTES (compact UTF-8 JSON, on every store), else SessionTooLarge."""
        return OK if doc_size(data) <= MAX_BYTES else "SessionTooLarge"

    def expect_get(self, payload: Any) -> str:
        """What demo:get must answer; when ``ok``, the value is the model's (``""`` for a missing key)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("key"), str):
            return "InvalidPayload"
        if self.token is None:
            return "SessionNotReady"
        return OK

    def expect_login(self, payload: Any) -> tuple[str, Known | None]:
        """What user:login must answer and, when ``ok``, what the session it rotates to holds."""
        user_id = payload.get("userId") if isinstance(payload, dict) else None
        if not isinstance(user_id, str | int) or isinstance(user_id, bool) or oversized(user_id) or user_id == "":
            return "InvalidPayload", None
        text = str(user_id)
        if len(text) > MAX_USER_ID_CHARS or "\x00" in text or has_surrogate(text) or text.endswith(" "):
            return "InvalidValue", None  # refused before anything moves
        if self.token is None:
            return "SessionNotReady", None
        # A login as another owner than the one recorded starts from empty data.
        kept = self.current.data if self.current.user in (None, text) else {}
        if self.fits({**kept, "userId": user_id}) != OK:
            return "SessionTooLarge", None  # a login lands whole or not at all: the token unchanged
        # A new token (no fixation), the owner recorded and userId stored.
        return OK, Known({**kept, "userId": user_id}, text)

    def guard(self, *keys: str) -> str | None:
        """The refusal of a ``guarded(*keys, user=True)`` event for the current state, if any."""
        if self.token is None:
            return "SessionNotReady"
        if any(key not in self.current.data for key in keys) or self.current.user is None:
            return "SessionKeyMissing"
        return None

    def expect_logout(self) -> str:
        """user:logout: a fresh session for the socket, if it has one to leave."""
        return "SessionNotReady" if self.token is None else OK

    def expect_end(self, payload: Any) -> str:
        """What user:endSession must answer (how many it ended: see :meth:`owned`)."""
        refused = self.guard()
        if refused is None and (not isinstance(payload, dict) or not isinstance(payload.get("id"), str)):
            refused = "InvalidPayload"
        return refused if refused is not None else OK

    def owned(self, session_id: str) -> list[str]:
        """The tokens of this test's live sessions of the current owner whose public id is ``session_id``."""
        user = self.current.user
        return [
            token
            for token, known in self.sessions.items()
            if known.user == user and public_id(Token(token).digest) == session_id
        ]

    def owner_ids(self) -> set[str]:
        """The public ids of this test's live sessions of the current owner."""
        user = self.current.user
        return {public_id(Token(token).digest) for token, known in self.sessions.items() if known.user == user}
