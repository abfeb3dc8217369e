"""The application's own connect/disconnect handlers and ours, whichever was registered first.

python-socketio keeps one handler per event and namespace (``sio.handlers``); these
tests call what is registered there, as python-socketio does on a connection.
"""

from __future__ import annotations

from typing import Any

import pytest
import socketio

from adapters.socketio import SocketSessions
from adapters.stores.memory import MemoryStore
from application.errors import SessionNotReady
from application.handshake import Sessions
from tests.support.fakes import FakeClock

ENVIRON: dict[str, Any] = {"REMOTE_ADDR": "127.0.0.1"}


def _server() -> tuple[socketio.AsyncServer, SocketSessions, MemoryStore]:
    store = MemoryStore()
    sio = socketio.AsyncServer(async_mode="asgi")
    return sio, SocketSessions(sio, Sessions(store, FakeClock())), store


async def _connect(sio: socketio.AsyncServer, sid: str, auth: Any = None) -> Any:
    return await sio.handlers["/"]["connect"](sid, ENVIRON, auth)


async def _disconnect(sio: socketio.AsyncServer, sid: str) -> Any:
    return await sio.handlers["/"]["disconnect"](sid, "client disconnect")


@pytest.mark.parametrize("when", ["before install", "after install"])
async def test_both_handlers_run_and_theirs_sees_a_bound_handle(when: str) -> None:
    sio, sessions, store = _server()
    seen: list[str] = []

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        seen.append(f"connect bound={sessions.handle(sid).bound}")

    def disconnect(sid: str) -> None:  # sync, and the legacy one-argument form
        seen.append(f"disconnect has handle={sid in sessions._handles}")

    if when == "before install":
        sio.on("connect", connect)
        sio.on("disconnect", disconnect)
        sessions.install()
    else:
        sessions.install()
        sio.on("connect", connect)
        sio.on("disconnect", disconnect)
        sessions.check_installed()
    await _connect(sio, "s1", {"token": ""})
    assert len(store.sessions) == 1
    await _disconnect(sio, "s1")
    assert seen == ["connect bound=True", "disconnect has handle=True"]
    with pytest.raises(SessionNotReady):
        sessions.handle("s1")


async def test_a_connection_their_handler_refuses_leaves_no_handle() -> None:
    sio, sessions, _ = _server()
    sessions.install()

    async def refuse(sid: str, environ: dict[str, Any]) -> bool:  # two-argument form
        return False

    async def reject(sid: str, environ: dict[str, Any], auth: Any) -> None:
        raise ConnectionRefusedError("no")

    sio.on("connect", refuse)
    sessions.check_installed()
    assert await _connect(sio, "s1") is False
    with pytest.raises(SessionNotReady):
        sessions.handle("s1")
    sio.on("connect", reject)
    sessions.check_installed()
    with pytest.raises(ConnectionRefusedError):
        await _connect(sio, "s2")
    with pytest.raises(SessionNotReady):
        sessions.handle("s2")


async def test_checking_twice_chains_once_and_connect_twice_binds_once() -> None:
    sio, sessions, store = _server()
    calls: list[str] = []

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        calls.append(sid)
        await sessions.connect(sid, environ, auth)  # the old advice: call ours from yours; harmless now

    sessions.install()
    sio.on("connect", connect)
    sessions.check_installed()
    sessions.check_installed()
    await _connect(sio, "s1", {"token": ""})
    assert calls == ["s1"]
    assert len(store.sessions) == 1


def test_check_installed_without_install_says_what_to_call() -> None:
    _, sessions, _ = _server()
    with pytest.raises(RuntimeError, match=r"install\(\)"):
        sessions.check_installed()
