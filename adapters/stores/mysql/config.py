"""Where the MySQL store connects, and its bounds: read from a ``mysql://`` URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from attrs import frozen

from adapters.stores.ddl import DEFAULT_TABLE

_UNREADABLE_URL = (
    "cannot read user:password@host:port/database from the mysql:// URL: the port must be a number up to 65535, and"
    " a user or password holding # / ? @ : must be percent-encoded (# as %23, / as %2F, ? as %3F, @ as %40, : as %3A)"
)


@frozen
class MySQLConfig:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    database: str = "test"
    table: str = DEFAULT_TABLE
    pool_size: int = 10
    # The longest one operation may take, waiting for a pooled connection and
    # retries included, before it reports StoreUnavailable instead of hanging
    # (a stopped or frozen server must not stall the clients).
    operation_timeout: float = 1.5
    connect_timeout: float = 1.0
    recycle: int = 3600
    # How long InnoDB lets a statement wait for a row lock before error 1205 (retried).
    lock_wait_timeout: int = 1

    @property
    def where(self) -> str:
        """``host:port``, for messages: never the credentials."""
        return f"{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MySQLConfig:
        """``mysql://user:password@host:port/database`` (user, password, port optional)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ValueError(f"not a mysql:// URL: scheme {parts.scheme!r}")
        # Neither message echoes any part of the URL: any piece of it may be a piece of the password.
        try:
            port = parts.port
        except ValueError:
            raise ValueError(_UNREADABLE_URL) from None
        # urlsplit ends the credentials at the first `#`, `/` or `?`: the rest of a password holding
        # one lands in the fragment, the path or the query, and a numeric start of it passes as the
        # port. Our URLs have no query or fragment, and no database name holds `@`.
        if parts.query or parts.fragment or "@" in parts.path:
            raise ValueError(_UNREADABLE_URL)
        database = parts.path.lstrip("/")
        if not database:
            raise ValueError("the mysql:// URL names no database (mysql://user:pass@host:3306/DATABASE)")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=unquote(database),
            **overrides,
        )
