"""The application layer runs behind another transport with no Socket.IO installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from tests.support.server import REPO, free_port

pytestmark = pytest.mark.e2e

# Make `import socketio` / `import engineio` fail in the child, as if they were not installed.
_WITHOUT_SOCKETIO = (
    "import runpy, sys; sys.modules['socketio'] = None; sys.modules['engineio'] = None; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


async def test_handshake_and_get_set_over_a_plain_websocket(tmp_path: Path) -> None:
    port = free_port()
    example = REPO / "docs" / "examples" / "plain_websocket.py"
    child = subprocess.Popen(
        [sys.executable, "-c", _WITHOUT_SOCKETIO, str(example), str(port), str(tmp_path / "s.sqlite3")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""

        async def ask(ws: websockets.ClientConnection, **request: object) -> dict[str, object]:
            await ws.send(json.dumps(request))
            return dict(json.loads(await ws.recv()))

        async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
            assert await ask(ws, op="get", key="k") == {"ok": False, "error": "SessionNotReady"}
            created = await ask(ws, op="handshake", token="")
            assert created["status"] == "created"
            assert await ask(ws, op="set", key="k", value=[1, "two"]) == {"ok": True}
        async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
            resumed = await ask(ws, op="handshake", token=created["token"])
            assert resumed == {"token": created["token"], "status": "resumed"}
            assert await ask(ws, op="get", key="k") == {"ok": True, "value": [1, "two"]}
    finally:
        child.terminate()
        child.wait(10)
