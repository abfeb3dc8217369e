"""The Python load generator: python-socketio clients over websocket, or a raw aiomysql loop (the floor).

Started by bench.speed as ``python -m bench.loadgen``, one or more processes: for
the floor always, for Socket.IO with ``--generator python`` (bench/loadgen.mjs is
its Node twin there: the same commands and replies, less CPU per operation). It
reads one JSON command per line on stdin and answers each with one JSON line
on stdout, so the driver can start every generator's timed window at the same
instant (``time.monotonic()`` is the same clock in every process on Linux, and
the one Node's ``process.hrtime()`` reads).

Commands (``op``): ``connect`` (open this process's share of the sockets),
``mint`` (one fresh session; its token), ``prepare`` (per-phase setup),
``run`` (drive a phase until ``end``, counting operations that complete in
``[start, end]``), ``hold`` / ``release`` (idle sockets for the memory
measurement), ``floor`` (open the aiomysql pool), ``fill`` / ``replay`` /
``unreplay`` (the mailbox replay of bench/mailbox.py), ``close``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import resource
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import aiomysql
import socketio

TIMEOUT = 10.0  # one operation; longer counts as an error
SET_KEYS = 8  # the set phase cycles each socket through k0..k7
MAX_TOKENS = 1000  # tokens a socket keeps from the new-handshake phase, to resume with later
NOTICE = "notice"  # the event demo:notify sends


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def digest_hex(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class Tally:
    """Operations that complete inside ``[start, end]``: their latencies, and the failures."""

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.latencies: list[float] = []
        self.errors = 0
        self.samples: list[str] = []

    def record(self, began: float, outcome: str | float | None) -> None:
        """``outcome``: None (succeeded now), the instant it succeeded, or what went wrong."""
        now = outcome if isinstance(outcome, float) else time.monotonic()
        if not self.start <= now <= self.end:
            return
        if not isinstance(outcome, str):
            self.latencies.append(now - began)
        else:
            self.errors += 1
            if len(self.samples) < 5:
                self.samples.append(outcome)


# None: succeeded (now); a float: succeeded at that time.monotonic(); a str: what went wrong.
Op = Callable[[], Awaitable[str | float | None]]


async def drive(tally: Tally, op: Op, errors: Tally | None = None) -> None:
    """``op`` again and again until the window ends (failures to ``errors``, by default ``tally``)."""
    while time.monotonic() < tally.end:
        began = time.monotonic()
        outcome: str | float | None
        try:
            outcome = await op()
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"[:200]
        ((errors or tally) if isinstance(outcome, str) else tally).record(began, outcome)
        if isinstance(outcome, str):
            await asyncio.sleep(0.01)  # a dead server must not turn this into a busy loop


async def paced(tally: Tally, op: Op, interval: float, errors: Tally) -> None:
    """``op`` every ``interval`` seconds from a random start until the window ends (late ones go at once)."""
    upcoming = time.monotonic() + random.random() * interval  # noqa: S311 (a schedule, not a secret)
    while upcoming < tally.end:
        await asyncio.sleep(max(0.0, upcoming - time.monotonic()))
        upcoming += interval
        began = time.monotonic()
        outcome: str | float | None
        try:
            outcome = await op()
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"[:200]
        (errors if isinstance(outcome, str) else tally).record(began, outcome)


class Writes:
    """What one writer was told about its writes: the last acked value per key, and unsure ones after it."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.acked: dict[str, Any] = {}
        self.unsure: dict[str, list[Any]] = {}  # sent after the last ack, outcome unknown (timeout, error)
        self.acks = 0

    def outcome(self, key: str, value: Any, acked: bool) -> None:
        if acked:
            self.acked[key] = value
            self.unsure.pop(key, None)
            self.acks += 1
        else:
            self.unsure.setdefault(key, []).append(value)

    def as_json(self) -> dict[str, Any]:
        return {"token": self.token, "acked": self.acked, "unsure": self.unsure, "acks": self.acks}


