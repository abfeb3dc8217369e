"""The session protocol every transport speaks: ``getToken`` in, ``gotToken`` out, errors by name.

Transport-free on purpose: the Socket.IO adapter uses it, and so can a plain
websocket or HTTP handler (docs/examples/plain_websocket.py) without Socket.IO
installed.

``gotToken`` keeps the old package's shape ``{token, errors}`` (an old client
reads only those) and adds ``status`` and ``expires``. A refused operation is
acknowledged as ``{ok: false, error: "<Name>"}``: the name of a
:class:`domain.errors.SessionError`, never its text or a stack trace.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from application.errors import (
    InternalError,
    InvalidPayload,
    SchemaMissing,
    SessionEnded,
    SessionKeyMissing,
    SessionNotReady,
    StoreUnavailable,
    TooManyRequests,
)
from application.handle import SessionHandle
from application.sessions import Handshake, Status
from domain.errors import InvalidKey, InvalidValue, SessionError, SessionTooLarge
from domain.mailbox import MailboxFull

log = logging.getLogger("socketio_session.protocol")

Message = dict[str, Any]

# The old package's error strings, which its clients may compare against.
_ERRORS = {
    Status.CREATED: "",
    Status.RESUMED: "",
    Status.ROTATED: "",
    Status.EXPIRED: "Session Expired",
    Status.NOT_FOUND: "Session Not Found",
    Status.INVALID: "Session Not Found",
}


# Every error name a client can receive in ``{ok: false, error}``: the names of these classes.
# Your own SessionError subclasses join them. docs/embedding.md lists them; tests/unit/test_protocol.py
# keeps the two in step.
CLIENT_ERRORS: tuple[type[SessionError], ...] = (
    InvalidKey,
    InvalidValue,
    SessionTooLarge,
    InvalidPayload,
    SessionNotReady,
    SessionEnded,
    SessionKeyMissing,
    StoreUnavailable,
    TooManyRequests,
    MailboxFull,
    InternalError,
)
ERROR_NAMES: tuple[str, ...] = tuple(error.__name__ for error in CLIENT_ERRORS)


def token_message(result: Handshake) -> Message:
    """The ``gotToken`` message for a handshake or a rebind."""
    return {
        "token": result.token.value,
        "errors": _ERRORS[result.status],
        "status": result.status.value,
        "expires": int(result.session.expires),
    }


def unavailable_message() -> Message:
    """``gotToken`` when the store cannot be reached: no token, nothing bound."""
    return {"token": "", "errors": "Session Store Unavailable", "status": "unavailable"}


def rate_limited_message() -> Message:
    """``gotToken`` past a handshake limit: no token, nothing written."""
    return {"token": "", "errors": "Too Many Requests", "status": "rate_limited"}


def error_reply(exc: SessionError) -> Message:
    """An event's ack for a refused operation: the error's name, never its text or a trace.

    A table gone while serving (``SchemaMissing``) is, to a client, the store being unavailable.
    """
    return {"ok": False, "error": "StoreUnavailable" if isinstance(exc, SchemaMissing) else exc.name}


def internal_error_reply() -> Message:
    """An event's ack when something failed that is not a :class:`SessionError` (it is logged)."""
    return error_reply(InternalError())


class NotAToken:
    """Stands for a payload that held no usable token field; it never parses as a token."""

    def __repr__(self) -> str:
        return "<not a token>"


NOT_A_TOKEN = NotAToken()


def presented_token(payload: object) -> object:
    """The token a ``getToken`` payload presents: ``{token: "..."}``; "" or a missing field asks for a new one.

    Anything else (not an object, ``token: null``) is returned as :data:`NOT_A_TOKEN`,
    which the handshake treats as a malformed token: a new session, no query.
    """
    if not isinstance(payload, Mapping):
        return NOT_A_TOKEN
    token = payload.get("token", "")
    return NOT_A_TOKEN if token is None else token


class HandshakeLimiter:
    """At most ``limit`` handshakes per key (a socket, a client address) in any ``window`` seconds.

    Each handshake may cost a row, so a client cannot make the server mint
    sessions in a loop. ``now`` is a monotonic clock in seconds.
    """

    def __init__(self, limit: int, window: float, *, now: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a handshake limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._now = now
        self._recent: dict[str, deque[float]] = {}
        self._swept = now()

    def allow(self, key: str) -> bool:
        """Count one handshake for ``key``; False (and not counted) when it is over the limit."""
        now = self._now()
        if now - self._swept >= self.window:
            self._sweep(now)
        recent = self._recent.setdefault(key, deque())
        while recent and now - recent[0] >= self.window:
            recent.popleft()
        if len(recent) >= self.limit:
            return False
        recent.append(now)
        return True

    def _sweep(self, now: float) -> None:
        """Forget every key with nothing inside the window: memory stays bounded by the keys of one window."""
        self._recent = {
            key: recent for key, recent in self._recent.items() if recent and now - recent[-1] < self.window
        }
        self._swept = now

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._recent)

    def forget(self, key: str) -> None:
        """Drop what is known of ``key`` (its connection closed)."""
        self._recent.pop(key, None)


async def answer_handshake(
    handle: SessionHandle,
    presented: object,
    *,
    limiter: HandshakeLimiter | None = None,
    key: str = "",
) -> Message:
    """Run a handshake for ``handle`` and return its ``gotToken`` message; never raises for the client's sake.

    Past ``limiter``'s limit for ``key``, or when the handle's admission
    refuses a new session (a limit per client address, say), the answer is
    "Too Many Requests" and nothing is written; an unreachable store is "Session Store
    Unavailable".
    """
    if limiter is not None and not limiter.allow(key):
        handle.sessions.audit("rate_limited", None)
        return rate_limited_message()
    try:
        return token_message(await handle.handshake(presented))
    except TooManyRequests:
        return rate_limited_message()
    except StoreUnavailable as exc:
        log.warning("handshake failed: %s", exc)
    except Exception:
        log.exception("handshake failed unexpectedly")
    return unavailable_message()
