"""One connection's delivery (application.mailbox.Inbox): each message once, in id order, replay first.

The races the transport cannot order for it: a message announced while the
handshake ran, relays that reorder two messages, a connection that binds the
same session again, a rotation under it, and acknowledgements that arrive
while one is being stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pytest

from adapters.stores.memory import MemoryStore
from application.errors import StoreUnavailable
from application.handle import SessionHandle
from application.mailbox import Delivery, Inbox, Mailboxes, Sent
from application.sessions import Sessions
from tests.support.fakes import FakeClock


class Connection:
    """What a transport does for one socket: collects what its inbox delivers."""

    def __init__(self, mail: Mailboxes) -> None:
        self.delivered: list[Delivery] = []
        self.inbox = Inbox(mail, self._deliver)

    async def _deliver(self, delivery: Delivery) -> None:
        self.delivered.append(delivery)

    @property
    def ids(self) -> list[int]:
        return [d.id for d in self.delivered]


class Held:
    """A listener that keeps announcements back, to hand them over later and in any order."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    async def messages_sent(self, sent: Sent) -> None:
        self.sent.append(sent)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def mail(store: MemoryStore) -> Mailboxes:
    return Mailboxes(Sessions(store, FakeClock()), store)


async def bound(mail: Mailboxes, token: object = "") -> SessionHandle:
    handle = SessionHandle(mail.sessions)
    await handle.handshake(token)
    return handle


async def receive(connection: Connection, sent: Sent) -> None:
    for digest, message_id in sent.targets:
        await connection.inbox.receive(digest, message_id, sent.event, sent.payload, sent.sent_at)


async def test_waiting_messages_are_replayed_in_id_order_and_marked_replayed(mail: Mailboxes) -> None:
    handle = await bound(mail)
    for text in ("a", "b", "c"):
        await mail.send(handle, "notice", {"text": text})
    again = await bound(mail, handle.token.value)
    connection = Connection(mail)
    await connection.inbox.open(again.token, again.session)
    assert [(d.id, d.payload, d.replayed) for d in connection.delivered] == [
        (1, {"text": "a"}, True),
        (2, {"text": "b"}, True),
        (3, {"text": "c"}, True),
    ]


async def test_a_resume_with_an_empty_mailbox_reads_nothing(store: MemoryStore, mail: Mailboxes) -> None:
    handle = await bound(mail)
    await mail.send(handle, "notice", 1)
    await mail.ack(handle.token.digest, [1])
    reads: list[int] = []
    pending = store.pending

    async def counted(digest: bytes, *, now: float, after: int = 0, limit: int = 100) -> list[object]:
        reads.append(after)
        return list(await pending(digest, now=now, after=after, limit=limit))

    store.pending = counted  # type: ignore[method-assign,assignment]
    again = await bound(mail, handle.token.value)
    assert (again.session.last_message, again.session.waiting) == (1, 0)
    await Connection(mail).inbox.open(again.token, again.session)
    assert reads == []


async def test_a_message_announced_while_the_handshake_ran_is_delivered_by_open(mail: Mailboxes) -> None:
    handle = await bound(mail)
    again = await bound(mail, handle.token.value)  # the handshake read: nothing waits yet
    await mail.send(handle, "notice", "meanwhile")  # announced before this connection is listed
    assert again.session.waiting == 0
    connection = Connection(mail)
    await connection.inbox.open(again.token, again.session)
    assert connection.ids == [1]


async def test_messages_that_arrive_out_of_order_are_delivered_in_order_once(mail: Mailboxes) -> None:
    held = Held()
    mail.subscribe(held)
    handle = await bound(mail)
    connection = Connection(mail)
    await connection.inbox.open(handle.token, handle.session)
    for n in range(3):
        await mail.send(handle, "notice", n)
    first, second, third = held.sent
    await receive(connection, third)  # a relay overtook the other two: read them from the store first
    await receive(connection, first)
    await receive(connection, second)
    assert connection.ids == [1, 2, 3]
    assert [d.replayed for d in connection.delivered] == [False, False, False]


async def test_binding_the_same_session_again_on_one_connection_delivers_nothing_twice(mail: Mailboxes) -> None:
    handle = await bound(mail)
    await mail.send(handle, "notice", "once")
    connection = Connection(mail)
    await connection.inbox.open(handle.token, handle.session)
    again = await bound(mail, handle.token.value)  # not acknowledged: it still waits
    assert again.session.waiting == 1
    await connection.inbox.open(again.token, again.session)
    assert connection.ids == [1]
    await Connection(mail).inbox.open(again.token, again.session)  # another connection gets it again