class Sock:
    """One python-socketio AsyncClient over websocket; ``gotToken`` resolves the pending waiter."""

    def __init__(self, url: str, http: aiohttp.ClientSession, index: int) -> None:
        self.url = url
        self.index = index
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False, http_session=http)
        self.sio.on("gotToken", self._got_token)
        self.sio.on(NOTICE, self._notice)
        # A mailbox message goes here (the notify phase, a replay) with its arrival instant; acked on return.
        self.on_notice: Callable[[Any, Any, float], None] | None = None
        self.latest = ""  # the token of the last gotToken
        self.user: str | None = None  # logged in as, for the notify phase
        self.target = ""
        self._waiter: asyncio.Future[dict[str, Any]] | None = None
        self.token = ""
        self.tokens: list[str] = []  # from the new-handshake phase
        self.resume_with: list[str] = []
        self.writes: Writes | None = None
        self.counter = 0

    def _notice(self, payload: Any, meta: Any = None) -> None:
        at = time.monotonic()
        if self.on_notice is not None:
            self.on_notice(payload, meta, at)

    def _got_token(self, message: dict[str, Any]) -> None:
        if isinstance(message, dict) and message.get("token"):
            self.latest = str(message["token"])
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    def expect_token(self) -> asyncio.Future[dict[str, Any]]:
        self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    async def connect(self, auth: dict[str, Any] | None = None) -> None:
        await self.sio.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=TIMEOUT)

    async def get_token(self, token: str) -> dict[str, Any]:
        waiter = self.expect_token()
        await self.sio.emit("getToken", {"token": token})
        return await asyncio.wait_for(waiter, TIMEOUT)

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=TIMEOUT)


def _status(reply: dict[str, Any], wanted: str) -> str | None:
    return None if reply.get("status") == wanted else f"status {reply.get('status')!r}: {reply.get('errors')!r}"


