"""A real python-socketio AsyncClient with the small helpers the tests need."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio


class Client:
    """Connects over websocket; collects every ``gotToken`` it receives."""

    def __init__(
        self,
        url: str,
        auth: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        transports: tuple[str, ...] = ("websocket",),
    ) -> None:
        self.url = url
        self.auth = auth
        self.headers = headers or {}
        self.transports = list(transports)
        self.sio = socketio.AsyncClient(reconnection=False)
        self.tokens: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sio.on("gotToken", self._got_token)

    async def _got_token(self, message: dict[str, Any]) -> None:
        await self.tokens.put(message)

    async def __aenter__(self) -> Client:
        await self.sio.connect(
            self.url, auth=self.auth, headers=self.headers, transports=self.transports, wait_timeout=10
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sio.disconnect()

    async def next_token(self, timeout: float = 5) -> dict[str, Any]:
        return await asyncio.wait_for(self.tokens.get(), timeout)

    async def get_token(self, token: Any = "", *, raw: Any = None, send_raw: bool = False) -> dict[str, Any]:
        """Emit ``getToken`` as the old client does (or with a raw payload) and await ``gotToken``."""
        if send_raw:
            await self.sio.emit("getToken", raw)
        else:
            await self.sio.emit("getToken", {"token": token})
        return await self.next_token()

    async def call(self, event: str, data: Any = None, timeout: float = 5) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    def no_more_tokens(self) -> bool:
        return self.tokens.empty()
