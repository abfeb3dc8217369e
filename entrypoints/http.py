"""The plain HTTP side of the app: the demo page and the health check."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Ping = Callable[[], Awaitable[None]]

STATIC = Path(__file__).parent / "static"


async def _respond(send: Send, status: int, content_type: str, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def http_app(ping: Ping, store_kind: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """``/`` serves the demo page, ``/healthz`` says whether the store answers."""
    page = (STATIC / "index.html").read_bytes()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope.get("path", "/")
        if path == "/":
            await _respond(send, 200, "text/html; charset=utf-8", page)
        elif path == "/healthz":
            try:
                await ping()
            except Exception:
                body = {"status": "unavailable", "store": store_kind}
                await _respond(send, 503, "application/json", json.dumps(body).encode())
            else:
                await _respond(
                    send, 200, "application/json", json.dumps({"status": "ok", "store": store_kind}).encode()
                )
        else:
            await _respond(send, 404, "text/plain; charset=utf-8", b"not found\n")

    return app
