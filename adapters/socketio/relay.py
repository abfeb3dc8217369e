"""Tell other server processes that sessions ended or got messages, over Redis pub/sub, authenticated.

python-socketio's client managers relay emits and room operations between
processes, not server-side work, and here each process must rebind its own
sockets' handles to fresh sessions, and deliver each message to its own
sockets in each one's order. So this relay carries two things, each on its
own channel: the digests of sessions that ended, and messages just stored in
sessions' mailboxes (application/mailbox.py). It publishes what happened in
this process and hands what happened in others to this process's listeners.

Redis is often reachable from more hosts than the application, and the digests
are in any dump of the table, so every message carries an HMAC-SHA256 under a
key the processes share (SESSION_RELAY_KEY) and a timestamp. A message that is
malformed, unauthenticated or older than :data:`MAX_AGE` ends nothing; such
messages are counted and reported in one WARNING line at most every
:data:`REPORT_EVERY` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

import redis.asyncio as redis

from adapters.socketio.log_throttle import CountedWarning
from application.mailbox import Mailboxes, Sent
from application.sessions import Sessions
from domain.errors import SessionError

log = logging.getLogger("socketio_session.relay")

START_TIMEOUT = 5.0
MAX_AGE = 60.0  # seconds a message stays believable (clocks of the hosts kept in step by NTP)
REPORT_EVERY = 60.0
_MAC_HEX = 64  # hex characters of an HMAC-SHA256
_DIGEST_HEX = 64  # hex characters of a session's SHA-256 digest


class RelayUnavailable(SessionError):
    """The message queue's Redis cannot be reached, so processes could not tell each other that sessions ended."""


def sign(key: bytes, body: bytes) -> bytes:
    """``<hex HMAC-SHA256 of body>.<body>``: what goes on the channel."""
    return hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b"." + body


def verified_body(key: bytes, message: bytes) -> bytes | None:
    """The body of a message signed with ``key``, or None if it is not one."""
    mac, dot, body = message.partition(b".")
    if not dot or len(mac) != _MAC_HEX:
        return None
    expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    return body if hmac.compare_digest(mac, expected) else None


