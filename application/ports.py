"""The ports the use cases need: a session store and a clock.

Adapters implement these; the use cases know nothing else about them. A store
is keyed by the SHA-256 digest of a token, never by the token.
"""

from __future__ import annotations

from typing import Protocol

from domain.session import Change, Session


class Clock(Protocol):
    def now(self) -> float:
        """Unix time in seconds."""
        ...


class SessionStore(Protocol):
    """Durable sessions. Every method returns only once its effect is stored.

    Methods raise :class:`application.errors.StoreUnavailable` when the store
    cannot be reached, and nothing else for operational trouble.
    """

    async def insert(self, digest: bytes, session: Session) -> None:
        """Store a new session under ``digest``."""
        ...

    async def fetch(self, digest: bytes) -> Session | None:
        """The session stored under ``digest`` (expired or not), or None."""
        ...

    async def write(
        self, digest: bytes, change: Change, *, now: float, idle_deadline: float, max_bytes: int
    ) -> int | None:
        """Apply ``change`` atomically to the live session under ``digest``.

        Also bumps the version, sets ``last_seen`` to ``now`` and extends the
        idle deadline to ``min(idle_deadline, absolute deadline)``. Concurrent
        writers, in this process or others, never lose each other's keys.

        Returns the new version, or None when no session under ``digest`` is
        live at ``now`` (nothing is written then). Raises
        :class:`domain.errors.SessionTooLarge`, writing nothing, when the stored
        session would exceed ``max_bytes``.
        """
        ...

    async def touch(self, digest: bytes, *, now: float, idle_deadline: float) -> bool:
        """Extend a live session's idle deadline; False when it is not live at ``now``."""
        ...

    async def rename(self, old: bytes, new: bytes, *, now: float, idle_deadline: float) -> bool:
        """Move a live session from ``old`` to ``new`` (touching it); False when not live."""
        ...

    async def set_user(self, digest: bytes, user_id: str | None, *, now: float) -> bool:
        """Record the session's owner; False when it is not live at ``now``."""
        ...

    async def remove(self, digest: bytes) -> bool:
        """Delete the session under ``digest``; False when there was none."""
        ...

    async def purge(self, *, now: float, batch: int) -> int:
        """Delete up to ``batch`` sessions that expired before ``now``; how many went."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...
