"""Errors the domain raises when it is handed something it cannot accept."""

from __future__ import annotations


class SessionError(Exception):
    """Base class of every error this package raises on purpose.

    The class name is the stable, public error name: transports put it on the
    wire (``{"ok": false, "error": "SessionTooLarge"}``) instead of the text.
    """

    @property
    def name(self) -> str:
        return type(self).__name__


class MalformedToken(SessionError):
    """A presented token is not a string of the token alphabet and length."""


class InvalidKey(SessionError):
    """A session key is not a non-empty string of bounded length."""


class InvalidValue(SessionError):
    """A session value cannot be stored as JSON (NaN, bytes, objects, ...)."""


class SessionTooLarge(SessionError):
    """A write would make the session larger than the configured maximum."""
