"""The ceiling: the same events and replies as ``entrypoints.asgi:app``, sessions in a dict.

    uvicorn bench.ceiling_app:app --no-access-log --log-level warning

What a user gets without persistence: python-socketio's ``AsyncServer`` and a
plain ``dict`` token -> session. ``getToken`` answers ``gotToken``
``{token, errors, status, expires}``; a connection with ``auth = {token}``
gets its handshake before the connection is acknowledged and ``gotToken``
right after it (the same polling wait as adapters/socketio/transport.py, since
the client drops events that precede the CONNECT packet); ``demo:set`` and
``demo:get`` acknowledge ``{ok: true[, value]}`` or ``{ok: false, error}``.
Nothing survives a restart, and nothing is shared between processes.
"""

from __future__ import annotations

import asyncio
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
_ERRORS = {"created": "", "resumed": "", "expired": "Session Expired", "not_found": "Session Not Found"}
_ERRORS["invalid"] = "Session Not Found"


class Session:
    __slots__ = ("absolute", "data", "expires")

    def __init__(self, now: float) -> None:
        self.data: dict[str, Any] = {}
        self.absolute = now + ABSOLUTE_TTL
        self.expires = min(now + IDLE_TTL, self.absolute)


sio = socketio.AsyncServer(async_mode="asgi", max_http_buffer_size=2 * MAX_BYTES + 4096)
sessions: dict[str, Session] = {}  # token -> session
bound: dict[str, str] = {}  # sid -> token
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
                bound[sid] = presented
                return _message(presented, found, "resumed")
    token = secrets.token_urlsafe(32)
    session = sessions[token] = Session(now)
    bound[sid] = token
    return _message(token, session, status)


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
            return
        if sid not in bound:
            return
        await asyncio.sleep(0.001)


async def disconnect(sid: str, reason: Any = None) -> None:
    bound.pop(sid, None)


async def get_token(sid: str, payload: Any = None) -> dict[str, Any]:
    message = _handshake(sid, _presented(payload))
    await sio.emit("gotToken", message, to=sid)
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


for _event, _handler in {
    "connect": connect,
    "disconnect": disconnect,
    "getToken": get_token,
    "demo:set": demo_set,
    "demo:get": demo_get,
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
