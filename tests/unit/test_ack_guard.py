"""python-socketio's ack callback table, and the guard in front of it (adapters/socketio/ack_guard.py)."""

from __future__ import annotations

import pytest
import socketio

from adapters.socketio.ack_guard import guard_acks


async def test_python_socketio_still_keeps_its_ack_counter_where_an_ack_packet_can_delete_it() -> None:
    """The fact the guard rests on (python-socketio 5.x, base_manager._generate_ack_id): the counter of
    a socket's ack ids sits under key 0 of its callback table, and an ack with id 0 deletes it, after
    which no emit with a callback works on that socket. If this fails, upstream changed: the guard and
    docs/decisions.md ("Ack packets") should be looked at again."""
    manager = socketio.AsyncServer().manager
    assert manager._generate_ack_id("sid", lambda *_: None) == 1
    with pytest.raises(TypeError):  # it "calls" the counter, after taking it out of the table
        await manager.trigger_callback("sid", 0, [])
    with pytest.raises(KeyError):
        manager._generate_ack_id("sid", lambda *_: None)


async def test_only_acks_the_server_waits_for_reach_their_callbacks_and_with_a_list() -> None:
    sio = socketio.AsyncServer()
    guard_acks(sio)
    guard_acks(sio)  # once is enough; again changes nothing
    sid = await sio.manager.connect("eio", "/")
    heard: list[tuple[object, ...]] = []
    ack_id = sio.manager._generate_ack_id(sid, lambda *args: heard.append(args))
    for bad_id in (0, -1, None, "1", 1.0, True, ack_id + 1):
        await sio._handle_ack("eio", "/", bad_id, [])
    assert heard == []
    assert sio.manager._generate_ack_id(sid, lambda *_: None) == ack_id + 1  # the counter is intact
    await sio._handle_ack("eio", "/", ack_id, None)  # no data: the callback runs with no arguments
    assert heard == [()]
    await sio._handle_ack("eio", "/", ack_id, [1])  # answered already: nothing
    assert heard == [()]
