"""The application layer behind a plain websocket: no Socket.IO anywhere.

Run it:   python docs/examples/plain_websocket.py 8765 sessions.sqlite3
Talk to it with JSON messages, one per frame:
    {"op": "handshake", "token": ""}        -> {"token": "...", "errors": "", "status": "created", "expires": ...}
    {"op": "set", "key": "k", "value": 1}   -> {"ok": true}
    {"op": "get", "key": "k"}               -> {"ok": true, "value": 1}
Errors come back by name, never as text: {"ok": false, "error": "SessionNotReady"}
(application.protocol.ERROR_NAMES lists them). The handshake answer is the same
``gotToken`` message the Socket.IO transport sends, rate limit included.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from adapters.clock import SystemClock
from adapters.stores.sqlite import SQLiteStore
from application.errors import InvalidPayload
from application.handle import SessionHandle
from application.protocol import (
    HandshakeLimiter,
    Message,
    answer_handshake,
    error_reply,
    internal_error_reply,
    presented_token,
)
from application.sessions import Sessions
from domain.errors import SessionError

log = logging.getLogger("plain_websocket")


def _request(frame: str | bytes) -> dict[str, object]:
    """The frame as a JSON object, or InvalidPayload (bad JSON, too deep, not an object)."""
    try:
        request = json.loads(frame)
    except (ValueError, RecursionError):
        raise InvalidPayload("a frame must be one JSON object") from None
    if not isinstance(request, dict):
        raise InvalidPayload("a frame must be one JSON object")
    return request


def _key(request: dict[str, object]) -> str:
    key = request.get("key")
    if not isinstance(key, str):
        raise InvalidPayload("expected a string 'key'")
    return key


async def answer(handle: SessionHandle, frame: str | bytes, limiter: HandshakeLimiter, connection: str) -> Message:
    """The reply to one frame; every failure is a named error."""
    try:
        request = _request(frame)
        op = request.get("op")
        if op == "handshake":
            return await answer_handshake(handle, presented_token(request), limiter=limiter, key=connection)
        if op == "set":
            if "value" not in request:
                raise InvalidPayload("expected a 'value'")
            await handle.set(_key(request), request["value"])  # set() refuses what is not JSON
            return {"ok": True}
        if op == "get":
            return {"ok": True, "value": handle.get(_key(request))}
        raise InvalidPayload("'op' must be handshake, set or get")
    except SessionError as exc:
        return error_reply(exc)
    except Exception:
        log.exception("request failed")
        return internal_error_reply()


async def serve(port: int, path: str) -> None:
    store = SQLiteStore(path)
    await store.open()
    sessions = Sessions(store, SystemClock())
    limiter = HandshakeLimiter(limit=10, window=60)
    numbers = itertools.count()

    async def connection(websocket: websockets.ServerConnection) -> None:
        handle = SessionHandle(sessions)  # one handle per connection
        name = f"connection-{next(numbers)}"
        try:
            async for frame in websocket:
                await websocket.send(json.dumps(await answer(handle, frame, limiter, name)))
        finally:
            limiter.forget(name)

    try:
        async with websockets.serve(connection, "127.0.0.1", port):
            print("ready", flush=True)
            await asyncio.Future()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
