"""The application layer behind a plain websocket: no Socket.IO anywhere.

Run it:   python docs/examples/plain_websocket.py 8765 sessions.sqlite3
Talk to it with JSON messages, one per frame:
    {"op": "handshake", "token": ""}        -> {"token": "...", "status": "created"}
    {"op": "set", "key": "k", "value": 1}   -> {"ok": true}
    {"op": "get", "key": "k"}               -> {"ok": true, "value": 1}
Errors come back by name: {"ok": false, "error": "SessionNotReady"}.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from adapters.clock import SystemClock
from adapters.stores.sqlite import SQLiteStore
from application.handle import SessionHandle
from application.handshake import Sessions
from domain.errors import SessionError


async def serve(port: int, path: str) -> None:
    store = SQLiteStore(path)
    await store.open()
    sessions = Sessions(store, SystemClock())

    async def connection(websocket: websockets.ServerConnection) -> None:
        handle = SessionHandle(sessions)  # one handle per connection
        async for frame in websocket:
            request = json.loads(frame)
            reply: dict[str, object]
            try:
                if request["op"] == "handshake":
                    result = await handle.handshake(request.get("token", ""))
                    reply = {"token": result.token.value, "status": result.status.value}
                elif request["op"] == "set":
                    await handle.set(request["key"], request["value"])
                    reply = {"ok": True}
                else:
                    reply = {"ok": True, "value": handle.get(request["key"])}
            except SessionError as exc:
                reply = {"ok": False, "error": exc.name}
            await websocket.send(json.dumps(reply))

    async with websockets.serve(connection, "127.0.0.1", port):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
