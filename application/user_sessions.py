"""A user's sessions across devices: list them, end one, all, or all but this one.

The application ties a session to a user with :meth:`SessionHandle.login`.
Ending sessions deletes their rows and tells every connection holding one of
them at once (in every process, through the listeners), so their next guarded
event is refused and they are handed a fresh token.
"""

from __future__ import annotations

import hashlib

from attrs import frozen

from application.sessions import Sessions
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
    """``user_id``'s live sessions, oldest first, at most ``sessions.max_per_user``; ``current`` marks the caller's.

    Past the cap (sessions logged in concurrently, before the cap ended the
    extra ones) the most recently seen are listed.
    """
    found = await sessions.store.list_user(user_id, now=sessions.clock.now())
    if len(found) > sessions.max_per_user:
        recent = sorted(found, key=lambda pair: pair[1].last_seen)[-sessions.max_per_user :]
        found = sorted(recent, key=lambda pair: pair[1].created)
    mine = current.digest if current is not None else None
    return [
        SessionSummary(public_id(digest), s.created, s.last_seen, s.expires, current=digest == mine)
        for digest, s in found
    ]


async def cap_user_sessions(sessions: Sessions, user_id: str, *, keep: Token) -> int:
    """End ``user_id``'s least recently seen sessions beyond ``sessions.max_per_user``, never ``keep``.

    The concurrent-session policy (OWASP ASVS 5.0 V7 asks for a documented one): a login beyond the
    cap signs out the device that was idle longest. Returns how many ended.
    """
    found = await sessions.store.list_user(user_id, now=sessions.clock.now())
    excess = len(found) - sessions.max_per_user
    if excess <= 0:
        return 0
    others = sorted((pair for pair in found if pair[0] != keep.digest), key=lambda pair: pair[1].last_seen)
    doomed = [digest for digest, _ in others[:excess]]
    removed = await sessions.store.delete_many(doomed)
    sessions.audit("ended_over_cap", None, user=sessions.fingerprint_user(user_id), count=removed)
    await sessions.announce_ended(doomed)
    return removed


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
    removed = await sessions.store.delete_many(doomed)
    sessions.audit("ended_by_user", None, user=sessions.fingerprint_user(user_id), count=removed)
    await sessions.announce_ended(doomed)
    return removed
