"""Sessions in a dict: for tests and for embedding where nothing must persist."""

from __future__ import annotations

from collections.abc import Callable, Collection

from domain.session import Change, Session


class MemoryStore:
    """A :class:`application.ports.SessionStore` that lives and dies with the process.

    ``sessions`` is public on purpose: tests read it to see what was stored.
    Every method runs without suspending, so each one is atomic under asyncio.
    """

    def __init__(self) -> None:
        self.sessions: dict[bytes, Session] = {}

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
        return moved

    async def delete(self, digest: bytes) -> bool:
        return self.sessions.pop(digest, None) is not None

    async def delete_many(self, digests: Collection[bytes]) -> int:
        return sum(self.sessions.pop(d, None) is not None for d in set(digests))

    async def list_user(self, user_id: str, *, now: float) -> list[tuple[bytes, Session]]:
        found = [(d, s) for d, s in self.sessions.items() if s.user_id == user_id and s.live_at(now)]
        return sorted(found, key=lambda pair: pair[1].created)

    async def purge(self, *, now: float, batch: int, on_batch: Callable[[int], None] | None = None) -> int | None:
        expired = [d for d, s in self.sessions.items() if not s.live_at(now)]
        for digest in expired:
            del self.sessions[digest]
        return len(expired)

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
