"""The application layer runs behind another transport with no Socket.IO installed.

docs/examples/plain_websocket.py is that transport; these tests run it with
``socketio`` and ``engineio`` made unimportable, drive it with a plain
websocket client, and fuzz it: whatever a frame holds, the answer is a
``gotToken`` message or an ack with a named error, and the connection lives on.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from application.protocol import ERROR_NAMES
from tests.support.server import REPO, free_port
from tests.support.strategies import well_formed_tokens

pytestmark = pytest.mark.e2e

# Make `import socketio` / `import engineio` fail in the child, as if they were not installed.
_WITHOUT_SOCKETIO = (
    "import runpy, sys; sys.modules['socketio'] = None; sys.modules['engineio'] = None; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)
GOT_TOKEN_STATUSES = {"created", "resumed", "expired", "not_found", "invalid", "rate_limited", "unavailable"}


@pytest.fixture(scope="module")
def example_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    example = REPO / "docs" / "examples" / "plain_websocket.py"
    database = tmp_path_factory.mktemp("plain-websocket") / "s.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", _WITHOUT_SOCKETIO, str(example), str(port), str(database)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        yield f"ws://127.0.0.1:{port}"
    finally:
        child.terminate()
        _, errors = child.communicate(timeout=10)
        # Bad input is answered by name; nothing may have needed a traceback.
        assert "Traceback" not in errors, errors


async def test_handshake_and_get_set_over_a_plain_websocket(example_url: str) -> None:
    async def ask(ws: websockets.ClientConnection, **request: object) -> dict[str, object]:
        await ws.send(json.dumps(request))
        return dict(json.loads(await ws.recv()))

    async with websockets.connect(example_url) as ws:
        assert await ask(ws, op="get", key="k") == {"ok": False, "error": "SessionNotReady"}
        created = await ask(ws, op="handshake", token="")
        assert created["status"] == "created"
        assert created["errors"] == ""
        assert await ask(ws, op="set", key="k", value=[1, "two"]) == {"ok": True}
    async with websockets.connect(example_url) as ws:
        resumed = await ask(ws, op="handshake", token=created["token"])
        assert resumed == {"token": created["token"], "errors": "", "status": "resumed", "expires": resumed["expires"]}
        assert await ask(ws, op="get", key="k") == {"ok": True, "value": [1, "two"]}
        # The faults the issue found: a get without a key, a set without a value, not JSON at all.
        assert await ask(ws, op="get") == {"ok": False, "error": "InvalidPayload"}
        assert await ask(ws, op="set", key="k") == {"ok": False, "error": "InvalidPayload"}
        await ws.send("{not json")
        assert json.loads(await ws.recv()) == {"ok": False, "error": "InvalidPayload"}
        await ws.send("[" * 5000 + "]" * 5000)
        assert json.loads(await ws.recv()) == {"ok": False, "error": "InvalidPayload"}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_requests = st.fixed_dictionaries(
    {"op": st.sampled_from(["handshake", "set", "get", "delete", ""]) | _json},
    optional={"key": st.text(max_size=300) | _json, "value": _json, "token": well_formed_tokens | _json},
)


def _frame(value: Any) -> str:
    # Python's json writes NaN and Infinity, as a careless client would.
    return json.dumps(value, allow_nan=True)


_frames = st.one_of(
    _requests.map(_frame),
    _json.map(_frame),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n),
    st.just(_frame({"op": "set", "key": "k", "value": math.nan})),
)


def _well_formed_answer(reply: dict[str, Any]) -> bool:
    if "ok" in reply:
        return reply["ok"] is True or (set(reply) == {"ok", "error"} and reply["error"] in ERROR_NAMES)
    return set(reply) >= {"token", "errors", "status"} and reply["status"] in GOT_TOKEN_STATUSES


@pytest.fixture(scope="module")
def fuzz_connection(example_url: str) -> Iterator[ClientConnection]:
    with connect(example_url, max_size=None) as ws:
        ws.send(json.dumps({"op": "handshake", "token": ""}))
        assert json.loads(ws.recv(timeout=5))["status"] == "created"
        yield ws


@given(frames=st.lists(_frames, min_size=1, max_size=8))
def test_any_frame_gets_a_named_answer_and_the_connection_lives_on(
    fuzz_connection: ClientConnection, frames: list[str | bytes]
) -> None:
    for frame in frames:
        fuzz_connection.send(frame)
        reply = json.loads(fuzz_connection.recv(timeout=5))
        assert isinstance(reply, dict), (frame[:200], reply)
        assert _well_formed_answer(reply), (frame[:200], reply)
