"""The ASGI application: ``uvicorn entrypoints.asgi:app``.

Socket.IO at ``/socket.io/``, the demo page at ``/``, the health check at
``/healthz``. Configured from the environment (see README.md).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import socketio

from adapters.socketio import SocketSessions, packet_json
from adapters.socketio.relay import RedisRelay
from application.errors import SchemaMissing, StoreUnavailable
from application.purge import purge_periodically
from entrypoints.bootstrap import build_sessions, build_store, open_store, tune_gc
from entrypoints.demo import register_demo_events
from entrypoints.http import http_app
from entrypoints.settings import ConfigError, Settings, load_settings

log = logging.getLogger("socketio_session")


def create_app(settings: Settings) -> Any:
    """The whole server for ``settings``: Socket.IO, sessions, demo events, HTTP."""
    store = build_store(settings)
    sessions = build_sessions(settings, store)
    manager = socketio.AsyncRedisManager(settings.socketio_message_queue) if settings.socketio_message_queue else None
    sio = socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins=settings.cors_origins,
        client_manager=manager,
        # A message may carry one session's worth of data and some framing; nothing bigger.
        max_http_buffer_size=2 * settings.session_max_bytes + 4096,
        json=packet_json,
    )
    transport = SocketSessions(
        sio,
        sessions,
        handshake_limit=settings.session_handshake_limit,
        handshake_window=settings.session_handshake_window,
    ).install()
    register_demo_events(sio, transport)
    background: list[asyncio.Task[None]] = []
    relays: list[RedisRelay] = []

    async def startup() -> None:
        try:
            await open_store(store, settings)
        except (SchemaMissing, StoreUnavailable) as exc:
            # uvicorn only says "Application startup failed": say why, in one line.
            log.error("cannot start: %s", exc)
            await store.close()
            raise
        if settings.socketio_message_queue:
            relay = RedisRelay(
                sessions, settings.socketio_message_queue, channel=f"socketio_session:{settings.session_table}:ended"
            )
            await relay.start()
            relays.append(relay)
        if settings.session_gc_tuning:
            tune_gc()
        if settings.session_purge_interval > 0:
            background.append(asyncio.create_task(purge_periodically(sessions, settings.session_purge_interval)))

    async def shutdown() -> None:
        for task in background:
            task.cancel()
        for relay in relays:
            await relay.close()
        await store.close()

    return socketio.ASGIApp(
        sio,
        other_asgi_app=http_app(store.ping, "mysql" if settings.uses_mysql else "sqlite"),
        on_startup=startup,
        on_shutdown=shutdown,
    )


def _app_from_environment() -> Any:
    try:
        settings = load_settings()
        logging.basicConfig(level=settings.session_log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        return create_app(settings)
    except ConfigError as exc:
        # A clear line and a non-zero exit, not a traceback.
        sys.exit(str(exc))


app = _app_from_environment()