async def test_a_rotation_keeps_what_the_connection_has_and_delivers_what_it_lacks(mail: Mailboxes) -> None:
    held = Held()
    mail.subscribe(held)
    handle = await bound(mail)
    connection = Connection(mail)
    await connection.inbox.open(handle.token, handle.session)
    await mail.send(handle, "notice", 1)
    await receive(connection, held.sent[0])
    await mail.send(handle, "notice", 2)  # its live copy is addressed to the old digest, and lost
    old = handle.token.digest
    await handle.login("alice")
    await connection.inbox.open(handle.token, handle.session, moved_from=old)
    assert connection.ids == [1, 2]
    await receive(connection, held.sent[1])  # late, under the old digest: ignored
    assert connection.ids == [1, 2]


async def test_acknowledgements_arriving_during_a_store_call_go_in_the_next_one(
    store: MemoryStore, mail: Mailboxes
) -> None:
    handle = await bound(mail)
    for n in range(5):
        await mail.send(handle, "notice", n)
    calls: list[list[int]] = []
    ack = store.ack
    gate = asyncio.Event()

    async def slow(digest: bytes, ids: Collection[int]) -> int:
        calls.append(sorted(ids))
        await gate.wait()
        return await ack(digest, ids)

    store.ack = slow  # type: ignore[method-assign]
    connection = Connection(mail)
    await connection.inbox.open(handle.token, handle.session)
    connection.delivered[0].ack()
    await asyncio.sleep(0)
    for delivery in connection.delivered[1:]:
        delivery.ack()
    connection.delivered[1].ack()  # twice: harmless
    gate.set()
    await connection.inbox.drain()
    assert calls == [[1], [2, 3, 4, 5]]
    assert await store.pending(handle.token.digest, now=mail.sessions.clock.now()) == []
    assert (await mail.sessions.live(handle.token)).waiting == 0  # type: ignore[union-attr]


async def test_an_acknowledgement_the_store_cannot_take_leaves_the_message_for_next_time(
    store: MemoryStore, mail: Mailboxes, caplog: pytest.LogCaptureFixture
) -> None:
    handle = await bound(mail)
    await mail.send(handle, "notice", "kept")

    async def down(digest: bytes, ids: Collection[int]) -> int:
        raise StoreUnavailable("database down")

    store.ack = down  # type: ignore[method-assign]
    connection = Connection(mail)
    await connection.inbox.open(handle.token, handle.session)
    connection.delivered[0].ack()
    await connection.inbox.drain()
    assert "could not store 1 acknowledgements" in caplog.text
    del store.ack
    later = Connection(mail)
    again = await bound(mail, handle.token.value)
    await later.inbox.open(again.token, again.session)
    assert later.ids == [1]


async def test_a_user_send_finds_a_session_that_moved_before_it_and_doubles_none_that_moved_after(
    store: MemoryStore, mail: Mailboxes
) -> None:
    clock = mail.sessions.clock
    assert isinstance(clock, FakeClock)
    handles = []
    for _ in range(3):
        handles.append(await bound(mail))
        await handles[-1].login("alice")
        clock.advance(0.001)  # sessions are told apart by their creation time
    moved_before, moved_after, ended = (h.token.digest for h in handles)
    send = store.send
    calls = 0

    async def racing(digests: Collection[bytes], *args: object, **kwargs: object) -> dict[bytes, int]:
        nonlocal calls
        calls += 1
        if calls == 1:  # between the listing and the send: one session rotates, one ends
            now = clock.now()
            await store.rotate(moved_before, b"B" * 32, now=now, idle_deadline=now + 60, max_bytes=65536)
            await store.delete(ended)
        given = await send(digests, *args, **kwargs)  # type: ignore[arg-type]
        if calls == 1:  # right after it: another rotates with the message
            now = clock.now()
            await store.rotate(moved_after, b"A" * 32, now=now, idle_deadline=now + 60, max_bytes=65536)
        return given

    store.send = racing  # type: ignore[method-assign]
    assert await mail.send_to_user("alice", "notice", "hi") == 2
    now = clock.now()
    assert [m.id for m in await store.pending(b"B" * 32, now=now)] == [1]
    assert [m.id for m in await store.pending(b"A" * 32, now=now)] == [1]  # once, not again under id 2
