"""The application's own connect/disconnect handlers and ours, whichever was registered first.

python-socketio keeps one handler per event and namespace in ``sio.handlers`` and
calls what is stored there on a connection; these tests call it the same way.
tests/e2e/test_embedded_app.py does it through a real server and client.
"""

from __future__ import annotations

from typing import Any

import pytest
import socketio

from adapters.socketio import SocketSessions
from adapters.socketio.chaining import HandlerConflict
from adapters.stores.memory import MemoryStore
from application.errors import SessionNotReady
from application.sessions import Sessions
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


def _bound(sessions: SocketSessions, sid: str) -> bool:
    try:
        return sessions.handle(sid).bound
    except SessionNotReady:
        return False


@pytest.mark.parametrize("when", ["before install", "after install"])
async def test_both_handlers_run_and_theirs_sees_a_bound_handle(when: str) -> None:
    sio, sessions, store = _server()
    seen: list[str] = []

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        seen.append(f"connect bound={_bound(sessions, sid)}")

    def disconnect(sid: str) -> None:  # sync, and the legacy one-argument form
        seen.append(f"disconnect bound={_bound(sessions, sid)}")

    if when == "before install":
        sio.on("connect", connect)
        sio.on("disconnect", disconnect)
        sessions.install()
    else:
        sessions.install()
        sio.on("connect", connect)  # no further call needed: chained as it is stored
        sio.on("disconnect", disconnect)
    await _connect(sio, "s1", {"token": ""})
    assert len(store.sessions) == 1
    await _disconnect(sio, "s1")
    assert seen == ["connect bound=True", "disconnect bound=True"]
    assert not _bound(sessions, "s1")  # forgotten after their disconnect ran


async def test_a_class_based_namespace_runs_beside_the_binding() -> None:
    sio, sessions, _ = _server()
    seen: list[str] = []

    class Chat(socketio.AsyncNamespace):  # type: ignore[misc]  # python-socketio is untyped
        async def on_connect(self, sid: str, environ: dict[str, Any]) -> None:
            seen.append(f"connect bound={_bound(sessions, sid)}")

        async def on_disconnect(self, sid: str, reason: Any) -> None:
            seen.append("disconnect")

    sessions.install()
    sio.register_namespace(Chat("/"))
    await _connect(sio, "s1", {"token": ""})
    await _disconnect(sio, "s1")
    assert seen == ["connect bound=True", "disconnect"]


async def test_a_connection_their_handler_refuses_leaves_no_handle_and_no_new_row() -> None:
    sio, sessions, store = _server()
    sessions.install()

    async def refuse(sid: str, environ: dict[str, Any]) -> bool:  # the two-argument form
        return False

    async def reject(sid: str, environ: dict[str, Any], auth: Any) -> None:
        raise ConnectionRefusedError("no")

    sio.on("connect", refuse)
    assert await _connect(sio, "s1", {"token": ""}) is False
    assert not _bound(sessions, "s1")
    sio.on("connect", reject)
    with pytest.raises(ConnectionRefusedError):
        await _connect(sio, "s2", {"token": ""})
    assert not _bound(sessions, "s2")
    assert store.sessions == {}


async def test_a_refused_connection_that_resumed_a_session_keeps_it() -> None:
    sio, sessions, store = _server()
    sessions.install()
    await _connect(sio, "s1", {"token": ""})
    token = sessions.handle("s1").token.value

    async def refuse(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        return False

    sio.on("connect", refuse)
    assert await _connect(sio, "s2", {"token": token}) is False
    assert len(store.sessions) == 1  # the resumed session is the user's: it stays


async def test_their_connect_may_bind_with_an_auth_of_its_own_making() -> None:
    """The advice before chaining existed: call sessions.connect from your handler (here, with a token
    taken from the query string). The socket must end up bound to that token's session."""
    sio, sessions, store = _server()
    sessions.install()
    await _connect(sio, "s0", {"token": ""})
    token = sessions.handle("s0").token.value

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        await sessions.connect(sid, environ, {"token": environ["QUERY_TOKEN"]})

    sio.on("connect", connect)
    await sio.handlers["/"]["connect"]("s1", {**ENVIRON, "QUERY_TOKEN": token}, None)
    assert sessions.handle("s1").token.value == token
    await sessions.connect("s1", ENVIRON, {"token": ""})  # already bound: left as it is
    assert sessions.handle("s1").token.value == token
    assert len(store.sessions) == 1


async def test_registering_our_own_entry_again_does_not_chain_it_twice() -> None:
    sio, sessions, store = _server()
    sessions.install()
    entry = sio.handlers["/"]["connect"]
    sio.on("connect", entry)
    assert sio.handlers["/"]["connect"] is entry
    await _connect(sio, "s1", {"token": ""})
    assert len(store.sessions) == 1


def test_a_catch_all_connect_handler_is_refused_with_what_to_do_instead() -> None:
    sio, sessions, _ = _server()
    sio.on("connect", lambda sid, environ: None, namespace="*")
    with pytest.raises(HandlerConflict, match=r"namespace='/'"):
        sessions.install()


def test_check_installed_without_install_says_what_to_call() -> None:
    _, sessions, _ = _server()
    with pytest.raises(HandlerConflict, match=r"install\(\)"):
        sessions.check_installed()


async def test_a_replaced_handler_table_is_chained_again_at_the_check() -> None:
    sio, sessions, store = _server()
    sessions.install()

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        pass

    sio.handlers["/"] = {"connect": connect}  # not through sio.on: nothing could see it happen
    sessions.check_installed()
    await _connect(sio, "s1", {"token": ""})
    assert len(store.sessions) == 1
