"""The ASGI application: ``uvicorn entrypoints.asgi:app``.

Socket.IO at ``/socket.io/`` and the health check at ``/healthz``, configured
from the environment (see README.md). The application's own events come from
``SESSION_EVENTS=package.module:register`` (``register(sio, sessions)``); the
demo page at ``/`` and its events only with ``SESSION_DEMO=1``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

import socketio

from adapters.socketio import SocketSessions, packet_json
from adapters.stores.mysql import MySQLStore
from entrypoints.access_log import hide_sids_in_access_log
from entrypoints.bootstrap import (
    build_lifecycle,
    build_mail,
    build_sessions,
    build_socket_sessions,
    build_store,
    tune_gc,
)
from entrypoints.demo import register_demo_events
from entrypoints.extras import REDIS_EXTRA, MissingExtra, require_module
from entrypoints.http import http_app
from entrypoints.settings import ConfigError, Settings, load_settings

log = logging.getLogger("socketio_session")

Register = Callable[[socketio.AsyncServer, SocketSessions], object]
"""``register(sio, sessions)``: adds the application's own event handlers, once, at app creation."""

DEMO_WARNING = (
    "SESSION_DEMO=1: the demo page and demo events are on. Their user:login takes any userId without a"
    " password, so anyone who can reach this server can log in as any user. Never set it in production."
)


def load_registrar(name: str) -> Register:
    """The function named ``package.module:function`` (a SESSION_EVENTS entry), or :class:`ConfigError`."""
    module_name, _, function_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the named module (or a parent package) missing is a configuration error;
        # a missing import inside that module is the module's own bug and keeps its traceback.
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise
        raise ConfigError(f"SESSION_EVENTS: no module named {module_name!r} (is it on PYTHONPATH?)") from None
    function = getattr(module, function_name, None)
    if function is None or not callable(function):
        raise ConfigError(f"SESSION_EVENTS: module {module_name!r} has no function {function_name!r}")
    if inspect.iscoroutinefunction(function):
        raise ConfigError(f"SESSION_EVENTS: {name} must be a plain function (it only registers handlers)")
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        raise ConfigError(f"SESSION_EVENTS: {name} must take two arguments, (sio, sessions)") from None
    except ValueError:
        pass  # a callable without a signature to inspect: trust it
    return function  # type: ignore[no-any-return]


def create_app(settings: Settings, register: Register | Iterable[Register] = ()) -> Any:
    """The whole server for ``settings``: Socket.IO, sessions, the health check, your events.

    ``register`` (one function or several), then each function named by
    SESSION_EVENTS, is called once as ``register(sio, sessions)``, where
    ``sessions`` is the :class:`SocketSessions` (``sessions.handle(sid)``,
    ``sessions.guarded``, ``sessions.replies``).
    """
    registrars = [register] if callable(register) else list(register)
    registrars += [load_registrar(name) for name in settings.event_registrars]
    if settings.socketio_message_queue:
        try:
            require_module("redis", REDIS_EXTRA, "SOCKETIO_MESSAGE_QUEUE")
        except MissingExtra as exc:
            raise ConfigError(str(exc)) from None
    store = build_store(settings)
    sessions = build_sessions(settings, store)
    mail = build_mail(settings, store, sessions)
    manager = socketio.AsyncRedisManager(settings.socketio_message_queue) if settings.socketio_message_queue else None
    sio = socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins=settings.cors_origins,
        client_manager=manager,
        # A message may carry one session's worth of data and some framing; nothing bigger.
        max_http_buffer_size=2 * settings.session_max_bytes + 4096,
        json=packet_json,
    )
    transport = build_socket_sessions(settings, sio, sessions, mail)
    if settings.session_demo:
        log.warning(DEMO_WARNING)
        register_demo_events(sio, transport)
    for registrar in registrars:
        registrar(sio, transport)
    lifecycle = build_lifecycle(settings, store, sessions, [transport], mail)
    if settings.session_gc_tuning:
        lifecycle.after_startup = tune_gc
    return socketio.ASGIApp(
        sio,
        other_asgi_app=http_app(
            store.ping,
            "mysql" if settings.uses_mysql else "sqlite",
            demo=settings.session_demo,
            details=store.health if isinstance(store, MySQLStore) else None,
        ),
        on_startup=lifecycle.startup,
        on_shutdown=lifecycle.shutdown,
    )


def _app_from_environment() -> Any:
    try:
        settings = load_settings()
        logging.basicConfig(level=settings.session_log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        hide_sids_in_access_log()
        return create_app(settings)
    except ConfigError as exc:
        # A clear line and a non-zero exit, not a traceback.
        sys.exit(str(exc))


app = _app_from_environment()
