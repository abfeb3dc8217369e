"""Startup and shutdown of the session machinery, for the stock app and for apps that embed it.

>>> lifecycle = SessionLifecycle(store, sessions, [transport], purge_interval=300)   # doctest: +SKIP
>>> app = socketio.ASGIApp(sio, on_startup=lifecycle.startup, on_shutdown=lifecycle.shutdown)  # doctest: +SKIP

or, in a framework with a lifespan context: ``async with lifecycle: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from adapters.socketio import HandlerConflict, SocketSessions
from application.mailbox import Mailboxes
from application.ports import Store
from application.purge import purge_periodically
from application.sessions import Sessions
from domain.errors import SessionError
from entrypoints.extras import REDIS_EXTRA, require_module

log = logging.getLogger("socketio_session")


class SessionLifecycle:
    """What runs at startup and shutdown around a server that holds sessions.

    Startup: check that each transport's binding is in place
    (:meth:`SocketSessions.check_installed`), open the store (``open_store``
    if given, e.g. to apply the schema; a failed open closes it again), start
    the relay of ended sessions (and, with ``mail``, of messages sent to
    mailboxes) between processes when ``relay_url`` is set
    (Redis, authenticated with ``relay_key``), purge expired rows every
    ``purge_interval`` seconds (0: never), and watch each transport's sockets
    for sessions that expire (they are told within a second or two). A
    startup that fails logs why in one line (``cannot start: ...``), undoes
    what it did, and raises. Shutdown undoes it all in reverse.
    """

    def __init__(
        self,
        store: Store,
        sessions: Sessions,
        transports: Sequence[SocketSessions] = (),
        *,
        purge_interval: float = 300,
        relay_url: str = "",
        relay_key: str = "",
        relay_channel: str = "socketio_session:ended",
        mail: Mailboxes | None = None,
        mail_channel: str = "socketio_session:mail",
        open_store: Callable[[], Awaitable[None]] | None = None,
        after_startup: Callable[[], None] | None = None,
    ) -> None:
        if relay_url:
            require_module("redis", REDIS_EXTRA, "a message queue (SOCKETIO_MESSAGE_QUEUE)")
            if not relay_key:
                raise ValueError("relay_key is required with relay_url: processes must authenticate what they relay")
        self.store = store
        self.sessions = sessions
        self.transports = list(transports)
        self.purge_interval = purge_interval
        self.relay_url = relay_url
        self.relay_key = relay_key
        self.relay_channel = relay_channel
        self.mail = mail
        self.mail_channel = mail_channel
        self.after_startup = after_startup
        self._open_store = open_store or store.open
        self._running: contextlib.AsyncExitStack | None = None

    async def startup(self) -> None:
        """Bring everything up; on failure, log the reason in one line, undo, and raise."""
        if self._running is not None:
            raise RuntimeError("SessionLifecycle.startup() ran twice without a shutdown()")
        running = contextlib.AsyncExitStack()
        try:
            for transport in self.transports:
                transport.check_installed()
            try:
                await self._open_store()
            finally:
                # Closed on the way out whether the open succeeded or not: a half-open store
                # (a pool, an SQLite thread) would keep a process whose startup failed alive.
                running.push_async_callback(self.store.close)
            if self.relay_url:
                # Imported here: redis is an optional extra, needed only with a message queue.
                from adapters.socketio.relay import RedisRelay

                relay = RedisRelay(
                    self.sessions,
                    self.relay_url,
                    key=self.relay_key,
                    channel=self.relay_channel,
                    mail=self.mail,
                    mail_channel=self.mail_channel,
                )
                running.push_async_callback(relay.close)
                await relay.start()
            if self.purge_interval > 0:
                self._run(running, purge_periodically(self.sessions, self.purge_interval), "purge")
            for transport in self.transports:
                self._run(running, transport.watch_expiry(), "expiry watch")
            if self.after_startup is not None:
                self.after_startup()
        except (SessionError, HandlerConflict) as exc:
            # python-socketio's lifespan handler swallows the exception and uvicorn only says
            # "Application startup failed": say why, in one line.
            log.error("cannot start: %s", exc)
            await running.aclose()
            raise
        except BaseException:
            log.exception("cannot start: unexpected error")  # a bug: the traceback is what helps
            await running.aclose()
            raise
        self._running = running

    async def shutdown(self) -> None:
        """Stop the background tasks, the relay and the store; safe to call when not started."""
        running, self._running = self._running, None
        if running is not None:
            await running.aclose()

    @staticmethod
    def _run(running: contextlib.AsyncExitStack, work: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(work)

        async def stop() -> None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("the %s task had failed", name)  # and shutdown goes on

        running.push_async_callback(stop)

    async def __aenter__(self) -> SessionLifecycle:
        await self.startup()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.shutdown()
