"""A stateful test of delivery: connections, sends, acknowledgements, logins, regenerations,
logouts, expiry and restarts, checked step by step against a simple model, over every store adapter.
Two rules race on purpose: sends to one session at once, and a send during a connection's handshake
and replay (the store then says which message got which id; the model checks the rest).

It drives the application layer (Sessions, Mailboxes, SessionHandle, Inbox) the way the Socket.IO
transport does (adapters/socketio/transport.py), with one fake in its place: a connection whose
``deliver`` records each Delivery instead of emitting it, and which opens its inbox whenever its
handle is bound (on connect, and on every rebind: a login, a logout, a session ended by another
connection, an expiry). A listener routes every message sent to the inboxes delivering for its
session, as the transport's ``messages_sent`` does.

The invariants, in words:

- A connection receives exactly the messages sent to its session and not yet acknowledged: on
  binding, those waiting, in id order (replayed); then each one sent while it is bound (live).
  Each at most once per connection.
- Nothing acknowledged comes back, on any later connection. (An acknowledgement counts while the
  connection still delivers for that session; one arriving after another connection's login
  moved the session away reaches no one, and the message comes again: at least once.)
- Nothing outlives its session: a logout, an expiry and a login as another user leave no message
  to deliver, and a session that is gone has no messages in the store.
- The session's ``waiting`` equals the number of messages the model holds for it, and
  ``last_message`` the number ever sent to it; ids are never reused.
- A full mailbox refuses a send to it, and a send to a user with one full mailbox queues nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar, cast

import hypothesis
import pytest
from attrs import define, field
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from adapters.stores.mysql import MySQLConfig, MySQLStore
from adapters.stores.sqlite import SQLiteStore
from application.handle import SessionHandle
from application.mailbox import Delivery, Inbox, Mailboxes, Sent
from application.ports import Store
from application.sessions import Handshake, Sessions, Status
from domain.expiry import ExpiryPolicy
from domain.mailbox import MailboxFull, MailboxPolicy
from domain.token import Token
from domain.values import JSON, encode
from tests.support.fakes import FakeClock
from tests.support.stores import mysql_url, open_store

# Steps of time short of the idle timeout never end a session (fewer than 1,000 of them per run);
# one over 5 s makes the next resume touch its session (a store write inside the handshake).
POLICY = ExpiryPolicy(idle_ttl=10_000, absolute_ttl=10_000_000, touch_after=5)
# Small, so that full mailboxes happen; messages outlive every session, so only sessions end them.
MAIL = MailboxPolicy(max_messages=4, ttl=100_000_000)
USERS = ("alice", "bob")
T = TypeVar("T")

IDLE_OUT = POLICY.idle_ttl + 1  # a step of time past the idle timeout of every session
events = st.sampled_from(["notice", "chat", "événement 😀"])
payloads: st.SearchStrategy[JSON] = st.one_of(
    st.integers(-3, 3), st.text(max_size=6), st.lists(st.integers(0, 3), max_size=3), st.none()
)
messages = st.lists(st.tuples(events, payloads), min_size=1, max_size=3)


@define(eq=False)
class Modelled:
    """What the model believes about one session, across its tokens."""

    serial: int
    token: str  # its token now
    digest: bytes  # that token's digest
    owner: str | None = None
    last_id: int = 0
    pending: dict[int, tuple[str, JSON]] = field(factory=dict)  # sent, not acknowledged, not dropped
    alive: bool = True


@define
class Steps:
    """The number of the rule running: deliveries are stamped with it."""

    n: int = 0


Expected = tuple[int, str, JSON, bool | None]
"""(id, event, payload, replayed); replayed None: either way (a send that raced the connection's replay)."""


class Connection:
    """The fake transport of one socket: its handle, its inbox, and what it was delivered."""

    def __init__(self, sessions: Sessions, mail: Mailboxes, steps: Steps) -> None:
        self.handle = SessionHandle(sessions, on_rebound=self._rebound)
        self.inbox = Inbox(mail, self._deliver)
        self.steps = steps
        self.listed: bytes | None = None  # the session it is listed under for live delivery
        # Each delivery, with the session digest it was delivered for and the step it came in.
        self.received: list[tuple[Delivery, bytes, int]] = []
        self.expected: list[Expected] = []
        self.session: Modelled | None = None

    async def bind(self, result: Handshake) -> None:
        """The handle was bound: list the socket under its session, then replay (transport._open_inbox)."""
        previous = self.inbox.digest
        self.listed = result.token.digest  # before the replay: a message sent meanwhile waits for it
        moved = result.status is Status.ROTATED  # a login or regenerate: the same session
        await self.inbox.open(result.token, result.session, moved_from=previous if moved else None)

    async def _deliver(self, delivery: Delivery) -> None:
        digest = self.inbox.digest
        assert digest is not None, "a delivery on a connection that delivers for no session"
        self.received.append((delivery, digest, self.steps.n))

    async def _rebound(self, result: Handshake | None) -> None:
        if result is not None:
            await self.bind(result)


class Router:
    """The transport's listeners: messages to the inboxes of their sessions, ended sessions to the handles."""

    def __init__(self) -> None:
        self.connections: list[Connection] = []

    async def messages_sent(self, sent: Sent) -> None:
        for digest, message_id in sent.targets:
            for connection in list(self.connections):
                if connection.listed == digest:
                    await connection.inbox.receive(digest, message_id, sent.event, sent.payload, sent.sent_at)

    async def sessions_ended(self, digests: frozenset[bytes]) -> None:
        for connection in list(self.connections):
            if connection.handle.bound and connection.handle.token.digest in digests:
                await connection.handle.replace_if_ended(digests)


async def reopen(store: Store) -> Store:
    """The same table or file through a new store object, as a restarted server opens it."""
    if isinstance(store, SQLiteStore):
        reopened: Store = SQLiteStore(store.path, store.table)
    elif isinstance(store, MySQLStore):
        reopened = MySQLStore(MySQLConfig.from_url(mysql_url(), table=store.table, pool_size=5))
    else:
        return store  # memory: the dict is the store
    await store.close()
    await reopened.open()
    return reopened


def machine_for(kind: str, workdir: Path) -> type[RuleBasedStateMachine]:
    class DeliveryMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.stack = AsyncExitStack()
            self.first = cast(Store, self.run(self.stack.enter_async_context(open_store(kind, workdir))))
            self.store = self.first
            self.clock = FakeClock()
            self.steps = Steps()
            self.serials = 0
            self.by_digest: dict[bytes, Modelled] = {}  # every digest a session ever had
            self.issued: list[str] = []  # every token handed out, for clients to present again
            self.acked_at: dict[tuple[int, int], int] = {}  # (session serial, message id) -> step
            self._start()

        def _start(self) -> None:
            self.sessions = Sessions(self.store, self.clock, policy=POLICY)
            self.mail = Mailboxes(self.sessions, self.store, policy=MAIL)
            self.router = Router()
            self.sessions.subscribe(self.router)
            self.mail.subscribe(self.router)

        def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
            return self.loop.run_until_complete(coroutine)

        def teardown(self) -> None:
            self.run(self._drain_all())
            if self.store is not self.first:
                self.run(self.store.close())
            self.run(self.stack.aclose())
            self.loop.close()

        async def _drain_all(self) -> None:
            for connection in self.router.connections:
                await connection.inbox.drain()

        # -- the model's bookkeeping ----------------------------------------------------------

        def _fresh(self, token: Token) -> Modelled:
            self.serials += 1
            modelled = Modelled(self.serials, token.value, token.digest)
            self.by_digest[token.digest] = modelled
            self.issued.append(token.value)
            return modelled

        def _sync(self) -> None:
            """After a rule: each connection's handle may have been handed a fresh session."""
            for connection in self.router.connections:
                digest = connection.handle.token.digest
                modelled = self.by_digest.get(digest)
                if modelled is None:
                    connection.session = self._fresh(connection.handle.token)  # rebound: empty
                else:
                    assert modelled.alive, "a connection holds an ended session"
                    assert modelled.digest == digest, "a connection holds a token rotated away"
                    connection.session = modelled

        def _queued(self, modelled: Modelled, message_id: int, event: str, payload: JSON) -> None:
            assert message_id == modelled.last_id + 1, "ids count the messages sent to the session"
            modelled.last_id = message_id
            modelled.pending[message_id] = (event, payload)
            for connection in self.router.connections:
                if connection.session is modelled:
                    connection.expected.append((message_id, event, payload, False))
                    if len(connection.expected) > 1 and connection.expected[-2][3]:
                        hypothesis.event("a live message follows a replay")

        def _connection(self, pick: int) -> Connection:
            return self.router.connections[pick % len(self.router.connections)]

        def _live_sessions(self) -> list[Modelled]:
            return [m for m in {id(m): m for m in self.by_digest.values()}.values() if m.alive]

        def _end(self, modelled: Modelled) -> None:
            modelled.alive = False
            modelled.pending.clear()

        # -- rules -----------------------------------------------------------------------------

        @initialize(count=st.integers(min_value=1, max_value=3))
        def some_sockets_connect(self, count: int) -> None:
            for _ in range(count):
                self._connect("")

        @rule(presents=st.sampled_from(["new", "live", "any"]), pick=st.integers(min_value=0))
        def connect(self, presents: str, pick: int) -> None:
            """A socket connects with no token, the token of a live session, or any token it was ever given."""
            self.steps.n += 1
            live = [m.token for m in self._live_sessions()]
            tokens = {"new": [], "live": live, "any": self.issued}[presents]
            self._connect(tokens[pick % len(tokens)] if tokens else "")

        def _connect(self, presented: str) -> None:
            connection = Connection(self.sessions, self.mail, self.steps)
            result = self.run(self._connecting(connection, presented))
            known = self.by_digest.get(Token(presented).digest) if presented else None
            if known is not None and known.alive and known.digest == Token(presented).digest:
                assert result.status is Status.RESUMED
                connection.session = known
                connection.expected += [(i, e, p, True) for i, (e, p) in sorted(known.pending.items())]
                if known.pending:
                    hypothesis.event("a connection replays waiting messages")
            else:
                assert result.status is not Status.RESUMED, "an ended session was resumed"
                connection.session = self._fresh(result.token)

        async def _connecting(self, connection: Connection, presented: str) -> Handshake:
            result = await connection.handle.handshake(presented)
            self.router.connections.append(connection)
            await connection.bind(result)
            return result

        @precondition(lambda self: self._live_sessions())
        @rule(pick=st.integers(min_value=0), messages=messages, delay=st.integers(min_value=0, max_value=20))
        def connect_while_sending(self, pick: int, messages: list[tuple[str, JSON]], delay: int) -> None:
            """A socket resumes a session while the server sends to it: each message comes once, in order."""
            self.steps.n += 1
            live = self._live_sessions()
            modelled = live[pick % len(live)]
            waiting = sorted(modelled.pending.items())
            sender = SessionHandle(self.sessions)
            assert self.run(sender.handshake(modelled.token)).status is Status.RESUMED
            # Long enough for the resume to touch the session: one more store call inside the handshake.
            self.clock.advance(7.0)
            connection = Connection(self.sessions, self.mail, self.steps)

            async def send_all() -> list[int | None]:
                for _ in range(delay):
                    await asyncio.sleep(0)
                sent: list[int | None] = []
                for event, payload in messages:
                    try:
                        sent.append(await self.mail.send(sender, event, payload))
                    except MailboxFull:
                        sent.append(None)
                return sent

            async def both() -> tuple[Handshake, list[int | None]]:
                return await asyncio.gather(self._connecting(connection, modelled.token), send_all())

            result, outcomes = self.run(both())
            assert result.status is Status.RESUMED
            new = [self._sent(modelled, outcome, e, p) for outcome, (e, p) in zip(outcomes, messages, strict=True)]
            connection.session = modelled
            connection.expected += [(i, e, p, True) for i, (e, p) in waiting]
            connection.expected += [(i, modelled.pending[i][0], modelled.pending[i][1], None) for i in new if i]

        def _sent(self, modelled: Modelled, outcome: int | None, event: str, payload: JSON) -> int | None:
            """The model's side of one send to ``modelled`` that returned ``outcome`` (None: MailboxFull)."""
            full = len(modelled.pending) >= MAIL.max_messages
            if outcome is None:
                assert full, "a mailbox with room refused a message"
                hypothesis.event("a full mailbox refuses a send")
                return None
            assert not full, "a full mailbox took a message"
            assert outcome == 1
            message_id = modelled.last_id + 1
            self._queued(modelled, message_id, event, json.loads(encode(payload)))
            return message_id

        @precondition(lambda self: self.router.connections)
        @rule(pick=st.integers(min_value=0), messages=messages)
        def send_to_connected(self, pick: int, messages: list[tuple[str, JSON]]) -> None:
            self.steps.n += 1
            connection = self._connection(pick)
            for event, payload in messages:
                self._send(connection.handle, connection.session, event, payload)

        @precondition(lambda self: self._live_sessions())
        @rule(pick=st.integers(min_value=0), messages=messages)
        def send_to_a_session(self, pick: int, messages: list[tuple[str, JSON]]) -> None:
            """The server sends to a live session, connected or not, through a handle of its own."""
            self.steps.n += 1
            live = self._live_sessions()
            modelled = live[pick % len(live)]
            handle = SessionHandle(self.sessions)
            assert self.run(handle.handshake(modelled.token)).status is Status.RESUMED
            for event, payload in messages:
                self._send(handle, modelled, event, payload)

        def _send(self, handle: SessionHandle, modelled: Modelled | None, event: str, payload: JSON) -> None:
            assert modelled is not None
            assert modelled.alive
            try:
                outcome: int | None = self.run(self.mail.send(handle, event, payload))
            except MailboxFull:
                outcome = None
            self._sent(modelled, outcome, event, payload)

        @precondition(lambda self: self.router.connections)
        @rule(pick=st.integers(min_value=0), messages=st.lists(st.tuples(events, payloads), min_size=2, max_size=6))
        def racing_sends(self, pick: int, messages: list[tuple[str, JSON]]) -> None:
            """Several sends to one connected session at once: as many as there is room for are queued,
            and every connection on it gets them once each, in id order, whatever order they commit in."""
            self.steps.n += 1
            connection = self._connection(pick)
            modelled = connection.session
            assert modelled is not None

            async def send(event: str, payload: JSON) -> int:
                try:
                    return await self.mail.send(connection.handle, event, payload)
                except MailboxFull:
                    return 0

            async def race() -> list[int]:
                return list(await asyncio.gather(*(send(e, p) for e, p in messages)))

            outcomes = self.run(race())
            room = MAIL.max_messages - len(modelled.pending)
            assert sum(outcomes) == min(room, len(messages))
            first = modelled.last_id + 1
            # Which message got which id is the store's to say: read it back, then check it is what was sent.
            stored = self.run(self.store.pending(modelled.digest, now=self.clock.now(), after=first - 1, limit=100))
            got = [(m.event, json.loads(m.payload)) for m in stored]
            assert [m.id for m in stored] == list(range(first, first + sum(outcomes)))
            accepted = [(e, json.loads(encode(p))) for (e, p), sent in zip(messages, outcomes, strict=True) if sent]
            assert sorted(map(repr, got)) == sorted(map(repr, accepted))
            for message_id, (event, payload) in enumerate(got, start=first):
                self._queued(modelled, message_id, event, payload)

        @rule(user=st.sampled_from(USERS), event=events, payload=payloads)
        def send_to_user(self, user: str, event: str, payload: JSON) -> None:
            self.steps.n += 1
            targets = [m for m in self._live_sessions() if m.owner == user]
            full = any(len(m.pending) >= MAIL.max_messages for m in targets)
            try:
                sent = self.run(self.mail.send_to_user(user, event, payload))
            except MailboxFull:
                assert full, "a user's mailboxes with room refused a message"
                return
            assert not full, "a full mailbox took a message"
            assert sent == len(targets)
            for modelled in targets:
                self._queued(modelled, modelled.last_id + 1, event, json.loads(encode(payload)))

        @precondition(lambda self: any(c.received for c in self.router.connections))
        @rule(pick=st.integers(min_value=0), which=st.lists(st.integers(min_value=0), min_size=1, max_size=4))
        def client_acks(self, pick: int, which: list[int]) -> None:
            """A client acknowledges some of what it was delivered (again, maybe), and the acks are stored."""
            self.steps.n += 1
            receiving = [c for c in self.router.connections if c.received]
            connection = receiving[pick % len(receiving)]
            chosen = [connection.received[index % len(connection.received)] for index in which]
            for delivery, digest, _ in chosen:
                modelled = self.by_digest[digest]
                if connection.session is modelled and delivery.id in modelled.pending:
                    del modelled.pending[delivery.id]
                    hypothesis.event("an acknowledgement deletes a message")
                    self.acked_at[(modelled.serial, delivery.id)] = self.steps.n
            self.run(self._ack(connection, [delivery for delivery, _, _ in chosen]))

        async def _ack(self, connection: Connection, deliveries: list[Delivery]) -> None:
            for delivery in deliveries:
                delivery.ack()  # the Socket.IO ack callback, on the event loop
            await connection.inbox.drain()

        @precondition(lambda self: self.router.connections)
        @rule(pick=st.integers(min_value=0))
        def disconnect(self, pick: int) -> None:
            self.steps.n += 1
            connection = self._connection(pick)
            self.router.connections.remove(connection)
            self.run(connection.inbox.drain())  # acknowledgements that arrived are still stored

        @precondition(lambda self: self.router.connections)
        @rule(pick=st.integers(min_value=0), user=st.sampled_from(USERS), values=st.booleans())
        def login(self, pick: int, user: str, values: bool) -> None:
            """The application logs the socket in: same session, new token, the owner recorded."""
            self.steps.n += 1
            connection = self._connection(pick)
            modelled = connection.session
            assert modelled is not None
            self.run(connection.handle.login(user, {"user": user} if values else None))
            if modelled.owner not in (None, user):
                if modelled.pending:
                    hypothesis.event("a login as another user drops messages")
                modelled.pending.clear()  # the previous owner's messages
            modelled.owner = user
            modelled.token, modelled.digest = connection.handle.token.value, connection.handle.token.digest
            self.by_digest[modelled.digest] = modelled
            self.issued.append(connection.handle.token.value)
            self._sync()  # other connections on the old token were handed fresh sessions

        @precondition(lambda self: self.router.connections)
        @rule(pick=st.integers(min_value=0))
        def regenerate(self, pick: int) -> None:
            """The application regenerates the socket's token: same session, same owner, its messages kept."""
            self.steps.n += 1
            connection = self._connection(pick)
            modelled = connection.session
            assert modelled is not None
            token = self.run(connection.handle.regenerate())
            modelled.token, modelled.digest = token.value, token.digest
            self.by_digest[token.digest] = modelled
            self.issued.append(token.value)
            self._sync()

        @precondition(lambda self: self.router.connections)
        @rule(pick=st.integers(min_value=0))
        def logout(self, pick: int) -> None:
            self.steps.n += 1
            connection = self._connection(pick)
            assert connection.session is not None
            ended = connection.session
            self.run(connection.handle.destroy())
            self._end(ended)
            self._sync()

        @rule(seconds=st.sampled_from([0.0, 1.0, 7.0, IDLE_OUT]), purge=st.booleans())
        def time_passes(self, seconds: float, purge: bool) -> None:
            """Time passes (at IDLE_OUT, every session idles out); then maybe the periodic purge runs."""
            self.steps.n += 1
            self.clock.advance(seconds)
            if seconds == IDLE_OUT:
                for modelled in self._live_sessions():
                    self._end(modelled)
                # The transport's expiry watch: each socket whose session ended gets a fresh one.
                for connection in list(self.router.connections):
                    assert self.run(connection.handle.expire_if_due())
                self._sync()
            if purge:
                assert self.run(self.store.purge(now=self.clock.now(), batch=2)) is not None

        @precondition(lambda self: self.router.connections)
        @rule()
        def server_restarts(self) -> None:
            """Every socket drops; new use-case objects over the same store (reopened, for the SQL stores).

            Then the clients reconnect, each presenting the token it holds.
            """
            self.steps.n += 1
            tokens = [connection.handle.token.value for connection in self.router.connections]
            self.run(self._drain_all())
            self.store = self.run(reopen(self.store))
            self._start()
            for token in tokens:
                self._connect(token)

        # -- invariants ------------------------------------------------------------------------

        @invariant()
        def each_connection_got_exactly_what_waits_for_its_session(self) -> None:
            for connection in self.router.connections:
                expected = connection.expected
                # Where the model says "either way", the replayed flag is not compared.
                either = {i for i, e in enumerate(expected) if e[3] is None}
                got = [
                    (d.id, d.event, d.payload, None if i in either else d.replayed)
                    for i, (d, _, _) in enumerate(connection.received)
                ]
                assert got == expected
                seen = [(self.by_digest[digest].serial, d.id) for d, digest, _ in connection.received]
                assert len(seen) == len(set(seen)), "a message came twice on one connection"
                for (delivery, _, step), key in zip(connection.received, seen, strict=True):
                    acked = self.acked_at.get(key)
                    assert acked is None or step < acked, f"message {delivery.id} came back after its ack"

        @invariant()
        def the_store_holds_what_the_model_holds(self) -> None:
            now = self.clock.now()
            for digest, modelled in self.by_digest.items():
                found = self.run(self.store.fetch(digest))
                held = self.run(self.store.pending(digest, now=now, limit=1000))
                if modelled.alive and modelled.digest == digest:
                    assert found is not None
                    assert found.live_at(now)
                    assert found.last_message == modelled.last_id
                    assert found.waiting == len(modelled.pending)
                    assert [(m.id, m.event, json.loads(m.payload)) for m in held] == [
                        (i, e, p) for i, (e, p) in sorted(modelled.pending.items())
                    ]
                else:
                    assert found is None or not found.live_at(now), "an ended session is live"
                    if found is None:
                        assert held == [], "messages outlived their session"

    return DeliveryMachine


@pytest.mark.parametrize("kind", ["memory", "sqlite", "mysql"])
def test_delivery_behaves_like_the_model(kind: str, tmp_path: Path) -> None:
    # At most about 15 s per store here; HYPOTHESIS_PROFILE=full (tests/conftest.py) runs ten times as many.
    examples = {"memory": 150, "sqlite": 40, "mysql": 35}[kind] * (10 if settings().max_examples >= 1000 else 1)
    run_state_machine_as_test(
        machine_for(kind, tmp_path), settings=settings(max_examples=examples, stateful_step_count=40, deadline=None)
    )
