"""A user's sessions across devices: list them, end one, all, or all but this one.

The application ties a session to a user with :meth:`SessionHandle.login`.
Ending sessions deletes their rows and tells every connection holding one of
them at once (in every process, through the listeners), so their next guarded
event is refused and they are handed a fresh token.
"""

from __future__ import annotations

import hashlib

from attrs import frozen

from application.handshake import Sessions
from domain.token import Token


def public_id(digest: bytes) -> str:
    """A stable name for a session that can be shown and sent back, but not used as a token."""
    return hashlib.sha256(b"session-id:" + digest).hexdigest()[:24]


@frozen
class SessionSummary:
    """What a user may see of one of their sessions: never the token."""

    id: str
    created: float
    last_seen: float
    expires: float
    current: bool


async def list_user_sessions(sessions: Sessions, user_id: str, current: Token | None = None) -> list[SessionSummary]:
    """``user_id``'s live sessions, oldest first; ``current`` marks the caller's own."""
    found = await sessions.store.list_user(user_id, now=sessions.clock.now())
    mine = current.digest if current is not None else None
    return [
        SessionSummary(public_id(digest), s.created, s.last_seen, s.expires, current=digest == mine)
        for digest, s in found
    ]


async def end_user_sessions(
    sessions: Sessions, user_id: str, *, only: str | None = None, keep: Token | None = None
) -> int:
    """End ``user_id``'s sessions: the one whose public id is ``only``, else all but ``keep``.

    Returns how many ended. Typical calls: ``only=<id>`` (sign out that device),
    ``keep=<current token>`` (after a password change), neither (sign out everywhere).
    """
    found = await sessions.store.list_user(user_id, now=sessions.clock.now())
    kept = keep.digest if keep is not None else None
    doomed = [d for d, _ in found if d != kept and (only is None or public_id(d) == only)]
    if not doomed:
        return 0
    removed = await sessions.store.remove_many(doomed)
    sessions.audit("ended_by_user", None, user=hashlib.sha256(user_id.encode()).hexdigest()[:12], count=removed)
    await sessions.announce_ended(doomed)
    return removed