class SocketLoad:
    """This process's share of the Socket.IO clients of one system."""

    def __init__(self, url: str, clients: int, first_index: int) -> None:
        self.url = url
        self.count = clients
        self.first_index = first_index
        # One shared aiohttp session without a connection limit (the default of 100 would cap the sockets).
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.socks: list[Sock] = []
        self.held: list[Sock] = []
        self.interval = 0.0  # the paced phase: seconds between one socket's sends

    async def connect(self) -> None:
        self.socks = [Sock(self.url, self.http, self.first_index + i) for i in range(self.count)]
        await gather_bounded([s.connect() for s in self.socks], 50)

    async def mint(self) -> str:
        reply = await self.socks[0].get_token("")
        return str(reply["token"])

    async def prepare(self, phase: str, params: dict[str, Any]) -> dict[str, Any]:
        if phase == "resume":
            given: list[str] = params.get("tokens") or []
            random.shuffle(given)
            for i, sock in enumerate(self.socks):
                sock.resume_with = given[i :: len(self.socks)] if given else list(sock.tokens)
                if not sock.resume_with:
                    sock.resume_with = [str((await sock.get_token(""))["token"])]
                random.shuffle(sock.resume_with)
        elif phase == "set":
            replies = await asyncio.gather(*(s.get_token("") for s in self.socks))
            for sock, reply in zip(self.socks, replies, strict=True):
                sock.token = str(reply["token"])
                sock.writes = Writes(sock.token)
        elif phase == "shared":
            shared = str(params["token"])
            replies = await asyncio.gather(*(s.get_token(shared) for s in self.socks))
            bad = [r for r in replies if r.get("status") != "resumed"]
            if bad:
                raise RuntimeError(f"{len(bad)} sockets could not resume the shared token: {bad[0]}")
            for sock in self.socks:
                sock.token = shared
                sock.writes = Writes(shared)
        elif phase in ("notify", "paced"):
            await self.prepare_notify(int(params.get("clients") or len(self.socks)))
            self.interval = float(params.get("interval") or 0.0)
        return {}

    async def prepare_notify(self, clients: int) -> None:
        """Each socket logged in as its own user (once: a retried phase keeps them), sending to the next one's."""

        async def one(sock: Sock) -> None:
            sock.target = f"u{(sock.index + 1) % clients}"
            if sock.user is not None:
                return
            await sock.get_token("")
            reply = await sock.call("user:login", {"userId": f"u{sock.index}"})
            if not isinstance(reply, dict) or reply.get("ok") is not True:
                raise RuntimeError(f"user:login: {reply!r}")
            sock.user = f"u{sock.index}"

        await asyncio.gather(*(one(s) for s in self.socks))

    async def run_notify(self, tally: Tally, interval: float) -> dict[str, Any]:
        """Each socket sends to the next socket's user; a delivery is an operation.

        As loadgen.mjs's runNotify: again as soon as answered (``notify``), or every ``interval``
        seconds (``paced``); latency from the send call to the receiver's ``notice``; the send's
        own round trip apart; out-of-order, repeated or replayed messages are errors.
        """
        sends = Tally(tally.start, tally.end)

        def listen(sock: Sock) -> None:
            last = 0

            def noticed(payload: Any, meta: Any, at: float) -> None:
                nonlocal last
                message_id = int(meta.get("id", 0)) if isinstance(meta, dict) else 0
                if message_id <= last or not isinstance(meta, dict) or meta.get("replayed") is not False:
                    tally.record(at, f"notice {meta!r} after id {last}")
                else:
                    tally.record(float(payload["text"]), at)
                last = max(last, message_id)

            sock.on_notice = noticed

        def send(sock: Sock) -> Op:
            async def notify() -> str | None:
                reply = await sock.call("demo:notify", {"userId": sock.target, "text": repr(time.monotonic())})
                ok = isinstance(reply, dict) and reply.get("ok") is True and reply.get("queued") == 1
                return None if ok else f"reply {reply!r}"

            return notify

        for sock in self.socks:
            listen(sock)
        if interval > 0:
            await asyncio.gather(*(paced(sends, send(s), interval, tally) for s in self.socks))
        else:
            await asyncio.gather(*(drive(sends, send(s), tally) for s in self.socks))
        for sock in self.socks:
            sock.on_notice = None  # whatever is still on its way is acknowledged, not counted
        return {"send_latencies": [round(x, 7) for x in sends.latencies]}

    def op(self, phase: str, sock: Sock) -> Op:
        if phase == "new":

            async def new() -> str | None:
                reply = await sock.get_token("")
                if len(sock.tokens) < MAX_TOKENS and reply.get("token"):
                    sock.tokens.append(str(reply["token"]))
                return _status(reply, "created")

            return new
        if phase == "resume":

            async def resume() -> str | None:
                token = sock.resume_with[sock.counter % len(sock.resume_with)]
                sock.counter += 1
                return _status(await sock.get_token(token), "resumed")

            return resume
        if phase == "auth":

            async def auth() -> str | float | None:
                fresh = Sock(self.url, self.http, sock.index)
                waiter = fresh.expect_token()
                try:
                    await fresh.connect({"token": ""})
                    reply = await asyncio.wait_for(waiter, TIMEOUT)
                    # The latency ends with gotToken; the disconnect belongs to the loop, not to it.
                    arrived = time.monotonic()
                finally:
                    await fresh.sio.disconnect()
                return _status(reply, "created") or arrived

            return auth
        if phase in ("set", "shared"):
            writes = sock.writes
            if writes is None:
                raise RuntimeError(f"{phase}: not prepared")

            async def set_() -> str | None:
                sock.counter += 1
                key = f"k{sock.counter % SET_KEYS}" if phase == "set" else f"s{sock.index}"
                value = sock.counter
                try:
                    reply = await sock.call("demo:set", {"key": key, "value": value})
                except Exception:
                    writes.outcome(key, value, acked=False)
                    raise
                acked = reply == {"ok": True}
                writes.outcome(key, value, acked)
                return None if acked else f"reply {reply!r}"

            return set_
        if phase == "get":

            async def get() -> str | None:
                reply = await sock.call("demo:get", {"key": "k1"})
                return None if isinstance(reply, dict) and reply.get("ok") is True else f"reply {reply!r}"

            return get
        raise ValueError(f"unknown phase {phase!r}")

    async def run(self, phase: str, tally: Tally) -> dict[str, Any]:
        if phase in ("notify", "paced"):
            return await self.run_notify(tally, self.interval if phase == "paced" else 0.0)
        await asyncio.gather(*(drive(tally, self.op(phase, s)) for s in self.socks))
        extra: dict[str, Any] = {}
        if phase in ("set", "shared"):
            extra["writes"] = [s.writes.as_json() for s in self.socks if s.writes is not None]
        return extra

    async def hold(self, count: int, concurrency: int) -> dict[str, Any]:
        """``count`` more idle sockets, each with a session made by the auth handshake."""
        fresh = [Sock(self.url, self.http, i) for i in range(count)]
        statuses: dict[str, int] = {}

        async def one(sock: Sock) -> None:
            waiter = sock.expect_token()
            await sock.connect({"token": ""})
            reply = await asyncio.wait_for(waiter, TIMEOUT)
            status = str(reply.get("status"))
            statuses[status] = statuses.get(status, 0) + 1

        await gather_bounded([one(s) for s in fresh], concurrency)
        self.held += fresh
        return {"held": len(self.held), "statuses": statuses}

    async def release(self) -> None:
        await gather_bounded([s.sio.disconnect() for s in self.held], 200)
        self.held = []

    async def close(self) -> None:
        await self.release()
        await gather_bounded([s.sio.disconnect() for s in self.socks], 200)
        await self.http.close()


