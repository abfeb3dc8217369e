"""Session tokens: what the client keeps, and what the store may keep."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable
from functools import cached_property

from attrs import field, frozen

from domain.errors import MalformedToken

TOKEN_BYTES = 32  # 256 bits; OWASP asks for at least 64, the old package used 192.

# URL-safe base64 without padding. New tokens are 43 characters; the old npm
# package issued 32, and migrated sessions must keep working, so both lengths
# and anything between are accepted. The upper bound stops a hostile client
# from making us hash a megabyte.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,64}")


def _check_shape(_: object, __: object, value: str) -> None:
    if not isinstance(value, str) or _TOKEN_SHAPE.fullmatch(value) is None:
        raise MalformedToken("a token is 32 to 64 characters of A-Z a-z 0-9 _ -")


@frozen(repr=False)
class Token:
    """A bearer token, validated on construction.

    >>> token = Token.generate()
    >>> Token.parse(token.value) == token
    True
    """

    value: str = field(validator=_check_shape)

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> Token:
        """A fresh token of 256 bits from ``random_bytes`` (the OS CSPRNG by default)."""
        raw = random_bytes(TOKEN_BYTES)
        if len(raw) != TOKEN_BYTES:
            raise ValueError(f"random source returned {len(raw)} bytes, wanted {TOKEN_BYTES}")
        return cls(base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"))

    @classmethod
    def parse(cls, presented: object) -> Token:
        """The token a client presented, or :class:`MalformedToken`."""
        if not isinstance(presented, str):
            raise MalformedToken("a token is a string")
        return cls(presented)

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of the token: the only form the store ever sees.

        A dump of the sessions table therefore holds no usable token.
        """
        return hashlib.sha256(self.value.encode("ascii")).digest()

    @property
    def redacted(self) -> str:
        """Enough of the token to tell two apart in a debugger, not to use one."""
        return f"{self.value[:4]}…"

    def __repr__(self) -> str:
        return f"Token({self.redacted})"

    def __str__(self) -> str:
        return self.redacted
