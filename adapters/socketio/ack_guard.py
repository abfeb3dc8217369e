"""Ack packets from clients, checked before python-socketio's callback table sees them.

python-socketio 5.x keeps a socket's ack-id counter in the same dict as its
ack callbacks, under key 0 (``BaseManager._generate_ack_id``): an ack packet
with id 0 deletes the counter, and every later emit with a callback on that
socket fails, so the socket stays connected and never receives a delivery
again. An ack with no data, a number or ``null`` reaches ``callback(*data)``
and raises inside ``AsyncManager.trigger_callback`` (two tracebacks in the
log). Every mailbox delivery waits on such a callback (transport.py), so one
packet could silence a client.

Here an ack packet reaches python-socketio only when its id is one the server
issued to that socket and still waits for (an integer of 1 or more in the
socket's table); its data reaches the callback as a list (anything else as no
arguments). Any other ack changes nothing for anyone; a WARNING line says how
many were dropped, once a minute at most. docs/decisions.md, "Ack packets".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from adapters.socketio.log_throttle import CountedWarning

log = logging.getLogger("socketio_session.transport")
_DROPPED = CountedWarning(log, "dropped %d ack packets that answered nothing the server sent (id or data not valid)")

AckHandler = Callable[[str, str | None, Any, Any], Awaitable[None]]


def guard_acks(sio: socketio.AsyncServer) -> None:
    """Put the check in front of ``sio``'s ack handling (once; calling it again changes nothing)."""
    original: AckHandler = sio._handle_ack
    if getattr(original, "_guarded", False):
        return

    async def handle_ack(eio_sid: str, namespace: str | None, ack_id: Any, data: Any) -> None:
        sid = sio.manager.sid_from_eio_sid(eio_sid, namespace or "/")
        waiting = sio.manager.callbacks.get(sid, {}) if sid is not None else {}
        if type(ack_id) is not int or ack_id < 1 or ack_id not in waiting:
            _DROPPED.count()
            return
        await original(eio_sid, namespace, ack_id, data if isinstance(data, list) else [])

    handle_ack._guarded = True  # type: ignore[attr-defined]
    sio._handle_ack = handle_ack