class Replay:
    """The mailbox replay of bench/mailbox.py: fill a session's mailbox, then take it on a resume."""

    def __init__(self) -> None:
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.sock: Sock | None = None
        self.ids: list[int] = []

    async def fill(self, url: str, user: str, count: int, concurrency: int) -> dict[str, Any]:
        """A session of ``user`` with ``count`` messages waiting and no socket: its token (as loadgen.mjs's fill)."""
        receiver = Sock(url, self.http, 0)
        made = receiver.expect_token()
        try:
            await receiver.connect({"token": ""})
            first = str((await asyncio.wait_for(made, TIMEOUT))["token"])
            reply = await receiver.call("user:login", {"userId": user})
            if not isinstance(reply, dict) or reply.get("ok") is not True or receiver.latest == first:
                raise RuntimeError(f"user:login: {reply!r}")
            token = receiver.latest
        finally:
            await receiver.sio.disconnect()
        sender = Sock(url, self.http, 0)
        try:
            await sender.connect()
            began = time.monotonic()
            replies = await gather_bounded(
                [sender.call("demo:notify", {"userId": user, "text": f"m{i}"}) for i in range(count)], concurrency
            )
            bad = [r for r in replies if not (isinstance(r, dict) and r.get("ok") is True and r.get("queued") == 1)]
            if bad:
                raise RuntimeError(f"{len(bad)} of {count} demo:notify failed: {bad[0]!r}")
            return {"token": token, "seconds": time.monotonic() - began}
        finally:
            await sender.sio.disconnect()

    async def replay(self, url: str, token: str, count: int) -> dict[str, Any]:
        """Connect with auth {token} and take the replay; the socket stays until ``unreplay``."""
        sock = self.sock = Sock(url, self.http, 0)
        ids = self.ids = []
        replayed_all = True
        first: list[float] = []
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def noticed(payload: Any, meta: Any, at: float) -> None:
            nonlocal replayed_all
            ids.append(int(meta.get("id", 0)) if isinstance(meta, dict) else 0)
            if not isinstance(meta, dict) or meta.get("replayed") is not True:
                replayed_all = False
            if not first:
                first.append(at)
            if len(ids) == count and not done.done():
                done.set_result(at)

        sock.on_notice = noticed
        waiter = sock.expect_token()
        began = time.monotonic()
        await sock.connect({"token": token})
        connected = time.monotonic()
        reply = await asyncio.wait_for(waiter, TIMEOUT)
        got_token = time.monotonic()
        if reply.get("status") != "resumed":
            raise RuntimeError(f"replay: gotToken {reply!r}")
        last = await asyncio.wait_for(done, 120)
        return {
            "began": began,
            "connected_s": connected - began,
            "token_s": got_token - began,
            "first_s": first[0] - began,
            "last_s": last - began,
            "received": len(ids),
            "in_order": all(a < b for a, b in itertools.pairwise(ids)),
            "replayed_all": replayed_all,
            "first_id": ids[0],
            "last_id": ids[-1],
        }

    async def unreplay(self) -> dict[str, Any]:
        received = len(self.ids)
        if self.sock is not None:
            await self.sock.sio.disconnect()
        self.sock, self.ids = None, []
        return {"received": received}

    async def close(self) -> None:
        await self.unreplay()
        await self.http.close()


