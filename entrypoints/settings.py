"""Settings from environment variables, validated at startup."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.stores.ddl import DEFAULT_TABLE, check_table_name
from adapters.stores.mysql import MySQLConfig
from adapters.stores.sqlite import path_from_url

_REGISTRAR = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


MIN_RELAY_KEY_CHARS = 32


class ConfigError(Exception):
    """An environment variable has a value we cannot use; the message names it."""


class Settings(BaseSettings):
    """Every setting, read from the environment variable of the same name in capitals."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    session_store_url: str = "sqlite:///./sessions.sqlite3"
    session_table: str = DEFAULT_TABLE
    session_idle_ttl: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 86400
    session_absolute_ttl: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 30 * 86400
    session_max_bytes: Annotated[int, Field(ge=64, le=16 * 1024 * 1024)] = 65536
    session_auto_migrate: bool = False
    session_pool_size: Annotated[int, Field(ge=1, le=1000)] = 10
    # On a Galera cluster, reads wait for the writes the cluster acknowledged (wsrep_sync_wait=1),
    # so a session written through one node reads back through any other. Off only to measure it.
    session_causal_reads: bool = True
    session_handshake_limit: Annotated[int, Field(ge=1)] = 10
    session_handshake_window: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 60
    # New sessions (rows) one client address may cause per SESSION_HANDSHAKE_WINDOW, across its
    # sockets and reconnects; the per-socket limit alone resets with every new connection.
    session_new_per_address: Annotated[int, Field(ge=1)] = 60
    # The client address is the first X-Forwarded-For hop only behind a proxy that sets it;
    # otherwise any client could name any address and dodge the limit above.
    session_trust_proxy: bool = False
    # Idle timeout of a session that was never written (no key, no owner): abandoned sessions
    # go within the hour instead of holding a row for a day.
    session_anon_ttl: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 3600
    # Writes one socket may have queued; more fail at once with TooManyRequests.
    session_max_pending_writes: Annotated[int, Field(ge=1, le=100_000)] = 32
    # Live sessions per user; a login beyond it ends that user's least recently seen session.
    session_max_per_user: Annotated[int, Field(ge=1, le=100_000)] = 50
    # The mailbox (durable server-to-client messages): messages one session may hold, and how long
    # each may wait for its client's acknowledgement before it is dropped (7 days).
    session_mailbox_max: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    session_mailbox_ttl: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 604800
    session_purge_interval: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 300
    # Keys the hash that names sessions in logs. Set it (any long random string) to
    # correlate log lines across processes and restarts; by default it is random
    # per process.
    session_log_key: str = ""
    # INFO logs one line per session lifecycle event (resumes included); WARNING drops them.
    session_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Fewer garbage collections (entrypoints/bootstrap.py: tune_gc); 0 keeps Python's defaults.
    session_gc_tuning: bool = True
    socketio_cors_origins: str = ""
    socketio_message_queue: str = ""
    # Authenticates what processes tell each other over the message queue (HMAC-SHA256);
    # required with SOCKETIO_MESSAGE_QUEUE, the same long random string in every process.
    session_relay_key: str = Field(default="", repr=False)
    # The demo page at / and its events (user:login needs no password: anyone can log in as
    # anyone). Off unless asked for; `make run` asks.
    session_demo: bool = False
    # The application's own events: comma-separated ``package.module:function`` names, each
    # ``function(sio, sessions)`` called once when the app is created.
    session_events: str = ""

    @field_validator("session_events")
    @classmethod
    def _event_registrars(cls, value: str) -> str:
        for name in (part.strip() for part in value.split(",")):
            if name and _REGISTRAR.fullmatch(name) is None:
                raise ValueError(f"{name!r} is not of the form package.module:function")
        return value

    @property
    def event_registrars(self) -> list[str]:
        """The ``module:function`` names of SESSION_EVENTS, in order."""
        return [part.strip() for part in self.session_events.split(",") if part.strip()]

    @field_validator("session_log_level", mode="before")
    @classmethod
    def _level_name(cls, level: object) -> object:
        return level.upper() if isinstance(level, str) else level

    @field_validator("socketio_message_queue")
    @classmethod
    def _redis_queue(cls, url: str) -> str:
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL (the session relay between processes uses Redis)")
        return url

    @field_validator("session_store_url")
    @classmethod
    def _usable_url(cls, url: str) -> str:
        if url.startswith(("mysql://", "mariadb://")):
            MySQLConfig.from_url(url)  # raises ValueError saying what is wrong
        elif url.startswith("sqlite://"):
            path_from_url(url)
        else:
            raise ValueError("must start with mysql:// or sqlite:// (mysql://user:password@host:3306/db)")
        return url

    @field_validator("session_table")
    @classmethod
    def _plain_identifier(cls, table: str) -> str:
        return check_table_name(table)

    @model_validator(mode="after")
    def _absolute_covers_idle(self) -> Settings:
        if self.session_absolute_ttl < self.session_idle_ttl:
            raise ValueError("SESSION_ABSOLUTE_TTL must be at least SESSION_IDLE_TTL")
        return self

    @model_validator(mode="after")
    def _relay_is_authenticated(self) -> Settings:
        if self.socketio_message_queue and len(self.session_relay_key) < MIN_RELAY_KEY_CHARS:
            raise ValueError(
                f"SESSION_RELAY_KEY: required with SOCKETIO_MESSAGE_QUEUE, at least {MIN_RELAY_KEY_CHARS} characters,"
                " the same in every process (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return self

    @property
    def cors_origins(self) -> list[str] | str | None:
        """python-socketio's ``cors_allowed_origins``: None means same origin only."""
        origins = [o.strip() for o in self.socketio_cors_origins.split(",") if o.strip()]
        if not origins:
            return None
        return "*" if origins == ["*"] else origins

    @property
    def uses_mysql(self) -> bool:
        return self.session_store_url.startswith(("mysql://", "mariadb://"))


def load_settings() -> Settings:
    """The settings from the environment, or :class:`ConfigError` naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{variable}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
