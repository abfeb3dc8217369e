"""Sessions for a python-socketio ``AsyncServer``: a handle per connected socket."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import socketio

from adapters.socketio.ack_guard import guard_acks
from adapters.socketio.chaining import (
    AppHandler,
    ChainedHandlers,
    HandlerConflict,
    call_app_handler,
    refuse_unchainable,
)
from application.errors import InvalidPayload, SessionNotReady, StoreUnavailable
from application.handle import SessionHandle
from application.mailbox import Delivery, Inbox, Mailboxes, Sent
from application.protocol import (
    NOT_A_TOKEN,
    HandshakeLimiter,
    Message,
    answer_handshake,
    error_reply,
    internal_error_reply,
    presented_token,
    rate_limited_message,
    token_message,
    unavailable_message,
)
from application.sessions import Handshake, Sessions, Status
from domain.errors import SessionError
from domain.values import JSON

log = logging.getLogger("socketio_session.transport")

# Statuses of a handshake that inserted a row (everything but a resume).
_MADE_A_ROW = {"created", "not_found", "expired", "invalid"}
# How long gotToken waits for python-socketio to finish a connection (the application's
# connect handler included) before it gives up on that socket.
_CONNECT_WAIT = 10.0

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])

__all__ = ["HandlerConflict", "InvalidPayload", "SocketSessions"]


def client_address(environ: dict[str, Any], *, trust_proxy: bool = False) -> str:
    """The client's address as the per-address limits count it.

    The peer's address from the ASGI scope (python-engineio's environ says
    ``REMOTE_ADDR = 127.0.0.1`` for every ASGI client, so it cannot be used;
    docs/decisions.md), or with ``trust_proxy`` the first ``X-Forwarded-For``
    hop, which only a proxy that overwrites that header may be trusted with.
    Anything that is not an IP address counts as the peer. IPv6 addresses
    count by their /64, which one client typically holds whole.
    """
    scope = environ.get("asgi.scope")
    peer = scope.get("client") if isinstance(scope, dict) else None
    address = str(peer[0]) if peer else str(environ.get("REMOTE_ADDR", ""))
    if trust_proxy:
        forwarded = str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")[0].strip()
        if _ip(forwarded) is not None:
            address = forwarded
    ip = _ip(address)
    if ip is None:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class SocketSessions:
    """Token sessions for every socket of one namespace of ``sio``.

    ``install()`` registers ``getToken`` and puts the session binding in front
    of the namespace's ``connect`` and behind its ``disconnect``. The
    application may register its own ``connect`` / ``disconnect`` handlers
    (or a class-based namespace's ``on_connect`` / ``on_disconnect``) before or
    after ``install()``: they keep running, ours runs first on connect (so
    ``handle(sid)`` works in theirs, and a connection they refuse leaves no
    session behind) and last on disconnect (adapters/socketio/chaining.py).

    >>> sio = socketio.AsyncServer(async_mode="asgi")       # doctest: +SKIP
    >>> sessions = SocketSessions(sio, Sessions(store, clock)).install()  # doctest: +SKIP
    >>> @sio.on("user:securedEvent")                         # doctest: +SKIP
    ... @sessions.guarded(user=True)
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
        new_per_address: int = 60,
        trust_proxy: bool = False,
        mail: Mailboxes | None = None,
    ) -> None:
        self.sio = sio
        self.sessions = sessions
        self.namespace = namespace
        self.request_event = request_event
        self.reply_event = reply_event
        # At most ``handshake_limit`` handshakes per socket in any ``handshake_window`` seconds:
        # each one may cost a row, so a client cannot make us mint sessions in a loop.
        self.limiter = HandshakeLimiter(handshake_limit, handshake_window)
        # At most ``new_per_address`` new sessions (rows) per client address in that window, across
        # sockets and reconnects: a new connection starts a new per-socket count, not a new address.
        self.new_sessions = HandshakeLimiter(new_per_address, handshake_window)
        self.trust_proxy = trust_proxy
        self._addresses: dict[str, str] = {}
        self._handles: dict[str, SessionHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._table: ChainedHandlers | None = None
        sessions.subscribe(self)
        # The sessions' mailboxes (application/mailbox.py): each socket's Inbox, and which sockets
        # deliver for which session digest.
        self.mail = mail
        self._inboxes: dict[str, Inbox] = {}
        self._delivering: dict[bytes, set[str]] = {}
        if mail is not None:
            mail.subscribe(self)

    def install(self) -> SocketSessions:
        """Register ``getToken`` and the session binding on ``connect`` / ``disconnect``.

        Raises :class:`HandlerConflict` for handlers that could not run beside
        the binding (catch-all ``namespace="*"`` connect handlers).
        """
        guard_acks(self.sio)  # every delivery waits on an ack callback: no packet may break that table
        existing = self.sio.handlers.get(self.namespace, {})
        self._table = ChainedHandlers(self.sio, self.namespace, self, existing)
        self.sio.handlers[self.namespace] = self._table
        self.sio.on(self.request_event, self.get_token, namespace=self.namespace)
        refuse_unchainable(self.sio, self.namespace)
        return self

    def check_installed(self) -> None:
        """Raise :class:`HandlerConflict` unless the binding is in place and nothing stands beside it unseen.

        The lifespan helper (:class:`entrypoints.lifecycle.SessionLifecycle`)
        calls it at startup, once every handler is registered.
        """
        if self._table is None:
            raise HandlerConflict("SocketSessions.install() was never called: call it once, after creating the server")
        if self.sio.handlers.get(self.namespace) is not self._table:
            # The whole table was replaced behind our back: chain what it holds now.
            self.install()
        refuse_unchainable(self.sio, self.namespace)

    async def on_connect(self, theirs: AppHandler | None, sid: str, environ: dict[str, Any], auth: Any) -> Any:
        """python-socketio's ``connect``: bind the session, run the application's handler, then say ``gotToken``.

        ``gotToken`` goes out only once the application accepted the
        connection; a connection it refuses leaves no handle, and no row if the
        handshake made one.
        """
        message = await self._bind(sid, environ, auth)
        accepted: Any = None
        if theirs is not None:
            try:
                accepted = await call_app_handler(theirs, sid, environ, auth)
            except BaseException:
                await self._refused(sid, message)
                raise
            if accepted is False:
                await self._refused(sid, message)
                return False
        if message is not None:
            self._push_when_connected(sid, message)
        return accepted

    async def on_disconnect(self, theirs: AppHandler | None, sid: str, reason: Any) -> None:
        """python-socketio's ``disconnect``: the application's handler first (it may still read the session)."""
        try:
            if theirs is not None:
                await call_app_handler(theirs, sid, reason)
        finally:
            await self.disconnect(sid, reason)

    # -- access -----------------------------------------------------------------------

    def handle(self, sid: str) -> SessionHandle:
        """The session handle of socket ``sid``."""
        try:
            return self._handles[sid]
        except KeyError:
            raise SessionNotReady("no such connected socket") from None

    __call__ = handle

    # -- the mailbox -----------------------------------------------------------------------

    async def send(self, sid: str, event: str, payload: JSON) -> int:
        """Queue ``event`` with ``payload`` in the mailbox of socket ``sid``'s session; 1 once durable (0: it ended).

        Every socket holding that session, in any process, receives it at once
        as ``event(payload, {id, sentAt, replayed}, ack)``; until its client
        acknowledges it, it comes again on each new connection (docs/client.md).
        """
        return await self._mailboxes().send(self.handle(sid), event, payload)

    async def send_to_user(self, user_id: str, event: str, payload: JSON) -> int:
        """Queue ``event`` with ``payload`` for every live session of ``user_id``; how many, once durable."""
        return await self._mailboxes().send_to_user(user_id, event, payload)

    def _mailboxes(self) -> Mailboxes:
        if self.mail is None:
            raise RuntimeError("this SocketSessions has no mailbox: pass mail=Mailboxes(sessions, store)")
        return self.mail

    async def messages_sent(self, sent: Sent) -> None:
        """Deliver ``sent`` to every local socket holding one of its sessions (each in its own order)."""
        receiving = [
            self._inboxes[sid].receive(digest, message_id, sent.event, sent.payload, sent.sent_at)
            for digest, message_id in sent.targets
            for sid in self._delivering.get(digest, ())
            if sid in self._inboxes
        ]
        outcomes = await asyncio.gather(*receiving, return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, Exception)]
        if failed:
            log.warning("live delivery failed for %d sockets: %s", len(failed), failed[0])

    async def _open_inbox(self, sid: str, *, moved: bool = False) -> None:
        """The socket's session was bound and its ``gotToken`` sent: replay its mailbox, then deliver live."""
        inbox, handle = self._inboxes.get(sid), self._handles.get(sid)
        if inbox is None or handle is None or not handle.bound:
            return
        try:
            token, session = handle.token, handle.session
        except SessionError:
            return  # expired meanwhile: the expiry watch binds a fresh one, and opens it then
        previous = inbox.digest
        self._unlist(sid, previous)
        # Listed before the replay: a message announced meanwhile waits for it on the inbox's lock.
        self._delivering.setdefault(token.digest, set()).add(sid)
        try:
            await inbox.open(token, session, moved_from=previous if moved else None)
        except StoreUnavailable as exc:
            # Still listed: the next live message catches up, or the next connection replays.
            log.warning("mailbox replay failed: %s", exc)

    async def _deliver(self, sid: str, delivery: Delivery) -> None:
        """One message to socket ``sid``: ``event(payload, {id, sentAt, replayed})``, acknowledged by the client."""
        meta = {"id": delivery.id, "sentAt": int(delivery.sent_at * 1000), "replayed": delivery.replayed}
        await self.sio.emit(
            delivery.event,
            (delivery.payload, meta),
            to=sid,
            namespace=self.namespace,
            callback=lambda *_: delivery.ack(),
            ignore_queue=True,
        )

    # -- handlers -----------------------------------------------------------------------

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """Create the socket's handle; with ``auth = {token: ...}`` bind its session now.

        The handshake runs before python-socketio acknowledges the connection,
        so the session is bound before any of the client's events run, and
        ``gotToken`` follows the acknowledgement. A client that sends no
        ``auth.token`` gets no session (and no row) until it emits ``getToken``.
        ``install()`` calls this for every connection; an application's own
        connect handler may call it too (with an ``auth`` of its making):
        a socket already bound is left as it is.
        """
        message = await self._bind(sid, environ, auth)
        if message is not None:
            self._push_when_connected(sid, message)

    async def _bind(self, sid: str, environ: dict[str, Any], auth: Any) -> Message | None:
        """The handle of ``sid`` (made if new), bound now if ``auth`` carries a token; its ``gotToken``, if any."""
        handle = self._handles.get(sid)
        if handle is None:
            self._addresses[sid] = client_address(environ, trust_proxy=self.trust_proxy)
            handle = self._new_handle(sid)
        if handle.bound or not (isinstance(auth, dict) and "token" in auth):
            return None
        return await self._answer(sid, handle, presented_token(auth))

    async def _refused(self, sid: str, message: Message | None) -> None:
        """The application refused the connection: forget the socket, and the session it just made."""
        handle = self._handles.get(sid)
        self._forget(sid)
        if handle is None or message is None or message.get("status") not in _MADE_A_ROW:
            return
        try:
            await self.sessions.store.delete(handle.token.digest)
        except StoreUnavailable as exc:  # it is anonymous: it expires after SESSION_ANON_TTL anyway
            log.warning("could not remove the session of a refused connection: %s", exc)

    async def disconnect(self, sid: str, reason: Any = None) -> None:
        self._forget(sid)

    async def get_token(self, sid: str, payload: Any = NOT_A_TOKEN, *extra: Any) -> Message:
        """The old package's ``getToken``: answer ``gotToken`` (and the ack, if asked)."""
        handle = self._handles.get(sid)
        if handle is None:
            if not self.sio.manager.is_connected(sid, self.namespace):
                return unavailable_message()  # an event that outlived its socket: nobody to answer
            # Our connect never ran for a connected socket: python-socketio's handler table was
            # replaced after install(). Chain again, and serve this socket anyway.
            log.warning("a connected socket had no session handle: the connect handler was replaced; re-chained")
            self.check_installed()
            await self._bind(sid, self.sio.get_environ(sid, self.namespace) or {}, None)
            handle = self._handles[sid]
        message = await self._answer(sid, handle, NOT_A_TOKEN if extra else presented_token(payload))
        await self._push(sid, message)
        if message.get("token"):
            await self._open_inbox(sid)
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
                return internal_error_reply()

        return run  # type: ignore[return-value]

    # -- internals -------------------------------------------------------------------------

    def _new_handle(self, sid: str) -> SessionHandle:
        handle = SessionHandle(
            self.sessions,
            on_rebound=functools.partial(self._rebound, sid),
            admit=functools.partial(self._admit, sid),
        )
        self._handles[sid] = handle
        if self.mail is not None:
            self._inboxes[sid] = Inbox(self.mail, functools.partial(self._deliver, sid))
        return handle

    def _forget(self, sid: str) -> None:
        self._handles.pop(sid, None)
        self._addresses.pop(sid, None)
        self.limiter.forget(sid)
        inbox = self._inboxes.pop(sid, None)
        if inbox is not None:
            self._unlist(sid, inbox.digest)
            if inbox.acking:
                # Acknowledgements that arrived before the disconnect are still stored.
                self._keep(inbox.drain())

    def _unlist(self, sid: str, digest: bytes | None) -> None:
        """Socket ``sid`` no longer delivers for the session under ``digest``."""
        sids = None if digest is None else self._delivering.get(digest)
        if digest is None or sids is None:
            return
        sids.discard(sid)
        if not sids:
            del self._delivering[digest]

    async def _answer(self, sid: str, handle: SessionHandle, presented: object) -> Message:
        return await answer_handshake(handle, presented, limiter=self.limiter, key=sid)

    def _push_when_connected(self, sid: str, message: Message) -> None:
        self._keep(self._emit_after_connect(sid, message))

    def _keep(self, work: Awaitable[None]) -> None:
        """Run ``work`` as a task of its own, referenced until it ends."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _emit_after_connect(self, sid: str, message: Message) -> None:
        # The client drops events that precede the CONNECT packet, which python-socketio
        # sends once every connect handler returned (an application's may take a while).
        deadline = asyncio.get_running_loop().time() + _CONNECT_WAIT
        while asyncio.get_running_loop().time() < deadline:
            if self.sio.manager.is_connected(sid, self.namespace):
                await self._push(sid, message)
                if message.get("token"):
                    await self._open_inbox(sid)
                return
            if sid not in self._handles:
                return  # refused, or gone
            await asyncio.sleep(0.005)
        log.warning("socket did not finish connecting within %s s; gotToken not sent", _CONNECT_WAIT)

    async def _push(self, sid: str, message: Message) -> None:
        """``gotToken`` to a socket of this process.

        ``ignore_queue``: with a message queue (several processes), python-socketio
        would otherwise publish every emit to Redis for all processes to inspect, though
        the socket is always ours; that doubled the CPU of a handshake (bench/speed.py, ours2).
        """
        await self.sio.emit(self.reply_event, message, to=sid, namespace=self.namespace, ignore_queue=True)

    def _admit(self, sid: str) -> bool:
        """May socket ``sid`` make one more session (a row)? Counted per client address."""
        return self.new_sessions.allow(self._addresses.get(sid, ""))

    async def _rebound(self, sid: str, result: Handshake | None) -> None:
        await self._push(sid, rate_limited_message() if result is None else token_message(result))
        if result is not None:
            # A rotation (login) keeps the session, and so its mailbox and what this socket has of it.
            await self._open_inbox(sid, moved=result.status is Status.ROTATED)

    async def watch_expiry(self, interval: float = 1.0) -> None:
        """Until cancelled: every ``interval`` seconds, hand each socket whose session expired a fresh one.

        One task per process for all sockets (the lifespan helper starts it). A
        socket whose view passed its deadline is reloaded; if the session really
        ended it gets ``gotToken`` with a new session, ``errors: "Session Expired"``,
        ``status: "expired"``. A session kept alive by another connection stays.
        """
        checking: dict[str, asyncio.Task[bool]] = {}  # at most one check per socket in flight
        failures: list[BaseException] = []

        def settled(sid: str, task: asyncio.Task[bool]) -> None:
            checking.pop(sid, None)
            error = None if task.cancelled() else task.exception()
            if error is not None:
                failures.append(error)

        try:
            while True:
                await asyncio.sleep(interval)
                if failures:
                    # One line per tick, not one per socket; those are tried again now, and
                    # meanwhile get() refuses the expired view.
                    log.warning("expiry check failed for %d sockets: %s", len(failures), failures[0])
                    failures.clear()
                now = self.sessions.clock.now()
                for sid, handle in list(self._handles.items()):
                    if sid not in checking and handle.bound and handle.expires <= now:
                        # Each socket on its own: one whose handle is busy must not delay the others.
                        task = asyncio.ensure_future(handle.expire_if_due())
                        checking[sid] = task
                        task.add_done_callback(functools.partial(settled, sid))
        finally:
            for task in checking.values():
                task.cancel()

    async def sessions_ended(self, digests: frozenset[bytes]) -> None:
        """Hand every local socket whose session ended a fresh session (it gets ``gotToken``).

        All at once: one socket busy with a slow event must not delay the others' notice.
        """

        async def replace(sid: str, handle: SessionHandle) -> None:
            try:
                await handle.replace_if_ended(digests)
            except StoreUnavailable:
                await self._push(sid, unavailable_message())

        affected = [(sid, h) for sid, h in self._handles.items() if h.bound and h.token.digest in digests]
        await asyncio.gather(*(replace(sid, handle) for sid, handle in affected))
