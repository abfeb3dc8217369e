"""docs/examples/embedded_app.py, the app docs/embedding.md describes, under a real uvicorn.

Its own ``connect`` / ``disconnect`` handlers are registered after ``install()``;
sessions must stay bound (by ``auth`` and by ``getToken``) and its handlers must run too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import socketio

from tests.support.client import Client
from tests.support.server import REPO, Server, server_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("embedded-app")
    env = server_env({"SESSION_DEMO": "0", "SESSION_STORE_URL": f"sqlite:///{workdir / 'app.sqlite3'}"})
    started = Server(
        env=env, log_path=workdir / "server.log", app="embedded_app:app", flags=("--app-dir", "docs/examples")
    ).start()
    try:
        yield started
    finally:
        started.stop()


async def test_connect_with_auth_binds_the_session_despite_a_later_connect_handler(server: Server) -> None:
    async with Client(server.url, auth={"token": ""}) as client:
        created = await client.next_token()
        assert created["status"] == "created"
        # The app's own connect handler ran as well: profile shows the address it recorded.
        assert await client.call("app:login", {"user": "alice", "password": "wonderland"}) == {"ok": True}
        rotated = await client.next_token()
        assert rotated["status"] == "rotated"
        profile = await client.call("app:profile")
        assert profile == {"ok": True, "user": "alice", "name": "Alice", "from": "127.0.0.1"}
    async with Client(server.url, auth={"token": rotated["token"]}) as again:
        assert (await again.next_token())["status"] == "resumed"
        assert (await again.call("app:profile"))["user"] == "alice"
        assert await again.call("app:logout") == {"ok": True}
        fresh = await again.next_token()
        assert fresh["status"] == "created"
        assert fresh["token"] != rotated["token"]
        assert await again.call("app:profile") == {"ok": False, "error": "SessionKeyMissing"}


async def test_the_old_get_token_round_trip_works_too(server: Server) -> None:
    async with Client(server.url) as client:
        created = await client.get_token("")
        assert created["status"] == "created"
        assert await client.call("app:login", {"user": "alice", "password": "nope"}) == {
            "ok": False,
            "error": "WrongPassword",
        }
        assert await client.call("app:login", "alice") == {"ok": False, "error": "InvalidPayload"}
        assert await client.call("app:profile") == {"ok": False, "error": "SessionKeyMissing"}


async def test_no_demo_event_exists_in_an_embedding_app(server: Server) -> None:
    async with Client(server.url, auth={"token": ""}) as client:
        await client.next_token()
        with pytest.raises(socketio.exceptions.TimeoutError):  # no handler, so no ack
            await client.call("user:login", {"userId": "mallory"}, timeout=1)
    assert "Traceback" not in Path(server.log_path).read_text()


def _events_module_from_the_docs() -> str:
    """The ``myapp/events.py`` code block of docs/embedding.md, as written there."""
    page = (REPO / "docs" / "embedding.md").read_text(encoding="utf-8")
    block = page.split("```python\n# myapp/events.py\n", 1)[1].split("```", 1)[0]
    return block


@pytest.fixture(scope="module")
def stock_with_doc_events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("doc-events")
    (workdir / "myapp").mkdir()
    (workdir / "myapp" / "__init__.py").write_text("")
    (workdir / "myapp" / "events.py").write_text(_events_module_from_the_docs())
    env = server_env(
        {
            "SESSION_DEMO": "0",
            "SESSION_EVENTS": "myapp.events:register",
            "SESSION_STORE_URL": f"sqlite:///{workdir / 'app.sqlite3'}",
            "PYTHONPATH": str(workdir),
        }
    )
    started = Server(env=env, log_path=workdir / "server.log").start()
    try:
        yield started
    finally:
        started.stop()


async def test_the_session_events_example_of_the_docs_works_on_the_stock_server(stock_with_doc_events: Server) -> None:
    async with Client(stock_with_doc_events.url, auth={"token": ""}) as client:
        await client.next_token()
        assert await client.call("cart:add", "tea") == {"ok": True, "cart": ["tea"]}
        assert await client.call("cart:add", 7) == {"ok": False, "error": "InvalidPayload"}
        assert await client.call("cart:checkout") == {"ok": False, "error": "SessionKeyMissing"}
        assert await client.call("app:login", {"user": "alice", "password": "nope"}) == {
            "ok": False,
            "error": "WrongPassword",
        }
        assert await client.call("app:login", {"user": "alice", "password": "wonderland"}) == {"ok": True}
        assert (await client.next_token())["status"] == "rotated"
        assert await client.call("cart:checkout") == {"ok": True, "user": "alice", "items": ["tea"]}