class RedisRelay:
    """An :class:`application.ports.EndedListener` that bridges processes through a Redis channel."""

    def __init__(
        self,
        sessions: Sessions,
        url: str,
        *,
        key: str,
        channel: str = "socketio_session:ended",
        clock: Callable[[], float] = time.time,
        mail: Mailboxes | None = None,
        mail_channel: str = "socketio_session:mail",
    ) -> None:
        if not key:
            raise ValueError("the relay needs a key shared by every process (SESSION_RELAY_KEY)")
        self.sessions = sessions
        self.channel = channel
        self.mail = mail
        self.mail_channel = mail_channel
        self._key = key.encode()
        self._clock = clock
        self._redis = redis.Redis.from_url(url)
        self._origin = secrets.token_hex(8)  # our own messages come back to us; skip them
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._rejected = CountedWarning(
            log,
            "dropped %d relay messages on %s that were malformed, stale or not signed with SESSION_RELAY_KEY"
            " (is another host publishing there?)",
            every=REPORT_EVERY,
        )

    @property
    def rejected(self) -> int:
        """Messages dropped as malformed, unauthenticated or stale, since start."""
        return self._rejected.total

    async def start(self) -> None:
        """Subscribe; :class:`RelayUnavailable` if Redis does not answer within ``START_TIMEOUT`` seconds."""
        self._task = asyncio.get_running_loop().create_task(self._listen())
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=START_TIMEOUT)
        except TimeoutError:
            await self.close()
            kwargs = self._redis.connection_pool.connection_kwargs  # never the URL: it may hold a password
            where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
            raise RelayUnavailable(
                f"cannot reach Redis at {where} (SOCKETIO_MESSAGE_QUEUE) within {START_TIMEOUT:g} s"
            ) from None
        self.sessions.subscribe(self)
        if self.mail is not None:
            self.mail.subscribe(self)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_every(REPORT_EVERY))

    async def close(self) -> None:
        if self in self.sessions.listeners:
            self.sessions.listeners.remove(self)
        if self.mail is not None and self in self.mail.listeners:
            self.mail.listeners.remove(self)
        for task in (self._task, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._flusher = None
        self._rejected.flush(self.channel)
        await self._redis.aclose()

    async def _flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self._rejected.flush(self.channel)

    async def sessions_ended(self, digests: frozenset[bytes]) -> None:
        body = json.dumps(
            {"origin": self._origin, "at": self._clock(), "digests": sorted(d.hex() for d in digests)}
        ).encode()
        try:
            await self._redis.publish(self.channel, sign(self._key, body))
        except redis.RedisError as exc:
            # The sessions are gone from the store either way; other processes'
            # sockets then learn it at their next guarded event.
            log.warning("could not relay ended sessions: %s", exc)

    async def messages_sent(self, sent: Sent) -> None:
        body = json.dumps(
            {
                "origin": self._origin,
                "at": self._clock(),
                "event": sent.event,
                "payload": sent.payload,
                "sentAt": sent.sent_at,
                "targets": [[digest.hex(), message_id] for digest, message_id in sent.targets],
            },
            ensure_ascii=False,
        ).encode()
        try:
            await self._redis.publish(self.mail_channel, sign(self._key, body))
        except redis.RedisError as exc:
            # Stored either way: other processes' sockets get it on their next connection,
            # or with the next message to that session.
            log.warning("could not relay sent messages: %s", exc)

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel, self.mail_channel)
                    self._ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            try:
                                if _name(message.get("channel")) == self.mail_channel:
                                    await self._deliver_mail(message["data"])
                                else:
                                    await self._deliver(message["data"])
                            except Exception:
                                # One bad delivery must not drop the subscription (and what follows).
                                log.exception("relay delivery failed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("relay connection lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(1)

    async def _deliver(self, raw: bytes) -> None:
        digests = self._read(raw)
        if digests is None:
            self._rejected.count(self.channel)
        elif digests:
            await self.sessions.announce_ended(digests, source=self)

    async def _deliver_mail(self, raw: bytes) -> None:
        sent = self._read_mail(raw)
        if sent is False:
            self._rejected.count(self.mail_channel)
        elif sent is not None and self.mail is not None:
            await self.mail.announce(sent, source=self)

    def _read_mail(self, raw: object) -> Sent | Literal[False] | None:
        """The message a genuine announcement from another process holds (None for our own), else False."""
        message = self._genuine(raw)
        if message is None:
            return False
        if message.get("origin") == self._origin:
            return None
        try:
            targets = tuple((bytes.fromhex(d), int(i)) for d, i in message["targets"] if len(d) == _DIGEST_HEX)
            return Sent(str(message["event"]), str(message["payload"]), float(message["sentAt"]), targets)
        except (ValueError, KeyError, TypeError):
            return False

    def _genuine(self, raw: object) -> dict[str, Any] | None:
        """The body of a message signed with our key and recent enough, decoded; None if it is not one."""
        if not isinstance(raw, bytes):
            return None
        body = verified_body(self._key, raw)
        if body is None:
            return None
        try:
            message = json.loads(body)
            if not isinstance(message, dict) or not abs(self._clock() - float(message["at"])) <= MAX_AGE:
                return None  # a replay of an old message, or a clock far off
            return message
        except (ValueError, KeyError, TypeError):
            return None

    def _read(self, raw: object) -> frozenset[bytes] | None:
        """The digests a genuine message from another process names (empty for our own), else None."""
        message = self._genuine(raw)
        if message is None:
            return None
        try:
            if message["origin"] == self._origin:
                return frozenset()
            return frozenset(bytes.fromhex(d) for d in message["digests"] if len(d) == _DIGEST_HEX)
        except (ValueError, KeyError, TypeError):
            return None


def _name(channel: object) -> str:
    return channel.decode() if isinstance(channel, bytes) else str(channel)
