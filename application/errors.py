"""Errors the use cases raise; transports map them to the wire by name."""

from __future__ import annotations

from domain.errors import SessionError


class SessionNotReady(SessionError):
    """The handle was used before a handshake bound it to a session."""


class SessionEnded(SessionError):
    """The session expired, was destroyed or was rotated away (here or elsewhere)."""


class SessionKeyMissing(SessionError):
    """A guarded operation needs a session key that is not set (e.g. not logged in)."""


class StoreUnavailable(SessionError):
    """The session store cannot be reached, or did not answer within the operation's bound.

    Nothing is acknowledged then. A write that reached the database before its
    connection died, or that a stalled cluster committed after the bound, may
    have landed: it is never repeated blindly, so its outcome is unknown.
    """


class SchemaMissing(SessionError):
    """The store's table does not exist (or lacks columns) and was not created for us."""


class InvalidPayload(SessionError):
    """An event's payload is not of the expected shape (not an object, wrong field types)."""


class InternalError(SessionError):
    """Something failed that is not the client's doing; it is logged, and only this name is sent."""


class TooManyRequests(SessionError):
    """A limit on what one client may ask for was reached (new sessions, queued writes); nothing was written."""
