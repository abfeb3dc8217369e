"""Startup and shutdown of the session machinery, for the stock app and for apps that embed it.

>>> lifecycle = SessionLifecycle(store, sessions, [transport], purge_interval=300)   # doctest: +SKIP
>>> app = socketio.ASGIApp(sio, on_startup=lifecycle.startup, on_shutdown=lifecycle.shutdown)  # doctest: +SKIP

or, in a framework with a lifespan context: ``async with lifecycle: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from adapters.socketio import SocketSessions
from application.handshake import Sessions
from application.ports import ManagedStore
from application.purge import purge_periodically

log = logging.getLogger("socketio_session")

REDIS_EXTRA = "socketio-token-session[redis]"


class MissingExtra(Exception):
    """An optional piece was configured but its package is not installed; the message says which extra."""


def require_module(module: str, extra: str, why: str) -> None:
    """Raise :class:`MissingExtra` (one line naming the extra) unless ``module`` can be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"{why} needs the {module!r} package: pip install '{extra}'")


class SessionLifecycle:
    """What runs at startup and shutdown around a server that holds sessions.

    Startup: chain any ``connect`` / ``disconnect`` handler registered after
    ``install()`` (:meth:`SocketSessions.check_installed`), open the store
    (``open_store`` if given, e.g. to apply the schema; a failed open closes
    it again), start the relay of ended sessions between processes when
    ``relay_url`` is set (Redis), and purge expired rows every
    ``purge_interval`` seconds (0: never). Shutdown undoes it in reverse.
    """

    def __init__(
        self,
        store: ManagedStore,
        sessions: Sessions,
        transports: Sequence[SocketSessions] = (),
        *,
        purge_interval: float = 300,
        relay_url: str = "",
        relay_channel: str = "socketio_session:ended",
        relay_key: str = "",
        open_store: Callable[[], Awaitable[None]] | None = None,
        after_startup: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.transports = list(transports)
        self.purge_interval = purge_interval
        self.relay_url = relay_url
        self.relay_channel = relay_channel
        self.relay_key = relay_key
        self._open_store = open_store or store.open
        self.after_startup = after_startup
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        if relay_url:
            require_module("redis", REDIS_EXTRA, "a message queue (SOCKETIO_MESSAGE_QUEUE)")
            if not relay_key:
                raise ValueError("relay_key is required with relay_url: processes must authenticate what they relay")

    async def startup(self) -> None:
        for transport in self.transports:
            transport.check_installed()
        try:
            await self._open_store()
        except BaseException:
            await self.store.close()  # whatever it opened, so that the process can exit
            raise
        self._closers.append(self.store.close)
        try:
            if self.relay_url:
                # Imported here: redis is an optional extra, needed only with a message queue.
                from adapters.socketio.relay import RedisRelay

                relay = RedisRelay(self.sessions, self.relay_url, key=self.relay_key, channel=self.relay_channel)
                await relay.start()
                self._closers.append(relay.close)
            if self.purge_interval > 0:
                self._tasks.append(asyncio.create_task(purge_periodically(self.sessions, self.purge_interval)))
            for transport in self.transports:
                self._tasks.append(asyncio.create_task(transport.watch_expiry()))
        except BaseException:
            await self.shutdown()
            raise
        if self.after_startup is not None:
            self.after_startup()

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        while self._closers:
            await self._closers.pop()()

    async def __aenter__(self) -> SessionLifecycle:
        await self.startup()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.shutdown()
