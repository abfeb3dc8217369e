"""Group commit for the MySQL store: writes that arrive together share one round trip and one COMMIT.

While a batch is in flight, new writes queue; when it completes, everything
queued forms the next batch, sent as one multi-statement transaction
(``BEGIN; UPDATE …; UPDATE …; COMMIT``; jobs that carry a ``payload`` may be
merged into fewer statements by ``run_batch``, see mysql_batch.py). Each caller
is answered only after its batch's COMMIT, with its own statement's outcome,
so an ack still means stored. A write that arrives alone goes out alone, at
once: batching adds no wait. One batch is in flight at a time (PITFALLS.md:
more, or waiting to fill a batch, measured slower; two in flight measured
again with bench/speed.py: no gain, the server process is CPU-bound).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import pymysql
from attrs import define, field


@define
class Job:
    sql: str
    params: Sequence[object]
    idempotent: bool
    key: bytes = b""  # the row it touches: batches lock rows in key order
    payload: object = None  # what run_batch may merge with other jobs' (the store's own description)
    done: asyncio.Future[Any] = field(factory=lambda: asyncio.get_running_loop().create_future())


class ConnectionLost(Exception):
    """The batch's connection failed; whether its COMMIT landed is unknown.

    ``error`` is what the callers whose statements cannot be repeated are told.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Coalesces statements submitted concurrently into batches.

    ``run_one`` executes a single statement (with the store's retries and error
    mapping); ``run_batch`` executes several in one transaction and returns
    their outcomes in order, raising :class:`pymysql.err.MySQLError` for a
    statement the server refused (nothing committed then) or
    :class:`ConnectionLost` when the connection died.
    """

    def __init__(
        self,
        run_one: Callable[[str, Sequence[object], bool], Awaitable[T]],
        run_batch: Callable[[list[Job]], Awaitable[list[T]]],
        max_batch: int = 256,
    ) -> None:
        self._run_one = run_one
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: list[Job] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # how many multi-statement batches ran (for tests and benchmarks)

    async def submit(
        self, sql: str, params: Sequence[object], *, idempotent: bool, key: bytes = b"", payload: object = None
    ) -> T:
        """Run the statement in the next batch; its outcome once that batch committed.

        ``key`` names the row the statement locks. Every batch takes its row
        locks in key order (the order of calls is kept for equal keys), so two
        processes' batches cannot deadlock on each other.
        """
        job = Job(sql, params, idempotent, key, payload)
        self._queue.append(job)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        result: T = await job.done
        return result

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._settle(batch)
        finally:
            self._flusher = None

    async def _settle(self, batch: list[Job]) -> None:
        if len(batch) == 1:
            await self._alone(batch[0])
            return
        batch.sort(key=lambda job: job.key)  # stable: same-row statements keep their order
        try:
            outcomes = await self._run_batch(batch)
        except ConnectionLost as exc:
            # The COMMIT may or may not have landed: repeat only what is safe to repeat.
            for job in batch:
                if job.idempotent:
                    await self._alone(job)
                else:
                    _settle_error(job, exc.error)
            return
        except pymysql.err.MySQLError:
            # A statement was refused (too large, a deadlock, ...); its transaction
            # was rolled back, so nothing of this batch is stored. Run each alone,
            # in order, so each caller gets its own answer.
            for job in batch:
                await self._alone(job)
            return
        except BaseException as exc:
            for job in batch:
                _settle_error(job, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        for job, outcome in zip(batch, outcomes, strict=True):
            if not job.done.done():
                job.done.set_result(outcome)

    async def _alone(self, job: Job) -> None:
        try:
            outcome = await self._run_one(job.sql, job.params, job.idempotent)
        except Exception as exc:
            _settle_error(job, exc)
        else:
            if not job.done.done():
                job.done.set_result(outcome)


def _settle_error(job: Job, exc: BaseException) -> None:
    if not job.done.done():
        job.done.set_exception(exc)
