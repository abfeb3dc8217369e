"""The old README's example, made runnable: login, a secured event, logout, get/set.

Served only with SESSION_DEMO=1: ``user:login`` takes any userId without a
password, so anyone who reaches the server can log in as anyone. A real
application checks credentials before calling ``login`` (docs/embedding.md).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from adapters.socketio import SocketSessions
from application.errors import InvalidPayload, SessionKeyMissing
from application.user_sessions import end_user_sessions, list_user_sessions


def _field(payload: Any, name: str, kinds: tuple[type, ...]) -> Any:
    if not isinstance(payload, dict) or name not in payload or not isinstance(payload[name], kinds):
        raise InvalidPayload(f"expected an object with {name!r}")
    return payload[name]


def _one_payload(handler: Callable[[str, Any], Awaitable[dict[str, Any]]]) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Each demo event takes one payload (or none); more arguments are a malformed event."""

    @functools.wraps(handler)
    async def run(sid: str, *args: Any) -> dict[str, Any]:
        if len(args) > 1:
            raise InvalidPayload("expected one payload")
        return await handler(sid, args[0] if args else None)

    return run


def register_demo_events(sio: socketio.AsyncServer, sessions: SocketSessions) -> None:
    async def login(sid: str, payload: Any = None) -> dict[str, Any]:
        user_id = _field(payload, "userId", (str, int))
        if isinstance(user_id, bool) or str(user_id) == "":
            raise InvalidPayload("userId must be a non-empty string or an integer")
        # One step: a new token (no session fixation), the owner recorded, userId stored.
        await sessions.handle(sid).login(str(user_id), {"userId": user_id})
        return {"ok": True}

    @sessions.guarded("userId", user=True)  # the owner only login records, not a key anyone could set
    async def secured(sid: str, payload: Any = None) -> dict[str, Any]:
        return {"ok": True, "userId": sessions.handle(sid).get("userId")}

    async def logout(sid: str, payload: Any = None) -> dict[str, Any]:
        await sessions.handle(sid).destroy()
        return {"ok": True}

    async def demo_set(sid: str, payload: Any = None) -> dict[str, Any]:
        key = _field(payload, "key", (str,))
        if "value" not in payload:
            raise InvalidPayload("expected an object with 'value'")
        await sessions.handle(sid).set(key, payload["value"])
        return {"ok": True}

    async def demo_get(sid: str, payload: Any = None) -> dict[str, Any]:
        key = _field(payload, "key", (str,))
        return {"ok": True, "value": sessions.handle(sid).get(key)}

    def owner(sid: str) -> str:
        user_id = sessions.handle(sid).session.user_id
        if user_id is None:
            raise SessionKeyMissing("the session has no user: log in first")
        return user_id

    @sessions.guarded(user=True)
    async def list_sessions(sid: str, payload: Any = None) -> dict[str, Any]:
        handle = sessions.handle(sid)
        found = await list_user_sessions(sessions.sessions, owner(sid), current=handle.token)
        return {
            "ok": True,
            "sessions": [
                {"id": s.id, "created": s.created, "lastSeen": s.last_seen, "expires": s.expires, "current": s.current}
                for s in found
            ],
        }

    @sessions.guarded(user=True)
    async def end_session(sid: str, payload: Any = None) -> dict[str, Any]:
        target = _field(payload, "id", (str,))
        return {"ok": True, "ended": await end_user_sessions(sessions.sessions, owner(sid), only=target)}

    @sessions.guarded(user=True)
    async def end_other_sessions(sid: str, payload: Any = None) -> dict[str, Any]:
        keep = sessions.handle(sid).token
        return {"ok": True, "ended": await end_user_sessions(sessions.sessions, owner(sid), keep=keep)}

    async def notify(sid: str, payload: Any = None) -> dict[str, Any]:
        # Any socket may message any user here, as any demo user may log in as anyone.
        user_id = _field(payload, "userId", (str, int))
        text = _field(payload, "text", (str,))
        if isinstance(user_id, bool):
            raise InvalidPayload("userId must be a string or an integer")
        return {"ok": True, "queued": await sessions.send_to_user(str(user_id), "notice", {"text": text})}

    @sessions.guarded(user=True)
    async def end_all_sessions(sid: str, payload: Any = None) -> dict[str, Any]:
        return {"ok": True, "ended": await end_user_sessions(sessions.sessions, owner(sid))}

    # python-socketio's decorators are untyped; registering by call keeps mypy --strict honest.
    for event, handler in {
        "user:login": login,
        "user:securedEvent": secured,
        "user:logout": logout,
        "user:sessions": list_sessions,
        "user:endSession": end_session,
        "user:endOtherSessions": end_other_sessions,
        "user:endAllSessions": end_all_sessions,
        "demo:set": demo_set,
        "demo:get": demo_get,
        "demo:notify": notify,
    }.items():
        # Errors go back by name (SessionError) or as InternalError, never as text.
        sio.on(event, sessions.replies(_one_payload(handler)))
