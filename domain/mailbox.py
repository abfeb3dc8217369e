"""A session's mailbox: server-to-client messages that wait in the store until the client acknowledges them."""

from __future__ import annotations

from attrs import field, frozen

from domain.errors import InvalidValue, SessionError, SessionTooLarge
from domain.values import DEFAULT_MAX_BYTES, encode, has_surrogate

MAX_EVENT_CHARS = 191  # VARCHAR(191), like a user id
DEFAULT_MAX_MESSAGES = 1000
DEFAULT_MAILBOX_TTL = 7 * 86400.0
# Events the Socket.IO client reserves, and the session protocol's own: a message may not pose as one.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener", "getToken", "gotToken"}
)


class MailboxFull(SessionError):
    """A session's mailbox holds as many messages as it may; nothing was queued."""


@frozen
class Message:
    """One message in a session's mailbox.

    ``id`` is the session's own count of messages ever sent to it: stable, and
    increasing in send order. ``payload`` is the JSON text, as stored.
    """

    id: int
    event: str
    payload: str
    sent_at: float
    expires: float


def check_event(event: object) -> str:
    """``event`` if a message may be sent under that name, else :class:`InvalidValue`."""
    if not isinstance(event, str) or not event or len(event) > MAX_EVENT_CHARS:
        raise InvalidValue(f"an event name is a string of 1 to {MAX_EVENT_CHARS} characters")
    if "\x00" in event or has_surrogate(event):
        raise InvalidValue("an event name cannot contain NUL or lone surrogates")
    if event in RESERVED_EVENTS:
        raise InvalidValue(f"{event!r} is reserved by Socket.IO or the session protocol")
    return event


@frozen
class MailboxPolicy:
    """How much a mailbox may hold: messages per session, bytes per message, seconds per message."""

    max_messages: int = field(default=DEFAULT_MAX_MESSAGES)
    ttl: float = DEFAULT_MAILBOX_TTL
    max_bytes: int = DEFAULT_MAX_BYTES

    @max_messages.validator
    def _positive(self, _attribute: object, value: int) -> None:
        if value < 1:
            raise ValueError("a mailbox holds at least one message")

    def encode_payload(self, payload: object) -> str:
        """The payload as JSON text; :class:`InvalidValue` if it is not JSON, :class:`SessionTooLarge` if too big."""
        text = encode(payload)
        size = len(text.encode("utf-8"))
        if size > self.max_bytes:
            raise SessionTooLarge(f"message payload is {size} bytes; the maximum is {self.max_bytes}")
        return text

    def expires(self, sent_at: float) -> float:
        """When a message sent at ``sent_at`` is dropped, acknowledged or not."""
        return sent_at + self.ttl
