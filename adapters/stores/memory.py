"""Sessions in a dict: for tests and for embedding where nothing must persist."""

from __future__ import annotations

from collections.abc import Callable, Collection

from domain.mailbox import MailboxFull, Message
from domain.session import Change, Session


class MemoryStore:
    """A :class:`application.ports.SessionStore` that lives and dies with the process.

    ``sessions`` and ``mailboxes`` are public on purpose: tests read them to
    see what was stored. Every method runs without suspending, so each one is
    atomic under asyncio.
    """

    def __init__(self) -> None:
        self.sessions: dict[bytes, Session] = {}
        self.mailboxes: dict[bytes, dict[int, Message]] = {}  # by session digest, then message id

    async def insert(self, digest: bytes, session: Session) -> None:
        if digest in self.sessions:
            raise KeyError("a session with this digest exists")
        self.sessions[digest] = session

    async def fetch(self, digest: bytes) -> Session | None:
        return self.sessions.get(digest)

    def _live(self, digest: bytes, now: float) -> Session | None:
        session = self.sessions.get(digest)
        return session if session is not None and session.live_at(now) else None

    async def write(
        self, digest: bytes, change: Change, *, now: float, idle_deadline: float, max_bytes: int
    ) -> int | None:
        session = self._live(digest, now)
        if session is None:
            return None
        self.sessions[digest] = written = session.written(change, now, idle_deadline, max_bytes)
        return written.version

    async def touch(self, digest: bytes, *, now: float, idle_deadline: float) -> bool:
        session = self._live(digest, now)
        if session is None:
            return False
        self.sessions[digest] = session.touched(now, idle_deadline)
        return True

    async def rotate(
        self,
        old: bytes,
        new: bytes,
        *,
        now: float,
        idle_deadline: float,
        max_bytes: int,
        change: Change | None = None,
        user_id: str | None = None,
    ) -> Session | None:
        session = self._live(old, now)
        if session is None:
            return None
        moved = session.moved(now, idle_deadline, max_bytes, change, user_id)
        del self.sessions[old]
        self.sessions[new] = moved
        mailbox = self.mailboxes.pop(old, {})
        if moved.waiting:
            self.mailboxes[new] = mailbox  # same session: its messages move with it
        return moved

    async def delete(self, digest: bytes) -> bool:
        self.mailboxes.pop(digest, None)
        return self.sessions.pop(digest, None) is not None

    async def delete_many(self, digests: Collection[bytes]) -> int:
        return sum([await self.delete(d) for d in set(digests)])

    async def list_user(self, user_id: str, *, now: float) -> list[tuple[bytes, Session]]:
        found = [(d, s) for d, s in self.sessions.items() if s.user_id == user_id and s.live_at(now)]
        return sorted(found, key=lambda pair: pair[1].created)

    async def purge(self, *, now: float, batch: int, on_batch: Callable[[int], None] | None = None) -> int | None:
        expired = [d for d, s in self.sessions.items() if not s.live_at(now)]
        for digest in expired:
            await self.delete(digest)
        for digest, mailbox in list(self.mailboxes.items()):
            old = [i for i, m in mailbox.items() if m.expires <= now]
            await self.ack(digest, old)
        return len(expired)

    # -- the mailbox (application.ports.MailboxStore) -------------------------------------

    async def send(
        self, digests: Collection[bytes], event: str, payload: str, *, now: float, expires: float, max_messages: int
    ) -> dict[bytes, int]:
        live = {d: s for d in set(digests) if (s := self._live(d, now)) is not None}
        if any(s.waiting >= max_messages for s in live.values()):
            raise MailboxFull(f"a mailbox holds {max_messages} messages already")
        given: dict[bytes, int] = {}
        for digest, session in live.items():
            self.sessions[digest] = queued = session.queued()
            message = Message(queued.last_message, event, payload, now, expires)
            self.mailboxes.setdefault(digest, {})[message.id] = message
            given[digest] = message.id
        return given

    async def pending(self, digest: bytes, *, now: float, after: int = 0, limit: int = 100) -> list[Message]:
        mailbox = self.mailboxes.get(digest, {})
        return [m for i, m in sorted(mailbox.items()) if i > after and m.expires > now][:limit]

    async def ack(self, digest: bytes, ids: Collection[int]) -> int:
        mailbox = self.mailboxes.get(digest, {})
        removed = sum(mailbox.pop(i, None) is not None for i in set(ids))
        if not mailbox:
            self.mailboxes.pop(digest, None)
        session = self.sessions.get(digest)
        if removed and session is not None:
            self.sessions[digest] = session.acked(removed)
        return removed

    # -- what the composition root needs (application.ports.StoreAdmin) -----------------

    def describe(self) -> str:
        return "memory (this process only)"

    async def open(self) -> None:
        """Nothing to open: the dict is there from the start."""

    async def check(self) -> None:
        """Nothing to check."""

    async def migrate(self) -> None:
        """Nothing to create."""

    async def ping(self) -> None:
        """Always answers."""

    async def close(self) -> None:
        """Nothing to release; the sessions stay until the object goes."""
