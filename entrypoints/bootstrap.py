"""The composition root: the only place that picks concrete adapters."""

from __future__ import annotations

import functools
import gc
import logging

import socketio

from adapters.clock import SystemClock
from adapters.socketio import SocketSessions
from adapters.stores.mysql import MySQLConfig, MySQLStore
from adapters.stores.sqlite import SQLiteStore, path_from_url
from application.errors import SchemaMissing
from application.mailbox import Mailboxes
from application.ports import Store
from application.sessions import Sessions
from domain.expiry import ExpiryPolicy
from domain.mailbox import MailboxPolicy
from entrypoints.lifecycle import SessionLifecycle
from entrypoints.settings import Settings

log = logging.getLogger("socketio_session")

# Collect young objects every 50,000 allocations instead of 700; a full
# collection every 100 million. An event-loop server allocates a few hundred
# objects per message that die young; at Python's defaults the collector ran
# every couple of messages and its full passes re-walked the whole heap
# (bench/speed.py: about 15% less server CPU per write and handshake, lower p99).
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Fewer garbage collections for a long-running server; call it once startup is done.

    ``gc.freeze()`` moves everything alive by then (modules, the app, its
    adapters) where the collector no longer walks it on every pass.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_mysql_store(settings: Settings) -> MySQLStore:
    config = MySQLConfig.from_url(
        settings.session_store_url,
        table=settings.session_table,
        pool_size=settings.session_pool_size,
        causal_reads=settings.session_causal_reads,
    )
    return MySQLStore(config)


def build_store(settings: Settings) -> Store:
    if settings.uses_mysql:
        return build_mysql_store(settings)
    return SQLiteStore(path_from_url(settings.session_store_url), table=settings.session_table)


async def open_store(store: Store, settings: Settings) -> None:
    """Open the store and make sure its schema is there (created only with SESSION_AUTO_MIGRATE)."""
    try:
        await store.open()
    except SchemaMissing:
        if not settings.session_auto_migrate:
            raise
        await store.migrate()
        await store.open()
        log.warning("created the schema: %s (SESSION_AUTO_MIGRATE)", store.describe())
    if not settings.uses_mysql:
        log.warning(
            "embedded store, %s: for one process only; set SESSION_STORE_URL=mysql://... to share sessions",
            store.describe(),
        )


def build_sessions(settings: Settings, store: Store) -> Sessions:
    policy = ExpiryPolicy(
        idle_ttl=settings.session_idle_ttl,
        absolute_ttl=settings.session_absolute_ttl,
        anon_ttl=settings.session_anon_ttl,
    )
    sessions = Sessions(
        store,
        SystemClock(),
        policy=policy,
        max_bytes=settings.session_max_bytes,
        max_pending_writes=settings.session_max_pending_writes,
        max_per_user=settings.session_max_per_user,
    )
    if settings.session_log_key:
        sessions.log_key = settings.session_log_key.encode()
    return sessions


def build_mail(settings: Settings, store: Store, sessions: Sessions) -> Mailboxes:
    """The sessions' mailboxes over ``store``, bounded as the settings say."""
    policy = MailboxPolicy(
        max_messages=settings.session_mailbox_max,
        ttl=settings.session_mailbox_ttl,
        max_bytes=settings.session_max_bytes,
    )
    return Mailboxes(sessions, store, policy)


def build_socket_sessions(
    settings: Settings, sio: socketio.AsyncServer, sessions: Sessions, mail: Mailboxes | None = None
) -> SocketSessions:
    """The Socket.IO transport for ``sio`` with the settings' limits, installed."""
    return SocketSessions(
        sio,
        sessions,
        handshake_limit=settings.session_handshake_limit,
        handshake_window=settings.session_handshake_window,
        new_per_address=settings.session_new_per_address,
        trust_proxy=settings.session_trust_proxy,
        mail=mail,
    ).install()


def build_lifecycle(
    settings: Settings,
    store: Store,
    sessions: Sessions,
    transports: list[SocketSessions],
    mail: Mailboxes | None = None,
) -> SessionLifecycle:
    """Startup and shutdown for ``transports`` over ``store``, as the settings ask (purge, relay, migration)."""
    return SessionLifecycle(
        store,
        sessions,
        transports,
        purge_interval=settings.session_purge_interval,
        relay_url=settings.socketio_message_queue,
        relay_key=settings.session_relay_key,
        relay_channel=f"socketio_session:{settings.session_table}:ended",
        mail=mail,
        mail_channel=f"socketio_session:{settings.session_table}:mail",
        open_store=functools.partial(open_store, store, settings),
    )
