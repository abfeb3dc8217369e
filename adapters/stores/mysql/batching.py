"""Group commit and read coalescing for the MySQL store: operations that arrive together share a round trip.

Writes: while a batch is in flight, new writes queue; when it completes,
everything queued forms the next batch, sent as one transaction (merged into
few statements by statements.batch, each its own round trip). Each caller is answered only after its
batch's COMMIT, with its own operation's outcome, so an ack still means
stored. A write that arrives alone goes out alone, at once: batching adds no
wait. One batch is in flight at a time (docs/decisions.md, group commit:
more, or waiting to fill a batch, measured slower).

Reads: the mirror for lookups. While one is in flight, new ones queue and go
out together as one ``SELECT … WHERE id IN (…)``; each caller gets its row.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import pymysql

from adapters.stores.mysql.connection import ConnectionLost, Outcome
from adapters.stores.mysql.errors import ROLLED_BACK, error_code
from adapters.stores.mysql.statements import Payload
from application.errors import StoreUnavailable


class _Job:
    __slots__ = ("deadline", "done", "idempotent", "key", "payload", "started")

    def __init__(
        self, payload: Payload, idempotent: bool, key: bytes, deadline: float, loop: asyncio.AbstractEventLoop
    ):
        self.payload = payload
        self.idempotent = idempotent
        self.key = key  # the row it locks: batches lock rows in key order
        self.deadline = deadline  # loop time by which its caller is answered
        self.done: asyncio.Future[Outcome] = loop.create_future()
        self.started = False


class GroupCommit:
    """Coalesces row operations submitted concurrently into batches.

    ``run_one`` runs one operation alone (with the connection's retries and
    error mapping); ``run_batch`` runs several in one transaction and returns
    their outcomes in order (the named error of an operation refused alone,
    the others applied), raising a MySQL error when the server refused or
    rolled back the whole transaction (nothing committed then) or
    :class:`ConnectionLost` when the connection failed.

    Every caller waits at most ``timeout`` in all, in the queue included: a
    job still queued then is dropped unrun; one in flight has an unknown
    outcome. Either way its caller gets :class:`StoreUnavailable`. One timer
    serves every job (the oldest unanswered one's deadline): a timer per
    write cost more than the rest of group commit.
    """

    def __init__(
        self,
        run_one: Callable[[Payload, bool], Awaitable[Outcome]],
        run_batch: Callable[[list[Payload]], Awaitable[list[Outcome | Exception]]],
        *,
        timeout: float,
        max_batch: int = 256,
    ) -> None:
        self._run_one = run_one
        self._run_batch = run_batch
        self._timeout = timeout
        self._max_batch = max_batch
        self._queue: list[_Job] = []
        self._waiting: deque[_Job] = deque()  # every job not yet answered (and some answered), oldest first
        self._timer: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # how many multi-operation batches committed (for tests and benchmarks)
        # Batches rolled back whole by the server (a deadlock, a Galera certification conflict) and run again.
        self.reruns = 0
        self.refused = 0  # operations refused alone (too large, ...) while the rest of their batch went on

    async def submit(self, payload: Payload, *, idempotent: bool, key: bytes) -> Outcome:
        """Run ``payload`` in the next batch; its outcome once that batch committed.

        ``key`` names the row it locks. Every batch takes its row locks in key
        order (the order of calls is kept for equal keys), so two processes'
        batches cannot deadlock on each other. ``idempotent``: safe to repeat
        after a lost connection (it may have landed already).
        """
        loop = asyncio.get_running_loop()
        job = _Job(payload, idempotent, key, loop.time() + self._timeout, loop)
        self._queue.append(job)
        self._waiting.append(job)
        if self._timer is None:
            self._timer = loop.call_at(job.deadline, self._expire)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        # A caller that goes away cancels its future: its outcome is nobody's (it still runs, unacknowledged).
        return await job.done

    def _expire(self) -> None:
        """Answer every job past its deadline; arm the timer for the next one."""
        self._timer = None
        waiting = self._waiting
        now = asyncio.get_running_loop().time()
        dropped: set[int] = set()
        while waiting and (waiting[0].done.done() or waiting[0].deadline <= now):
            job = waiting.popleft()
            if job.done.done():
                continue
            if job.started:
                job.done.set_exception(
                    StoreUnavailable(
                        f"the write was not acknowledged within {self._timeout} s; it may or may not have been stored"
                    )
                )
            else:
                dropped.add(id(job))
                job.done.set_exception(
                    StoreUnavailable(f"the store was too busy to take the write within {self._timeout} s")
                )
        if dropped:  # never run late, unacknowledged: one pass over the queue, however many expired
            self._queue = [job for job in self._queue if id(job) not in dropped]
        if waiting:
            self._timer = asyncio.get_running_loop().call_at(waiting[0].deadline, self._expire)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                for job in batch:
                    job.started = True
                await self._settle(batch)
        finally:
            self._flusher = None

    async def _settle(self, batch: list[_Job]) -> None:
        if len(batch) == 1:
            await self._alone(batch[0])
            return
        batch.sort(key=lambda job: job.key)  # stable: same-row operations keep their order
        for attempt in range(3):
            try:
                outcomes = await self._run_batch([job.payload for job in batch])
            except ConnectionLost as exc:
                if not exc.maybe_committed and attempt < 2:
                    continue  # it failed before its COMMIT was sent: nothing of it can land
                # The COMMIT may or may not have landed: repeat only what is safe to repeat.
                for job in batch:
                    if job.idempotent:
                        await self._alone(job)
                    else:
                        _fail(job, exc.error)
                return
            except pymysql.err.MySQLError as exc:
                if error_code(exc) in ROLLED_BACK and attempt < 2:
                    # Rolled back whole (a deadlock; on Galera, a certification conflict at
                    # COMMIT or a brute-force abort): applied nowhere, so it may run again.
                    self.reruns += 1
                    await asyncio.sleep(0.005 * 2**attempt)
                    continue
                # Refused whole by something the batch cannot tell apart: each alone, in order,
                # so each caller gets its own answer. Nothing of the batch was stored.
                for job in batch:
                    await self._alone(job)
                return
            except BaseException as exc:
                for job in batch:
                    _fail(job, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            break
        self.batches += 1
        for job, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self.refused += 1
                _fail(job, outcome)
            elif not job.done.done():
                job.done.set_result(outcome)

    async def _alone(self, job: _Job) -> None:
        if asyncio.get_running_loop().time() >= job.deadline:
            _fail(job, StoreUnavailable("the store was too busy to take the write in time"))
            return  # its caller stopped waiting: never run it late, unacknowledged
        try:
            outcome = await self._run_one(job.payload, job.idempotent)
        except Exception as exc:
            _fail(job, exc)
        else:
            if not job.done.done():
                job.done.set_result(outcome)


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.done.done():
        job.done.set_exception(exc)


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
