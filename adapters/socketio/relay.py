"""Tell other server processes that sessions ended, over Redis pub/sub.

python-socketio's client managers relay emits and room operations between
processes, not server-side work (PITFALLS.md), and here each process must
rebind its own sockets' handles to fresh sessions. So this relay carries one
thing only: the digests of sessions that ended. It publishes what this
process ended and hands what others ended to this process's listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets

import redis.asyncio as redis

from application.handshake import Sessions

log = logging.getLogger("socketio_session.relay")


class RedisRelay:
    """An :class:`application.ports.EndedListener` that bridges processes through a Redis channel."""

    def __init__(self, sessions: Sessions, url: str, channel: str = "socketio_session:ended") -> None:
        self.sessions = sessions
        self.channel = channel
        self._redis = redis.Redis.from_url(url)
        self._origin = secrets.token_hex(8)  # our own messages come back to us; skip them
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self.sessions.subscribe(self)
        self._task = asyncio.get_running_loop().create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), timeout=5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    async def sessions_ended(self, digests: frozenset[bytes]) -> None:
        message = json.dumps({"origin": self._origin, "digests": sorted(d.hex() for d in digests)})
        try:
            await self._redis.publish(self.channel, message)
        except redis.RedisError as exc:
            # The sessions are gone from the store either way; other processes'
            # sockets then learn it at their next guarded event.
            log.warning("could not relay ended sessions: %s", exc)

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("relay connection lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(1)

    async def _deliver(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            if message["origin"] == self._origin:
                return
            digests = frozenset(bytes.fromhex(d) for d in message["digests"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed relay message")
            return
        await self.sessions.announce_ended(digests, source=self)
