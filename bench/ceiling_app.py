"""The ceiling: the same events and replies as ``entrypoints.asgi:app``, sessions in a dict.

    uvicorn bench.ceiling_app:app --no-access-log --log-level warning

What a user gets without persistence: python-socketio's ``AsyncServer`` and a
plain ``dict`` token -> session. ``getToken`` answers ``gotToken``
``{token, errors, status, expires}``; a connection with ``auth = {token}``
gets its handshake before the connection is acknowledged and ``gotToken``
right after it (the same polling wait as adapters/socketio/transport.py, since
the client drops events that precede the CONNECT packet); ``demo:set`` and
``demo:get`` acknowledge ``{ok: true[, value]}`` or ``{ok: false, error}``.

The mailbox, as bare emits: ``user:login`` records the session's user under a
new token (``gotToken`` with status ``rotated``, then the ack), ``demo:notify``
``{userId, text}`` keeps ``notice`` ``{text}`` in each of the user's sessions (a
dict) and emits it to every socket holding one as ``(payload, {id, sentAt,
replayed}, ack)``; the client's ack drops it, and a socket that binds a session
gets what waits right after its ``gotToken``. No per-connection bookkeeping:
what ours does to deliver each message once per connection is part of what is
measured against this. Nothing survives a restart, and nothing is shared
between processes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import socketio

from entrypoints.bootstrap import tune_gc

IDLE_TTL = 86400.0
ABSOLUTE_TTL = 30 * 86400.0
MAX_BYTES = 65536
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,64}")
_ERRORS = {"created": "", "resumed": "", "rotated": "", "expired": "Session Expired", "not_found": "Session Not Found"}
_ERRORS["invalid"] = "Session Not Found"


class Session:
    __slots__ = ("absolute", "data", "expires", "last_message", "mail", "user")

    def __init__(self, now: float) -> None:
        self.data: dict[str, Any] = {}
        self.absolute = now + ABSOLUTE_TTL
        self.expires = min(now + IDLE_TTL, self.absolute)
        self.user: str | None = None
        self.last_message = 0
        self.mail: dict[int, tuple[str, Any, float]] = {}  # id -> (event, payload, sent_at), until acked


sio = socketio.AsyncServer(async_mode="asgi", max_http_buffer_size=2 * MAX_BYTES + 4096)
sessions: dict[str, Session] = {}  # token -> session
bound: dict[str, str] = {}  # sid -> token
holders: dict[str, set[str]] = {}  # token -> sids bound to it
users: dict[str, set[str]] = {}  # user -> tokens of their sessions
_tasks: set[asyncio.Task[None]] = set()


def _handshake(sid: str, presented: Any) -> dict[str, Any]:
    now = time.time()
    status = "created"
    if presented not in (None, ""):
        if not isinstance(presented, str) or _TOKEN_SHAPE.fullmatch(presented) is None:
            status = "invalid"
        else:
            found = sessions.get(presented)
            if found is None:
                status = "not_found"
            elif now >= found.expires:
                del sessions[presented]
                status = "expired"
            else:
                found.expires = min(max(found.expires, now + IDLE_TTL), found.absolute)
                _bind(sid, presented)
                return _message(presented, found, "resumed")
    token = secrets.token_urlsafe(32)
    session = sessions[token] = Session(now)
    _bind(sid, token)
    return _message(token, session, status)


def _bind(sid: str, token: str) -> None:
    _unbind(sid)
    bound[sid] = token
    holders.setdefault(token, set()).add(sid)


def _unbind(sid: str) -> None:
    token = bound.pop(sid, None)
    if token is not None and token in holders:
        holders[token].discard(sid)
        if not holders[token]:
            del holders[token]


def _message(token: str, session: Session, status: str) -> dict[str, Any]:
    return {"token": token, "errors": _ERRORS[status], "status": status, "expires": int(session.expires)}


def _presented(payload: Any) -> Any:
    return payload.get("token", "") if isinstance(payload, dict) else object()


async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    if isinstance(auth, dict) and "token" in auth:
        message = _handshake(sid, _presented(auth))
        task = asyncio.get_running_loop().create_task(_emit_after_connect(sid, message))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)


async def _emit_after_connect(sid: str, message: dict[str, Any]) -> None:
    for _ in range(100):
        if sio.manager.is_connected(sid, "/"):
            await sio.emit("gotToken", message, to=sid)
            await _replay(sid)
            return
        if sid not in bound:
            return
        await asyncio.sleep(0.001)


async def disconnect(sid: str, reason: Any = None) -> None:
    _unbind(sid)


async def get_token(sid: str, payload: Any = None) -> dict[str, Any]:
    message = _handshake(sid, _presented(payload))
    await sio.emit("gotToken", message, to=sid)
    await _replay(sid)
    return message


def _session_of(sid: str) -> Session | None:
    token = bound.get(sid)
    return sessions.get(token) if token is not None else None


async def demo_set(sid: str, payload: Any = None) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("key"), str) or "value" not in payload:
        return {"ok": False, "error": "InvalidPayload"}
    session = _session_of(sid)
    if session is None:
        return {"ok": False, "error": "SessionNotReady"}
    if not payload["key"]:
        return {"ok": False, "error": "InvalidKey"}
    session.data[payload["key"]] = payload["value"]
    session.expires = min(max(session.expires, time.time() + IDLE_TTL), session.absolute)
    return {"ok": True}


async def demo_get(sid: str, payload: Any = None) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("key"), str):
        return {"ok": False, "error": "InvalidPayload"}
    session = _session_of(sid)
    if session is None:
        return {"ok": False, "error": "SessionNotReady"}
    return {"ok": True, "value": session.data.get(payload["key"], "")}


async def user_login(sid: str, payload: Any = None) -> dict[str, Any]:
    user_id = payload.get("userId") if isinstance(payload, dict) else None
    if not isinstance(user_id, str | int) or isinstance(user_id, bool) or str(user_id) == "":
        return {"ok": False, "error": "InvalidPayload"}
    old = bound.get(sid)
    session = sessions.get(old) if old is not None else None
    if old is None or session is None:
        return {"ok": False, "error": "SessionNotReady"}
    # As ours: the same session under a new token, owned by the user.
    token = secrets.token_urlsafe(32)
    sessions[token] = sessions.pop(old)
    for holder in holders.pop(old, set()):
        _bind(holder, token)
    if session.user is not None:
        users.get(session.user, set()).discard(old)
    session.user = str(user_id)
    users.setdefault(session.user, set()).add(token)
    session.data["userId"] = user_id
    await sio.emit("gotToken", _message(token, session, "rotated"), to=sid)
    return {"ok": True}


async def demo_notify(sid: str, payload: Any = None) -> dict[str, Any]:
    user_id = payload.get("userId") if isinstance(payload, dict) else None
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(user_id, str | int) or isinstance(user_id, bool) or not isinstance(text, str):
        return {"ok": False, "error": "InvalidPayload"}
    now = time.time()
    queued = 0
    for token in list(users.get(str(user_id), ())):
        session = sessions.get(token)
        if session is None or now >= session.expires:
            continue
        session.last_message += 1
        message_id = session.last_message
        session.mail[message_id] = ("notice", {"text": text}, now)
        queued += 1
        for holder in list(holders.get(token, ())):
            await _deliver(holder, token, message_id, replayed=False)
    return {"ok": True, "queued": queued}


async def _replay(sid: str) -> None:
    """What waits in the session ``sid`` just bound, oldest first."""
    token = bound.get(sid)
    session = sessions.get(token) if token is not None else None
    if token is None or session is None:
        return
    for message_id in sorted(session.mail):
        await _deliver(sid, token, message_id, replayed=True)


async def _deliver(sid: str, token: str, message_id: int, *, replayed: bool) -> None:
    session = sessions.get(token)
    if session is None or message_id not in session.mail:
        return
    event, payload, sent_at = session.mail[message_id]
    meta = {"id": message_id, "sentAt": int(sent_at * 1000), "replayed": replayed}
    await sio.emit(event, (payload, meta), to=sid, callback=functools.partial(_acked, token, message_id))


def _acked(token: str, message_id: int, *_: Any) -> None:
    session = sessions.get(token)
    if session is not None:
        session.mail.pop(message_id, None)


for _event, _handler in {
    "connect": connect,
    "disconnect": disconnect,
    "getToken": get_token,
    "demo:set": demo_set,
    "demo:get": demo_get,
    "user:login": user_login,
    "demo:notify": demo_notify,
}.items():
    sio.on(_event, _handler)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def _health(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    found = scope.get("path") == "/healthz"
    body = json.dumps({"status": "ok", "sessions": len(sessions)}).encode() if found else b"not found\n"
    await send({"type": "http.response.start", "status": 200 if found else 404, "headers": []})
    await send({"type": "http.response.body", "body": body})


# The same garbage-collector tuning as ours (SESSION_GC_TUNING's default), so that the
# comparison is of sessions, not of collector settings.
app = socketio.ASGIApp(sio, other_asgi_app=_health, on_startup=tune_gc)
