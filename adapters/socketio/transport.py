"""Sessions for a python-socketio ``AsyncServer``: a handle per connected socket."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import socketio

from adapters.socketio.wire import INTERNAL_ERROR, RATE_LIMITED, STORE_UNAVAILABLE, error_reply, token_message
from application.errors import SessionNotReady, StoreUnavailable
from application.handle import SessionHandle
from application.handshake import Handshake, Sessions
from domain.errors import SessionError

log = logging.getLogger("socketio_session.transport")

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


class InvalidPayload(SessionError):
    """An event's payload is not of the expected shape (not an object, wrong field types)."""


class _NotAToken:
    """Stands for a payload that held no usable token field; never parses."""


_NOT_A_TOKEN = _NotAToken()


class SocketSessions:
    """Token sessions for every socket of one namespace of ``sio``.

    ``install()`` registers ``connect``, ``disconnect`` and ``getToken``. If the
    application has its own ``connect`` / ``disconnect`` handlers, call
    :meth:`connect` and :meth:`disconnect` from them instead.

    >>> sio = socketio.AsyncServer(async_mode="asgi")       # doctest: +SKIP
    >>> sessions = SocketSessions(sio, Sessions(store, clock)).install()  # doctest: +SKIP
    >>> @sio.on("user:securedEvent")                         # doctest: +SKIP
    ... @sessions.guarded("userId")
    ... async def secured(sid, data):
    ...     return {"ok": True, "userId": sessions.handle(sid).get("userId")}
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        sessions: Sessions,
        *,
        namespace: str = "/",
        request_event: str = "getToken",
        reply_event: str = "gotToken",
        handshake_limit: int = 10,
        handshake_window: float = 60.0,
    ) -> None:
        self.sio = sio
        self.sessions = sessions
        self.namespace = namespace
        self.request_event = request_event
        self.reply_event = reply_event
        # At most ``handshake_limit`` handshakes per socket in any ``handshake_window`` seconds:
        # each one may cost a row, so a client cannot make us mint sessions in a loop.
        self.handshake_limit = handshake_limit
        self.handshake_window = handshake_window
        self._handles: dict[str, SessionHandle] = {}
        self._recent: dict[str, deque[float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        sessions.subscribe(self)

    def install(self) -> SocketSessions:
        self.sio.on("connect", self.connect, namespace=self.namespace)
        self.sio.on("disconnect", self.disconnect, namespace=self.namespace)
        self.sio.on(self.request_event, self.get_token, namespace=self.namespace)
        return self

    # -- access -----------------------------------------------------------------------

    def handle(self, sid: str) -> SessionHandle:
        """The session handle of socket ``sid``."""
        try:
            return self._handles[sid]
        except KeyError:
            raise SessionNotReady("no such connected socket") from None

    __call__ = handle

    # -- handlers -----------------------------------------------------------------------

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """Create the socket's handle; with ``auth = {token: ...}`` bind its session now.

        The handshake runs before python-socketio acknowledges the connection,
        so the session is bound before any of the client's events run. A client
        that sends no ``auth.token`` gets no session (and no row) until it
        emits ``getToken``.
        """
        handle = SessionHandle(self.sessions, on_rebound=functools.partial(self._rebound, sid))
        self._handles[sid] = handle
        if isinstance(auth, dict) and "token" in auth:
            message = await self._handshake(sid, handle, self._presented(auth))
            # The client drops events that precede the CONNECT packet, which
            # python-socketio sends once this handler returns.
            task = asyncio.get_running_loop().create_task(self._emit_after_connect(sid, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def disconnect(self, sid: str, reason: Any = None) -> None:
        self._handles.pop(sid, None)
        self._recent.pop(sid, None)

    async def get_token(self, sid: str, payload: Any = _NOT_A_TOKEN, *extra: Any) -> dict[str, Any]:
        """The old package's ``getToken``: answer ``gotToken`` (and the ack, if asked)."""
        handle = self._handles.get(sid)
        if handle is None:
            return dict(STORE_UNAVAILABLE)
        message = await self._handshake(sid, handle, _NOT_A_TOKEN if extra else self._presented(payload))
        await self._push(sid, message)
        return message

    # -- decorators for application handlers ---------------------------------------------

    def guarded(self, *keys: str, user: bool = False) -> Callable[[Handler], Handler]:
        """Refuse the event unless the socket's session is live (checked in the store) and has ``keys``.

        ``user=True`` also needs an owner recorded by ``login``. A refused event
        is acknowledged with ``{ok: false, error: "<ErrorName>"}`` and the
        handler does not run.
        """

        def decorate(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def run(sid: str, *args: Any) -> Any:
                try:
                    await self.handle(sid).require(*keys, user=user)
                except SessionError as exc:
                    return error_reply(exc)
                return await handler(sid, *args)

            return run  # type: ignore[return-value]

        return decorate

    @staticmethod
    def replies(handler: Handler) -> Handler:
        """Acknowledge a :class:`SessionError` by name and any other failure as ``InternalError``.

        No exception text or stack trace reaches the client; unexpected ones are logged.
        """

        @functools.wraps(handler)
        async def run(sid: str, *args: Any) -> Any:
            try:
                return await handler(sid, *args)
            except SessionError as exc:
                return error_reply(exc)
            except Exception:
                log.exception("event handler %s failed", handler.__name__)
                return dict(INTERNAL_ERROR)

        return run  # type: ignore[return-value]

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _presented(payload: Any) -> Any:
        if not isinstance(payload, dict):
            return _NOT_A_TOKEN
        token = payload.get("token", "")
        return _NOT_A_TOKEN if token is None else token

    def _allowed(self, sid: str) -> bool:
        now = time.monotonic()
        recent = self._recent.setdefault(sid, deque())
        while recent and now - recent[0] >= self.handshake_window:
            recent.popleft()
        if len(recent) >= self.handshake_limit:
            return False
        recent.append(now)
        return True

    async def _handshake(self, sid: str, handle: SessionHandle, presented: Any) -> dict[str, Any]:
        if not self._allowed(sid):
            self.sessions.audit("rate_limited", None)
            return dict(RATE_LIMITED)
        try:
            return token_message(await handle.handshake(presented))
        except StoreUnavailable as exc:
            log.warning("handshake failed: %s", exc)
        except Exception:
            log.exception("handshake failed unexpectedly")
        return dict(STORE_UNAVAILABLE)

    async def _emit_after_connect(self, sid: str, message: dict[str, Any]) -> None:
        for _ in range(100):
            if self.sio.manager.is_connected(sid, self.namespace):
                await self._push(sid, message)
                return
            if sid not in self._handles:
                return
            await asyncio.sleep(0.001)
        log.warning("socket did not finish connecting; gotToken not sent")

    async def _push(self, sid: str, message: dict[str, Any]) -> None:
        """``gotToken`` to a socket of this process.

        ``ignore_queue``: with a message queue (several processes), python-socketio
        would otherwise publish every emit to Redis for all processes to inspect, though
        the socket is always ours; that doubled the CPU of a handshake (bench/speed.py, ours2).
        """
        await self.sio.emit(self.reply_event, message, to=sid, namespace=self.namespace, ignore_queue=True)

    async def _rebound(self, sid: str, result: Handshake) -> None:
        await self._push(sid, token_message(result))

    async def sessions_ended(self, digests: frozenset[bytes]) -> None:
        """Hand every local socket whose session ended a fresh session (it gets ``gotToken``).

        All at once: one socket busy with a slow event must not delay the others' notice.
        """

        async def replace(sid: str, handle: SessionHandle) -> None:
            try:
                await handle.replace_if_ended(digests)
            except StoreUnavailable:
                await self._push(sid, dict(STORE_UNAVAILABLE))

        affected = [(sid, h) for sid, h in self._handles.items() if h.bound and h.token.digest in digests]
        await asyncio.gather(*(replace(sid, handle) for sid, handle in affected))
