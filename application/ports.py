"""The ports the use cases need: a session store and a clock.

Adapters implement these; the use cases know nothing else about them. A store
is keyed by the SHA-256 digest of a token, never by the token.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from domain.mailbox import Message
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
        """Rotate: move a live session from ``old`` to ``new`` in one atomic step, touching it.

        In the same step, apply ``change`` (a write: the version counts it) and
        record ``user_id`` as the owner when given. When the session already
        has another owner than ``user_id``, its data is cleared first (a new
        user never sees the previous one's keys), and that counts as a write. Returns the session as
        stored under ``new``, or None when ``old`` is not live at ``now``
        (nothing changes then). Raises :class:`domain.errors.SessionTooLarge`,
        changing nothing, when ``change`` would exceed ``max_bytes``.
        """
        ...

    async def delete(self, digest: bytes) -> bool:
        """Delete the session under ``digest``; False when there was none."""
        ...

    async def list_user(self, user_id: str, *, now: float) -> list[tuple[bytes, Session]]:
        """The live sessions recorded as ``user_id``'s, with their digests, oldest first."""
        ...

    async def delete_many(self, digests: Collection[bytes]) -> int:
        """Delete the sessions under ``digests``; how many there were."""
        ...

    async def purge(self, *, now: float, batch: int, on_batch: Callable[[int], None] | None = None) -> int | None:
        """Delete every session expired by ``now``, at most ``batch`` rows per statement.

        Returns how many went, or None when another process is purging (only
        one purges at a time). ``on_batch`` hears the running total after each
        full batch. Messages past their own deadline go too (:class:`MailboxStore`).
        """
        ...


class MailboxStore(Protocol):
    """Each session's mailbox (domain/mailbox.py), kept beside the session and ending with it.

    A session's mailbox changes only with its session row locked, and the
    session's ``last_message`` and ``waiting`` change with it, so a handshake
    reads them with the session. Messages move with the session when it
    rotates, end when it ends (delete, expiry, purge), and are dropped when a
    rotation records another owner (:meth:`SessionStore.rotate`).
    """

    async def send(
        self, digests: Collection[bytes], event: str, payload: str, *, now: float, expires: float, max_messages: int
    ) -> dict[bytes, int]:
        """Queue the message for every session under ``digests`` live at ``now``, in one atomic step.

        Each gets the next id of its own (one more than its ``last_message``).
        Returns the id given per digest queued; digests with no live session are
        left out. Raises :class:`domain.mailbox.MailboxFull`, queueing nothing
        anywhere, when one of those sessions holds ``max_messages`` already.
        """
        ...

    async def pending(self, digest: bytes, *, now: float, after: int = 0, limit: int = 100) -> list[Message]:
        """Up to ``limit`` messages of the session under ``digest`` after id ``after``, unexpired at ``now``, by id."""
        ...

    async def ack(self, digest: bytes, ids: Collection[int]) -> int:
        """Remove the messages ``ids`` from the mailbox of the session under ``digest``; how many were there."""
        ...


class StoreAdmin(Protocol):
    """A store as the composition root and the CLI see it: opened, checked, created, asked for health.

    The use cases never call these; entrypoints/ does, for every store alike.
    """

    def describe(self) -> str:
        """Where the sessions are, for messages: ``mysql host:3306/db table t``, never a password."""
        ...

    async def open(self) -> None:
        """Connect (or open the file) and check the schema; raises a named error saying why not.

        A failed open releases whatever it had opened, so the process can exit.
        """
        ...

    async def check(self) -> None:
        """Verify that the store answers and has our schema, changing nothing."""
        ...

    async def migrate(self) -> None:
        """Create the schema unless it is there (the explicit opt-in); safe to repeat."""
        ...

    async def ping(self) -> None:
        """Return once the store answers; raise :class:`application.errors.StoreUnavailable` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


class Store(SessionStore, MailboxStore, StoreAdmin, Protocol):
    """What a concrete store adapter is: the ports the use cases call, and the admin side."""


class EndedListener(Protocol):
    """Something holding sessions open (a transport, a relay to other processes)
    that must hear at once when sessions end elsewhere."""

    async def sessions_ended(self, digests: frozenset[bytes]) -> None:
        """The sessions under ``digests`` were destroyed or rotated away."""
        ...