class FloorLoad:
    """The same single-row statements as fast as the database allows: no Socket.IO, no session code."""

    FIELDS = "data, version, created, last_seen, expires, absolute_expires, user_id"
    IDLE = 86400.0
    ABSOLUTE = 30 * 86400.0

    def __init__(self, db: dict[str, Any], table: str, workers: int, pool_size: int, first_index: int) -> None:
        self.db = db
        self.table = table
        self.workers = workers
        self.pool_size = pool_size
        self.first_index = first_index
        self.pool: Any = None
        self.ids: list[list[str]] = [[] for _ in range(workers)]  # per worker: hex ids it inserted
        self.resume_with: list[list[str]] = [[] for _ in range(workers)]
        self.own: list[str] = []  # per worker: its row for the set/get phases
        self.writes: list[Writes] = []
        self.counters = [0] * workers

    async def open(self) -> None:
        self.pool = await aiomysql.create_pool(
            minsize=self.pool_size, maxsize=self.pool_size, autocommit=True, charset="utf8mb4", **self.db
        )

    async def execute(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self.pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(sql, params)
            return list(await cursor.fetchall())

    async def insert(self) -> str:
        """A new row, as a handshake makes it: a fresh token's SHA-256 is the key."""
        hexid = digest_hex(secrets.token_urlsafe(32))
        now = time.time()
        await self.execute(
            f"INSERT INTO {self.table} (id, data, version, created, last_seen, expires, absolute_expires, user_id)"
            " VALUES (UNHEX(%s), %s, 0, %s, %s, %s, %s, NULL)",
            (hexid, "{}", now, now, now + self.IDLE, now + self.ABSOLUTE),
        )
        return hexid

    async def set_key(self, hexid: str, key: str, value: Any) -> bool:
        now = time.time()
        sql = (
            f"UPDATE {self.table} SET data = JSON_SET(data, %s, JSON_EXTRACT(%s, '$')), version = version + 1,"
            " last_seen = %s, expires = LEAST(GREATEST(expires, %s), absolute_expires)"
            " WHERE id = UNHEX(%s) AND expires > %s"
        )
        async with self.pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(sql, (f'$."{key}"', json.dumps(value), now, now + self.IDLE, hexid, now))
            return bool(cursor.rowcount)

    async def mint(self) -> str:
        return await self.insert()

    async def prepare(self, phase: str, params: dict[str, Any]) -> dict[str, Any]:
        if phase == "resume":
            given: list[str] = [digest_hex(t) for t in params.get("tokens") or []]
            for w in range(self.workers):
                self.resume_with[w] = given[w :: self.workers] if given else list(self.ids[w])
                if not self.resume_with[w]:
                    self.resume_with[w] = [await self.insert()]
                random.shuffle(self.resume_with[w])
        elif phase == "set":
            self.own = [await self.insert() for _ in range(self.workers)]
            self.writes = [Writes(hexid) for hexid in self.own]
        elif phase == "shared":
            shared = str(params["token"])
            self.own = [shared] * self.workers
            self.writes = [Writes(shared) for _ in range(self.workers)]
        return {}

    def op(self, phase: str, w: int) -> Op:
        index = self.first_index + w
        if phase in ("new", "auth"):

            async def new() -> str | None:
                hexid = await self.insert()
                if len(self.ids[w]) < MAX_TOKENS:
                    self.ids[w].append(hexid)
                return None

            return new
        if phase == "resume":

            async def resume() -> str | None:
                ids = self.resume_with[w]
                self.counters[w] += 1
                rows = await self.execute(
                    f"SELECT {self.FIELDS} FROM {self.table} WHERE id = UNHEX(%s)", (ids[self.counters[w] % len(ids)],)
                )
                if not rows:
                    return "row not found"
                json.loads(rows[0][0])
                return None

            return resume
        if phase in ("set", "shared"):

            async def set_() -> str | None:
                self.counters[w] += 1
                key = f"k{self.counters[w] % SET_KEYS}" if phase == "set" else f"s{index}"
                found = await self.set_key(self.own[w], key, self.counters[w])
                self.writes[w].outcome(key, self.counters[w], found)
                return None if found else "row not found"

            return set_
        if phase == "get":

            async def get() -> str | None:
                rows = await self.execute(f"SELECT data FROM {self.table} WHERE id = UNHEX(%s)", (self.own[w],))
                if not rows:
                    return "row not found"
                json.loads(rows[0][0]).get("k1", "")
                return None

            return get
        raise ValueError(f"unknown phase {phase!r}")

    async def run(self, phase: str, tally: Tally) -> dict[str, Any]:
        await asyncio.gather(*(drive(tally, self.op(phase, w)) for w in range(self.workers)))
        return {}

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            await self.pool.wait_closed()


async def gather_bounded(jobs: list[Awaitable[Any]], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def timed(load: SocketLoad | FloorLoad, phase: str, start: float, end: float) -> dict[str, Any]:
    tally = Tally(start, end)
    cpu: list[float] = []

    async def sample() -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpu.append(cpu_now())
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        cpu.append(cpu_now())

    sampler = asyncio.create_task(sample())
    extra = await load.run(phase, tally)
    await sampler
    return {
        "latencies": [round(x, 7) for x in tally.latencies],
        "errors": tally.errors,
        "error_samples": tally.samples,
        "cpu": cpu[1] - cpu[0],
        **extra,
    }


async def serve() -> None:
    load: SocketLoad | FloorLoad | None = None
    mailbox: Replay | None = None
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        op = command["op"]
        reply: dict[str, Any] = {"ok": True}
        try:
            if op == "connect":
                load = SocketLoad(command["url"], command["clients"], command["first_index"])
                await load.connect()
            elif op == "floor":
                load = FloorLoad(
                    command["db"], command["table"], command["clients"], command["pool"], command["first_index"]
                )
                await load.open()
            elif op == "hold":
                if not isinstance(load, SocketLoad):
                    load = SocketLoad(command["url"], 0, 0)
                reply.update(await load.hold(command["count"], command.get("concurrency", 50)))
            elif op == "release":
                if isinstance(load, SocketLoad):
                    await load.release()
            elif op in ("fill", "replay", "unreplay"):
                mailbox = mailbox or Replay()
                if op == "fill":
                    args = (command["url"], str(command["user"]), command["count"], command.get("concurrency", 20))
                    reply.update(await mailbox.fill(*args))
                elif op == "replay":
                    reply.update(await mailbox.replay(command["url"], str(command["token"]), command["count"]))
                else:
                    reply.update(await mailbox.unreplay())
            elif op == "close" and load is None:
                if mailbox is not None:
                    await mailbox.close()
                print(json.dumps(reply), flush=True)
                return
            elif load is None:
                raise RuntimeError(f"{op}: connect or floor first")
            elif op == "mint":
                reply["token"] = await load.mint()
            elif op == "prepare":
                reply.update(await load.prepare(command["phase"], command.get("params", {})))
            elif op == "run":
                reply.update(await timed(load, command["phase"], command["start"], command["end"]))
            elif op == "close":
                await load.close()
                if mailbox is not None:
                    await mailbox.close()
                print(json.dumps(reply), flush=True)
                return
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        print(json.dumps(reply), flush=True)


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop  # uvicorn[standard] brings it; the servers run on it too
    except ImportError:
        asyncio.run(serve())
    else:
        # The cheaper event loop leaves more of the 2 cores to the server being measured.
        uvloop.run(serve())


if __name__ == "__main__":
    main()
