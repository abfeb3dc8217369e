"""Group commit's bounds (adapters/stores/mysql/batching.py), over stand-in runners: no database needed."""

from __future__ import annotations

import asyncio

import pytest

from adapters.stores.mysql.batching import GroupCommit
from adapters.stores.mysql.connection import Outcome
from adapters.stores.mysql.statements import Payload, RowWrite
from application.errors import StoreUnavailable


def write(hexid: str) -> RowWrite:
    return RowWrite.touch(hexid, 1.0, 2.0)


class Runners:
    """Runs nothing until ``release`` is set; records what ran."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.ran: list[str] = []

    async def one(self, payload: Payload, idempotent: bool) -> Outcome:
        await self.release.wait()
        self.ran.append(payload.hexid)
        return Outcome(1, [], None)

    async def batch(self, payloads: list[Payload]) -> list[Outcome | Exception]:
        await self.release.wait()
        self.ran += [p.hexid for p in payloads]
        return [Outcome(1, [], None) for _ in payloads]


async def test_a_write_still_queued_when_its_bound_passes_is_refused_and_never_runs() -> None:
    runners = Runners()
    group = GroupCommit(runners.one, runners.batch, timeout=0.2)
    first = asyncio.create_task(group.submit(write("aa"), idempotent=False, key=b"a"))
    await asyncio.sleep(0.01)  # the first is in flight, held by the database
    with pytest.raises(StoreUnavailable, match="too busy to take the write"):
        await group.submit(write("bb"), idempotent=False, key=b"b")  # waits behind it, past its bound
    runners.release.set()
    with pytest.raises(StoreUnavailable, match="may or may not have been stored"):
        await first  # in flight past its bound: its outcome is unknown to its caller
    await asyncio.sleep(0.05)
    assert runners.ran == ["aa"]  # the refused one was dropped from the queue, never run late


async def test_a_caller_that_goes_away_leaves_no_unretrieved_error_behind() -> None:
    runners = Runners()
    group = GroupCommit(runners.one, runners.batch, timeout=5)
    waiting = asyncio.create_task(group.submit(write("aa"), idempotent=False, key=b"a"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    runners.release.set()
    await asyncio.sleep(0.05)
    assert runners.ran == ["aa"]
