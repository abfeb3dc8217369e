"""What goes on the wire: the one place that maps results and errors to messages.

``gotToken`` keeps the old package's shape ``{token, errors}`` (an old client
reads only those) and adds ``status`` and ``expires``.
"""

from __future__ import annotations

from typing import Any

from application.handshake import Handshake, Status
from domain.errors import SessionError

# The old package's error strings, which its clients may compare against.
_ERRORS = {
    Status.CREATED: "",
    Status.RESUMED: "",
    Status.ROTATED: "",
    Status.EXPIRED: "Session Expired",
    Status.NOT_FOUND: "Session Not Found",
    Status.INVALID: "Session Not Found",
}

STORE_UNAVAILABLE: dict[str, Any] = {
    "token": "",
    "errors": "Session Store Unavailable",
    "status": "unavailable",
}


RATE_LIMITED: dict[str, Any] = {
    "token": "",
    "errors": "Too Many Requests",
    "status": "rate_limited",
}


def token_message(result: Handshake) -> dict[str, Any]:
    """The ``gotToken`` message for a handshake or rebind."""
    return {
        "token": result.token.value,
        "errors": _ERRORS[result.status],
        "status": result.status.value,
        "expires": int(result.session.expires),
    }


def error_reply(exc: SessionError) -> dict[str, Any]:
    """An event's ack for a refused operation: the error's name, never its text or a trace."""
    return {"ok": False, "error": exc.name}


INTERNAL_ERROR: dict[str, Any] = {"ok": False, "error": "InternalError"}
