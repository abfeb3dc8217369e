"""Read coalescing for the MySQL store: lookups that arrive together share one SELECT.

The mirror of group commit for the resume path. While one lookup is in
flight, new ones queue; when it completes, the queued ones go out as one
``SELECT … WHERE id IN (…)``, and each caller gets its own row. A lookup that
arrives alone goes out alone, at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Row = TypeVar("Row")


class ReadBatcher(Generic[Row]):
    """``lookup`` fetches the rows of several keys at once, as a mapping key -> row."""

    def __init__(self, lookup: Callable[[Sequence[bytes]], Awaitable[dict[bytes, Row]]], max_batch: int = 256) -> None:
        self._lookup = lookup
        self._max_batch = max_batch
        self._waiting: dict[bytes, list[asyncio.Future[Row | None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.batches = 0  # lookups of more than one key (for tests and benchmarks)

    async def get(self, key: bytes) -> Row | None:
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())
        return await future

    async def _read(self) -> None:
        try:
            while self._waiting:
                keys = list(self._waiting)[: self._max_batch]
                futures = {key: self._waiting.pop(key) for key in keys}
                try:
                    rows = await self._lookup(keys)
                except Exception as exc:
                    for waiting in futures.values():
                        for future in waiting:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                if len(keys) > 1:
                    self.batches += 1
                for key, waiting in futures.items():
                    for future in waiting:
                        if not future.done():
                            future.set_result(rows.get(key))
        finally:
            self._reader = None
