"""Our connect/disconnect handlers beside the application's own, whenever it registers them.

python-socketio keeps one handler per event and namespace in ``sio.handlers``
(``sio.on(event, handler)`` stores it with ``handlers[namespace][event] =
handler``), so an application's ``connect`` handler would silently replace the
session binding, and every handshake would then fail. :class:`ChainedHandlers`
takes the namespace's place in that table and wraps each ``connect`` /
``disconnect`` handler stored into it, before or after ``install()``, so that
ours runs too. A class-based namespace (``socketio.AsyncNamespace``) for the
same namespace is chained the same way, at call time. tests/e2e/test_embedded_app.py
and tests/unit/test_socket_chaining.py fail if python-socketio stops storing
handlers this way.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import socketio

AppHandler = Callable[..., Any]
"""An application's handler: sync or async, taking some leading part of the arguments python-socketio offers."""


_ENTRY = "_socketio_session_entry"


class HandlerConflict(Exception):
    """An application handler that the session binding cannot run beside; the message says what to do."""


@functools.cache
def _accepted(handler: AppHandler, offered: int) -> int:
    """How many of ``offered`` positional arguments ``handler`` takes (python-socketio's courtesy:
    ``connect`` may take ``(sid, environ, auth)`` or ``(sid, environ)``, ``disconnect`` ``(sid, reason)``
    or ``(sid)``). Worked out once per handler, not on every connection."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # a builtin or C callable: offer everything
        return offered
    for count in range(offered, 0, -1):
        try:
            signature.bind(*range(count))
            return count
        except TypeError:
            continue
    return offered


async def call_app_handler(handler: AppHandler, *args: Any) -> Any:
    """Call ``handler`` with as many of ``args`` as it takes, awaiting it if it is async."""
    result = handler(*args[: _accepted(handler, len(args))])
    return await result if inspect.isawaitable(result) else result


class Binding(Protocol):
    """What runs around the application's handlers: the session binding of one namespace."""

    async def on_connect(self, theirs: AppHandler | None, sid: str, environ: dict[str, Any], auth: Any) -> Any: ...

    async def on_disconnect(self, theirs: AppHandler | None, sid: str, reason: Any) -> None: ...


class ChainedHandlers(dict[str, Any]):
    """One namespace's handler table in python-socketio, with ``connect`` / ``disconnect`` chained on store."""

    def __init__(
        self, sio: socketio.AsyncServer, namespace: str, binding: Binding, existing: Mapping[str, Any]
    ) -> None:
        super().__init__()
        self._sio = sio
        self._namespace = namespace
        self._binding = binding
        for event, handler in existing.items():
            self[event] = handler
        for event in ("connect", "disconnect"):
            if event not in self:
                self[event] = None

    def __setitem__(self, event: str, handler: Any) -> None:
        if event == "connect" and not self._is_entry(handler):
            handler = self._entry(self._connect(handler))
        elif event == "disconnect" and not self._is_entry(handler):
            handler = self._entry(self._disconnect(handler))
        super().__setitem__(event, handler)

    @staticmethod
    def _is_entry(handler: Any) -> bool:
        return getattr(handler, _ENTRY, False) is True

    @staticmethod
    def _entry(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        setattr(handler, _ENTRY, True)  # stored again (sio.on with it), it is not wrapped twice
        return handler

    def _class_handler(self, name: str) -> AppHandler | None:
        """``on_connect`` / ``on_disconnect`` of a class-based namespace, looked up when it is needed."""
        namespace_handler = self._sio.namespace_handlers.get(self._namespace)
        found = getattr(namespace_handler, name, None)
        return found if callable(found) else None

    def _connect(self, theirs: AppHandler | None) -> Callable[..., Awaitable[Any]]:
        binding = self._binding

        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> Any:
            return await binding.on_connect(theirs or self._class_handler("on_connect"), sid, environ, auth)

        return connect

    def _disconnect(self, theirs: AppHandler | None) -> Callable[..., Awaitable[Any]]:
        binding = self._binding

        async def disconnect(sid: str, reason: Any = None) -> None:
            await binding.on_disconnect(theirs or self._class_handler("on_disconnect"), sid, reason)

        return disconnect


def refuse_unchainable(sio: socketio.AsyncServer, namespace: str) -> None:
    """Raise :class:`HandlerConflict` for handlers that ours would silently keep from running.

    Catch-all handlers (``namespace="*"``) for ``connect`` / ``disconnect`` run
    only when a namespace has none of its own, and ours always is there.
    """
    catch_all = sio.handlers.get("*", {})
    for event in ("connect", "disconnect"):
        if event in catch_all:
            raise HandlerConflict(
                f"a catch-all {event!r} handler (namespace='*') never runs for namespace {namespace!r}, whose"
                f" session binding handles {event!r}: register it with sio.on({event!r}, handler,"
                f" namespace={namespace!r}) instead; it then runs beside the binding"
            )
