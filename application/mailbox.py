"""Messages that wait for the session: durable server-to-client delivery across disconnects and restarts.

The server sends an event to one session or to every live session of a user;
the call returns once the message is stored in the session's mailbox (the
store's :class:`application.ports.MailboxStore`). Every connection bound to
that session, in this process or (through a relay) another, receives it at
once; a session with no connection keeps it until one binds it. Each
connection gets each message once, in id order, and its client acknowledges
it; an acknowledged message is deleted. What is not acknowledged comes again
on the next connection: delivery is at least once, and the stable id lets a
client drop a duplicate (docs/client.md).

Transport-free: :class:`Inbox` hands each message to a ``deliver`` function
of the transport's making (adapters/socketio/transport.py emits it).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

from attrs import define, field, frozen

from application.errors import StoreUnavailable
from application.handle import SessionHandle
from application.ports import MailboxStore
from application.sessions import Sessions
from domain.mailbox import MailboxPolicy, Message, check_event
from domain.session import Session
from domain.token import Token
from domain.values import JSON, check_user_id

log = logging.getLogger("socketio_session.mailbox")

PAGE = 100  # messages read per query when a connection catches up
RECENT_FOR = 30.0  # seconds a process remembers which message ids it saw announced (see Mailboxes.recent_id)
MAX_THREADS = 8  # sessions one connection remembers its deliveries for (a client that switches tokens)


@frozen
class Sent:
    """A message just stored: its event and payload (JSON text), when, and the id it got in each session."""

    event: str
    payload: str
    sent_at: float
    targets: tuple[tuple[bytes, int], ...]  # (session digest, message id)


class MessageListener(Protocol):
    """Something that delivers what was sent (a transport's sockets, a relay to other processes)."""

    async def messages_sent(self, sent: Sent) -> None:
        """``sent`` is durable in its sessions' mailboxes: deliver it to whoever holds them."""
        ...


@define
class Mailboxes:
    """The mailbox use cases over a store; one instance per process, beside :class:`Sessions`.

    >>> mail = Mailboxes(sessions, store)                                   # doctest: +SKIP
    >>> await mail.send_to_user("alice", "notice", {"text": "hi"})          # doctest: +SKIP
    2
    """

    sessions: Sessions
    store: MailboxStore
    policy: MailboxPolicy = field(factory=MailboxPolicy)
    listeners: list[MessageListener] = field(factory=list)
    # digest -> (the highest message id announced here, when): what a connection that binds the
    # session a moment later must not miss (Inbox.open).
    _recent: dict[bytes, tuple[int, float]] = field(factory=dict, init=False)
    _pruned: float = field(default=0.0, init=False)

    def subscribe(self, listener: MessageListener) -> None:
        """Have ``listener`` told of every message stored (here, or elsewhere through a relay)."""
        self.listeners.append(listener)

    async def send(self, handle: SessionHandle, event: str, payload: JSON) -> int:
        """Queue ``event`` with ``payload`` for the session of ``handle``; 1 once durable, 0 if it has ended.

        Raises :class:`domain.mailbox.MailboxFull` (nothing queued) when its
        mailbox is full, :class:`domain.errors.SessionTooLarge` for a payload
        over the size limit, :class:`domain.errors.InvalidValue` for a payload
        that is not JSON or a reserved event name.
        """
        event, text = self._checked(event, payload)
        return len(await self._send([handle.token.digest], event, text))

    async def send_to_user(self, user_id: str, event: str, payload: JSON) -> int:
        """Queue ``event`` with ``payload`` for every live session of ``user_id``; how many, once durable.

        All or nothing: one full mailbox among them raises
        :class:`domain.mailbox.MailboxFull` and queues nothing anywhere.
        """
        user_id = check_user_id(user_id)
        event, text = self._checked(event, payload)
        listed = await self._user_sessions(user_id)
        given = await self._send(listed, event, text)
        missed = {created for digest, created in listed.items() if digest not in given}
        if missed:
            # A listed session moved to a new token between the listing and the send (a login
            # rotates it): it is still the user's, under a digest the listing could not know. It
            # is found again by its creation time, which moves with it, so that a session that got
            # the message and rotated afterwards is not sent it twice (under a second id).
            again = await self._user_sessions(user_id)
            moved = {digest for digest, created in again.items() if digest not in listed and created in missed}
            if moved:
                given |= await self._send(moved, event, text)
        return len(given)

    def _checked(self, event: str, payload: JSON) -> tuple[str, str]:
        return check_event(event), self.policy.encode_payload(payload)

    async def _user_sessions(self, user_id: str) -> dict[bytes, float]:
        """The user's live sessions: digest -> when the session was created."""
        found = await self.sessions.store.list_user(user_id, now=self.sessions.clock.now())
        return {digest: session.created for digest, session in found}

    async def _send(self, digests: Collection[bytes], event: str, text: str) -> dict[bytes, int]:
        if not digests:
            return {}
        now = self.sessions.clock.now()
        given = await self.store.send(
            digests, event, text, now=now, expires=self.policy.expires(now), max_messages=self.policy.max_messages
        )
        if given:
            await self.announce(Sent(event, text, now, tuple(given.items())))
        return given

    async def announce(self, sent: Sent, *, source: MessageListener | None = None) -> None:
        """Tell every listener but ``source`` of ``sent`` (stored already); a failing listener is logged."""
        self._remember(sent)
        outcomes = await asyncio.gather(
            *(listener.messages_sent(sent) for listener in list(self.listeners) if listener is not source),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                log.error("a listener failed to deliver sent messages", exc_info=outcome)

    def recent_id(self, digest: bytes) -> int:
        """The highest message id announced in this process for ``digest`` in the last ``RECENT_FOR`` seconds, or 0.

        A handshake reads the session before its connection is listed for
        delivery; a message announced in between is found here.
        """
        seen = self._recent.get(digest)
        return seen[0] if seen is not None else 0

    def _remember(self, sent: Sent) -> None:
        now = self.sessions.clock.now()
        if now - self._pruned > RECENT_FOR:
            self._recent = {d: seen for d, seen in self._recent.items() if now - seen[1] <= RECENT_FOR}
            self._pruned = now
        for digest, message_id in sent.targets:
            previous = self._recent.get(digest)
            self._recent[digest] = (max(message_id, previous[0] if previous else 0), now)

    async def pending(self, digest: bytes, *, after: int = 0, limit: int = PAGE) -> list[Message]:
        """Unexpired messages of the session under ``digest`` after id ``after``, in id order."""
        return await self.store.pending(digest, now=self.sessions.clock.now(), after=after, limit=limit)

    async def ack(self, digest: bytes, ids: Collection[int]) -> int:
        """Delete acknowledged messages ``ids`` of the session under ``digest``; how many were there."""
        return await self.store.ack(digest, ids)


@frozen
class Delivery:
    """One message for one connection: the transport emits it and calls ``ack`` when its client acknowledges it."""

    event: str
    payload: JSON
    id: int
    sent_at: float
    replayed: bool  # from the mailbox on (re)connection, not live
    ack: Callable[[], None]


Deliver = Callable[[Delivery], Awaitable[None]]


@define(eq=False)
class _Thread:
    """One session as seen by one connection: its digest now, and how far delivery got."""

    digest: bytes
    # Every message of the session up to this id was delivered on this connection or needs no delivery.
    cursor: int = 0
    acks: set[int] = field(factory=set)
    flushing: bool = False


class Inbox:
    """One connection's delivery: each message of its session once, in id order, replayed first.

    The transport calls :meth:`open` each time the connection's handle binds a
    session and its ``gotToken`` went out, and :meth:`receive` for every
    message announced to that session; both run under one lock, so a live
    message never overtakes the replay.
    """

    def __init__(self, mail: Mailboxes, deliver: Deliver) -> None:
        self._mail = mail
        self._deliver = deliver
        self._lock = asyncio.Lock()
        self._threads: dict[bytes, _Thread] = {}
        self._current: _Thread | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    @property
    def digest(self) -> bytes | None:
        """The session this connection delivers for now, if any."""
        return None if self._current is None else self._current.digest

    async def open(self, token: Token, session: Session, *, moved_from: bytes | None = None) -> None:
        """Deliver for ``session`` (just bound under ``token``) from now on: first what waits, in id order.

        ``moved_from`` is the digest this connection's own rotation moved the
        session from (a login): same session, so nothing delivered on this
        connection comes again. A resume with an empty mailbox reads nothing
        (``session.waiting`` says so), unless a message was announced for it
        while the handshake ran.
        """
        async with self._lock:
            thread = self._thread(token.digest, moved_from)
            hint = self._mail.recent_id(thread.digest)
            # The hint counts only past what the handshake read: a message announced after it.
            if (session.waiting and session.last_message > thread.cursor) or hint > max(
                thread.cursor, session.last_message
            ):
                await self._catch_up(thread, replayed=True)
            # Whatever of these ids the catch-up did not find was acknowledged or expired.
            thread.cursor = max(thread.cursor, session.last_message, hint)

    async def receive(self, digest: bytes, message_id: int, event: str, payload: str, sent_at: float) -> None:
        """A message was stored for the session under ``digest``: deliver it unless this connection has it."""
        async with self._lock:
            thread = self._current
            if thread is None or thread.digest != digest or message_id <= thread.cursor:
                return  # not delivering for that session (open() catches up), or delivered already
            if message_id > thread.cursor + 1:
                # An earlier message is still on its way here (sends to one session commit in id
                # order, but relays can reorder): read them from the store, in order.
                await self._catch_up(thread, replayed=False)
                thread.cursor = max(thread.cursor, message_id)
                return
            await self._emit(thread, Message(message_id, event, payload, sent_at, 0.0), replayed=False)

    @property
    def acking(self) -> bool:
        """Whether acknowledgements are being stored now (:meth:`drain` waits for them)."""
        return bool(self._flushes)

    async def drain(self) -> None:
        """Wait until every acknowledgement received so far is stored (or failed)."""
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    def _thread(self, digest: bytes, moved_from: bytes | None) -> _Thread:
        thread = self._threads.pop(moved_from, None) if moved_from is not None else None
        thread = thread or self._threads.pop(digest, None) or _Thread(digest)
        thread.digest = digest
        self._threads[digest] = thread  # the most recent last
        while len(self._threads) > MAX_THREADS:
            del self._threads[next(iter(self._threads))]
        self._current = thread
        return thread

    async def _catch_up(self, thread: _Thread, *, replayed: bool) -> None:
        while True:
            page = await self._mail.pending(thread.digest, after=thread.cursor, limit=PAGE)
            for message in page:
                await self._emit(thread, message, replayed=replayed)
            if len(page) < PAGE:
                return

    async def _emit(self, thread: _Thread, message: Message, *, replayed: bool) -> None:
        thread.cursor = message.id
        ack = functools.partial(self._acked, thread, message.id)
        await self._deliver(
            Delivery(message.event, json.loads(message.payload), message.id, message.sent_at, replayed, ack)
        )

    def _acked(self, thread: _Thread, message_id: int) -> None:
        thread.acks.add(message_id)
        if not thread.flushing:
            thread.flushing = True
            task = asyncio.get_running_loop().create_task(self._flush(thread))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, thread: _Thread) -> None:
        """Store the acknowledgements of ``thread``: whatever arrived meanwhile goes in the next statement."""
        try:
            while thread.acks:
                ids, thread.acks = thread.acks, set()
                try:
                    await self._mail.ack(thread.digest, ids)
                except StoreUnavailable as exc:
                    # Not deleted: those messages come again on the next connection (at least once).
                    log.warning("could not store %d acknowledgements: %s", len(ids), exc)
        finally:
            thread.flushing = False
