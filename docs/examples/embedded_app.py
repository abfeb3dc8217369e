"""Your own python-socketio app with token sessions: your events, your connect handler, real logins.

Run it (from a checkout or with the package installed):

    SESSION_STORE_URL=sqlite:///./app.sqlite3 uvicorn --app-dir docs/examples embedded_app:app

Every SESSION_* setting of the stock server applies (README.md, Configuration),
because the store and the use cases are built from them. docs/embedding.md
walks through it; tests/e2e/test_embedded_app.py runs it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import socketio

from application.errors import InvalidPayload
from domain.errors import SessionError
from entrypoints.bootstrap import build_lifecycle, build_sessions, build_socket_sessions, build_store
from entrypoints.extras import REDIS_EXTRA, require_module
from entrypoints.http import http_app
from entrypoints.settings import load_settings

log = logging.getLogger("embedded_app")

# Stands in for your user database: never store passwords like this (use argon2 or bcrypt).
_USERS = {"alice": hashlib.sha256(b"wonderland").hexdigest()}


class WrongPassword(SessionError):
    """Your own named error: events acknowledge it as {ok: false, error: "WrongPassword"}."""


settings = load_settings()
store = build_store(settings)
queue = settings.socketio_message_queue  # several processes: emits and ended sessions go through Redis
if queue:
    require_module("redis", REDIS_EXTRA, "SOCKETIO_MESSAGE_QUEUE")  # one line naming the extra, if missing
sio = socketio.AsyncServer(
    async_mode="asgi",
    cors_allowed_origins=settings.cors_origins,
    client_manager=socketio.AsyncRedisManager(queue) if queue else None,
)
sessions = build_socket_sessions(settings, sio, build_sessions(settings, store))  # installed, with the limits
connected: dict[str, str] = {}  # sid -> remote address, kept by our own handlers


# Registered after install(): python-socketio keeps one connect handler per namespace, so this
# one would replace the session binding; install() and the lifecycle's startup chain it behind
# ours instead. In it, sessions.handle(sid) already exists (and is bound when auth carried a token).
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    connected[sid] = str(environ.get("REMOTE_ADDR", "?"))


async def disconnect(sid: str, reason: Any = None) -> None:
    connected.pop(sid, None)


@sessions.replies  # a SessionError becomes {ok: false, error: "<Name>"}; anything else InternalError
async def login(sid: str, credentials: Any = None) -> dict[str, Any]:
    if not isinstance(credentials, dict) or not all(isinstance(credentials.get(f), str) for f in ("user", "password")):
        raise InvalidPayload("expected {user, password}")
    expected = _USERS.get(credentials["user"], "")
    given = hashlib.sha256(credentials["password"].encode()).hexdigest()
    if not (expected and hmac.compare_digest(expected, given)):
        raise WrongPassword()
    # A new token (no session fixation), the owner recorded; the client gets gotToken with it.
    await sessions.handle(sid).login(credentials["user"], {"name": credentials["user"].title()})
    return {"ok": True}


@sessions.replies
@sessions.guarded(user=True)  # live in the store and logged in: the owner only login() records
async def profile(sid: str, _payload: Any = None) -> dict[str, Any]:
    handle = sessions.handle(sid)
    return {"ok": True, "user": handle.session.user_id, "name": handle.get("name"), "from": connected.get(sid)}


@sessions.replies
async def logout(sid: str, _payload: Any = None) -> dict[str, Any]:
    await sessions.handle(sid).destroy()  # the row is gone; the client gets a fresh token
    return {"ok": True}


# python-socketio's decorators are untyped; registering by call keeps mypy --strict honest.
sio.on("connect", connect)
sio.on("disconnect", disconnect)
sio.on("app:login", login)
sio.on("app:profile", profile)
sio.on("app:logout", logout)

# Open the store (checking its schema), purge expired sessions now and then, tell sockets
# whose session expired, relay ended sessions to other processes when SOCKETIO_MESSAGE_QUEUE
# is set; close it all on shutdown.
lifecycle = build_lifecycle(settings, store, sessions.sessions, [sessions])

# /healthz answers 200 while the store does, 503 otherwise (for your load balancer); nothing else.
health = http_app(store.ping, "mysql" if settings.uses_mysql else "sqlite")
app = socketio.ASGIApp(sio, other_asgi_app=health, on_startup=lifecycle.startup, on_shutdown=lifecycle.shutdown)
