"""Deleting expired sessions: in bounded batches, one purger at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from application.errors import StoreUnavailable
from application.sessions import Sessions

log = logging.getLogger("socketio_session.purge")

DEFAULT_BATCH = 1000


async def purge_expired(
    sessions: Sessions, *, batch: int = DEFAULT_BATCH, on_batch: Callable[[int], None] | None = None
) -> int | None:
    """Delete every session expired by now, ``batch`` rows per statement.

    Returns how many went, or None when another process is purging already.
    ``on_batch`` hears the running total after each full batch (for progress).
    """
    return await sessions.store.purge(now=sessions.clock.now(), batch=batch, on_batch=on_batch)


async def purge_periodically(sessions: Sessions, interval: float, *, batch: int = DEFAULT_BATCH) -> None:
    """Purge every ``interval`` seconds until cancelled; a failed round is logged and retried next time."""
    while True:
        await asyncio.sleep(interval)
        try:
            purged = await purge_expired(sessions, batch=batch)
        except StoreUnavailable as exc:
            log.warning("purge skipped: %s", exc)
            continue
        if purged:
            log.info("purged %d expired sessions", purged)
