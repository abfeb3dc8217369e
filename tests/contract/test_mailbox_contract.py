"""The contract every MailboxStore keeps: memory, SQLite and MariaDB alike.

Each test runs once per store adapter (the ``store`` fixture is parametrized).
What they pin, in words:

- a send numbers its message per session, 1, 2, 3, … (one more than the
  session's ``last_message``), for live sessions only, all or nothing;
- ``waiting`` (read with the session) is always the number of messages the
  mailbox holds, and no message is held without its session ("the books",
  :func:`check_books`, read from the raw state after every step: the dicts of
  the memory store, the SQLite file through a connection of its own, and on
  MySQL ``COUNT(*)`` of ``<table>_mailbox`` against ``mail_waiting``);
- messages end with their session and move with it on rotation, unless the
  rotation records another owner: then they are dropped, and their ids are
  never given again;
- payloads come back byte for byte.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
from collections.abc import Awaitable, Collection

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.stores.memory import MemoryStore
from adapters.stores.mysql import MySQLStore
from adapters.stores.sqlite import SQLiteStore
from application.handle import SessionHandle
from application.mailbox import PAGE, Delivery, Inbox, Mailboxes
from application.ports import Store
from application.sessions import Sessions, Status
from domain.errors import SessionTooLarge
from domain.expiry import ExpiryPolicy
from domain.mailbox import MAX_EVENT_CHARS, MailboxFull, MailboxPolicy, Message
from domain.session import Change, Session
from domain.token import Token
from domain.values import JSON, encode
from tests.support.fakes import FakeClock
from tests.support.strategies import json_values

NOW = 1_700_000_000.0
POLICY = ExpiryPolicy(idle_ttl=100, absolute_ttl=1000)
MAX = 65536
TTL = 500.0  # a message's time to live, unless a test says otherwise


def digest() -> bytes:
    return secrets.token_bytes(32)


def new_session(now: float = NOW, user_id: str | None = None) -> Session:
    return Session(data={}, created=now, deadlines=POLICY.open(now), last_seen=now, user_id=user_id)


async def live(store: Store, user_id: str | None = None, *, now: float = NOW) -> bytes:
    d = digest()
    await store.insert(d, new_session(now, user_id))
    return d


async def expired(store: Store) -> bytes:
    """A session whose idle deadline is exactly NOW: over, though its row is still there."""
    d = digest()
    await store.insert(d, new_session(NOW - POLICY.idle_ttl))
    return d


async def send(
    store: Store,
    digests: Collection[bytes],
    payload: str = '"hi"',
    *,
    event: str = "notice",
    now: float = NOW,
    ttl: float = TTL,
    max_messages: int = 100,
) -> dict[bytes, int]:
    return await store.send(digests, event, payload, now=now, expires=now + ttl, max_messages=max_messages)


async def pending(store: Store, d: bytes, *, now: float = NOW, after: int = 0, limit: int = 10_000) -> list[Message]:
    return await store.pending(d, now=now, after=after, limit=limit)


async def ids(store: Store, d: bytes, *, now: float = NOW) -> list[int]:
    return [m.id for m in await pending(store, d, now=now)]


async def mailbox_of(store: Store, d: bytes) -> tuple[int, int]:
    """The session's ``(last_message, waiting)`` as a handshake reads them."""
    found = await store.fetch(d)
    assert found is not None
    return found.last_message, found.waiting


async def raw_books(store: Store) -> tuple[dict[bytes, tuple[int, int]], int]:
    """Straight from the tables: per session ``(waiting, messages held)``, and messages held with no session."""
    if isinstance(store, MemoryStore):
        books = {d: (s.waiting, len(store.mailboxes.get(d, {}))) for d, s in store.sessions.items()}
        return books, sum(len(m) for d, m in store.mailboxes.items() if d not in store.sessions)
    if isinstance(store, SQLiteStore):
        return await asyncio.to_thread(_sqlite_books, store)
    assert isinstance(store, MySQLStore)
    run = store.connection.run
    rows = (
        await run(
            f"SELECT t.id, t.mail_waiting, (SELECT COUNT(*) FROM {store.mailbox_name} m WHERE m.session = t.id)"
            f" FROM {store.sql_name} t",
            (),
            idempotent=True,
        )
    ).rows
    orphans = (
        await run(
            f"SELECT COUNT(*) FROM {store.mailbox_name} m WHERE NOT EXISTS"
            f" (SELECT 1 FROM {store.sql_name} t WHERE t.id = m.session)",
            (),
            idempotent=True,
        )
    ).rows
    return {bytes(r[0]): (int(r[1]), int(r[2])) for r in rows}, int(orphans[0][0])


def _sqlite_books(store: SQLiteStore) -> tuple[dict[bytes, tuple[int, int]], int]:
    # A connection of our own: in WAL mode it reads what the store committed.
    db = sqlite3.connect(store.path)
    try:
        rows = db.execute(
            f"SELECT t.id, t.mail_waiting, (SELECT COUNT(*) FROM {store.mailbox_name} m WHERE m.session = t.id)"
            f" FROM {store.sql_name} t"
        ).fetchall()
        orphans = db.execute(
            f"SELECT COUNT(*) FROM {store.mailbox_name} m WHERE NOT EXISTS"
            f" (SELECT 1 FROM {store.sql_name} t WHERE t.id = m.session)"
        ).fetchone()
    finally:
        db.close()
    return {bytes(r[0]): (int(r[1]), int(r[2])) for r in rows}, int(orphans[0])


async def check_books(store: Store) -> None:
    """Every session's ``waiting`` is the number of messages its mailbox holds; no message outlives its session."""
    books, orphans = await raw_books(store)
    assert orphans == 0, "messages are held for a session that is gone"
    wrong = {d.hex()[:8]: counts for d, counts in books.items() if counts[0] != counts[1]}
    assert not wrong, f"waiting != messages held, (waiting, held) per session: {wrong}"


async def test_a_send_numbers_the_message_per_session_from_one(store: Store) -> None:
    a, b = await live(store), await live(store)
    assert await send(store, [a], '"first"') == {a: 1}
    assert await send(store, [a, b], '"second"', event="other", now=NOW + 1, ttl=50) == {a: 2, b: 1}
    assert await send(store, [b, b], '"third"') == {b: 2}  # a digest named twice is one target
    await check_books(store)
    assert await mailbox_of(store, a) == (2, 2)
    assert await mailbox_of(store, b) == (2, 2)
    assert await pending(store, a) == [
        Message(1, "notice", '"first"', NOW, NOW + TTL),
        Message(2, "other", '"second"', NOW + 1, NOW + 51),
    ]
    assert await pending(store, b) == [
        Message(1, "other", '"second"', NOW + 1, NOW + 51),
        Message(2, "notice", '"third"', NOW, NOW + TTL),
    ]


async def test_a_send_queues_only_for_live_sessions(store: Store) -> None:
    a, gone, missing = await live(store), await expired(store), digest()
    assert await send(store, [a, gone, missing]) == {a: 1}
    assert await send(store, [gone, missing]) == {}
    assert await send(store, []) == {}
    assert await mailbox_of(store, gone) == (0, 0)
    assert await store.fetch(missing) is None
    assert await pending(store, gone) == []
    assert await pending(store, missing) == []
    assert await mailbox_of(store, a) == (1, 1)
    await check_books(store)


async def test_a_full_mailbox_refuses_the_whole_send_and_queues_nothing_anywhere(store: Store) -> None:
    a, b, c = await live(store), await live(store), await live(store)
    await send(store, [a, b])
    await send(store, [b])
    await send(store, [b])  # b holds 3
    before = {d: (await mailbox_of(store, d), await pending(store, d)) for d in (a, b, c)}
    with pytest.raises(MailboxFull):
        await send(store, [a, b, c], '"refused"', max_messages=3)
    with pytest.raises(MailboxFull):
        await send(store, [b], '"refused"', max_messages=3)
    after = {d: (await mailbox_of(store, d), await pending(store, d)) for d in (a, b, c)}
    assert after == before
    await check_books(store)
    # The refused sends used up no id, and a mailbox with room again takes messages.
    assert await send(store, [a, c], max_messages=3) == {a: 2, c: 1}
    assert await store.ack(b, [2]) == 1
    assert await send(store, [a, b, c], max_messages=3) == {a: 3, b: 4, c: 2}
    await check_books(store)


async def test_pending_reads_unexpired_messages_after_a_cursor_in_id_order_a_page_at_a_time(store: Store) -> None:
    a = await live(store)
    for i in range(1, 11):
        await send(store, [a], encode(i), ttl=10 if i in (3, 7) else TTL)
    assert await ids(store, a) == list(range(1, 11))
    later = NOW + 20  # messages 3 and 7 are over
    assert [m.id for m in await pending(store, a, now=later, limit=4)] == [1, 2, 4, 5]
    assert [m.id for m in await pending(store, a, now=later, after=5, limit=4)] == [6, 8, 9, 10]
    assert [m.id for m in await pending(store, a, now=later, after=2, limit=1)] == [4]
    assert await pending(store, a, now=later, after=10) == []
    assert [m.payload for m in await pending(store, a, now=later, after=8)] == ["9", "10"]
    assert await pending(store, a, now=NOW + 10) == await pending(store, a, now=later)  # its deadline is over


async def test_ack_deletes_and_counts_and_a_repeat_is_harmless(store: Store) -> None:
    a, b = await live(store), await live(store)
    for _ in range(5):
        await send(store, [a, b])
    steps: list[tuple[bytes, list[int], int]] = [
        (a, [1, 3], 2),
        (a, [1, 3], 0),  # again: nothing left to delete
        (a, [3, 4, 99], 1),
        (a, [], 0),
        (a, [2, 2], 1),
        (digest(), [1], 0),  # no such session
        (b, [5], 1),
    ]
    for target, acked, removed in steps:
        assert await store.ack(target, acked) == removed
        await check_books(store)
        for d in (a, b):
            _, waiting = await mailbox_of(store, d)
            assert waiting == len(await pending(store, d))
    assert await ids(store, a) == [5]
    assert await ids(store, b) == [1, 2, 3, 4]
    assert await mailbox_of(store, a) == (5, 1)


async def test_messages_end_with_their_session(store: Store) -> None:
    then = NOW - 50
    kept, deleted, many_1, many_2 = [await live(store, now=then) for _ in range(4)]
    purged = await live(store, now=NOW - 80)  # idles out at NOW + 20
    token = Token.generate()  # idles out at NOW + 10; a handshake then finds it over and deletes it
    await store.insert(token.digest, new_session(NOW - 90))
    everyone = [kept, deleted, many_1, many_2, purged, token.digest]
    assert len(await send(store, everyone, now=then)) == 6
    await check_books(store)

    assert await store.delete(deleted)
    assert await store.delete_many([many_1, many_2]) == 2
    await check_books(store)
    sessions = Sessions(store, FakeClock(NOW + 10), policy=POLICY)
    assert await sessions.live(token) is Status.EXPIRED
    await check_books(store)
    assert await store.purge(now=NOW + 20, batch=10) == 1
    await check_books(store)

    for gone in (deleted, many_1, many_2, purged, token.digest):
        assert await store.fetch(gone) is None
        assert await pending(store, gone, now=then) == []
    assert await ids(store, kept, now=then) == [1]


@pytest.mark.parametrize(
    ("owner", "login"),
    [(None, None), ("alice", None), (None, "alice"), ("alice", "alice")],
    ids=["no-owner", "owner-kept", "first-owner", "same-owner"],
)
async def test_a_rotation_of_the_same_session_moves_its_messages_with_their_ids(
    store: Store, owner: str | None, login: str | None
) -> None:
    old, new, other = await live(store, owner), digest(), await live(store)
    for i in range(3):
        await send(store, [old, other], encode(f"m{i}"))
    assert await store.ack(old, [1]) == 1
    held = await pending(store, old)
    moved = await store.rotate(
        old, new, now=NOW + 1, idle_deadline=POLICY.idle_deadline(NOW + 1), max_bytes=MAX, user_id=login
    )
    assert moved is not None
    assert (moved.last_message, moved.waiting) == (3, 2)
    assert await mailbox_of(store, new) == (3, 2)
    assert await pending(store, new) == held
    assert await store.fetch(old) is None
    assert await pending(store, old) == []
    assert await ids(store, other) == [1, 2, 3]
    await check_books(store)
    assert await send(store, [new]) == {new: 4}
    assert await store.ack(new, [2, 4]) == 2
    assert await ids(store, new) == [3]
    await check_books(store)


async def test_a_rotation_recording_another_owner_drops_the_messages_and_never_reuses_their_ids(
    store: Store,
) -> None:
    old, new = await live(store, "alice"), digest()
    for _ in range(3):
        await send(store, [old])
    moved = await store.rotate(
        old, new, now=NOW + 1, idle_deadline=POLICY.idle_deadline(NOW + 1), max_bytes=MAX, user_id="bob"
    )
    assert moved is not None
    assert (moved.user_id, moved.last_message, moved.waiting) == ("bob", 3, 0)
    assert await mailbox_of(store, new) == (3, 0)
    assert await pending(store, new) == []
    assert await pending(store, old) == []
    await check_books(store)
    assert await send(store, [new], '"for bob"') == {new: 4}
    assert await pending(store, new) == [Message(4, "notice", '"for bob"', NOW, NOW + TTL)]
    assert await store.ack(new, [1, 2, 3]) == 0  # alice's ids are gone for good
    await check_books(store)


async def test_a_rotation_that_does_not_fit_changes_nothing_in_the_mailbox(store: Store) -> None:
    old, new = await live(store, "alice"), digest()
    await send(store, [old])
    await send(store, [old])
    big = Change(sets={"k": encode("x" * 200)})
    with pytest.raises(SessionTooLarge):
        await store.rotate(old, new, now=NOW, idle_deadline=NOW + 100, max_bytes=100, change=big, user_id="bob")
    assert await store.fetch(new) is None
    assert await mailbox_of(store, old) == (2, 2)
    assert await ids(store, old) == [1, 2]
    await check_books(store)


async def test_an_ended_session_neither_rotates_nor_loses_its_messages_to_a_rotation(store: Store) -> None:
    d = digest()
    await store.insert(d, new_session(NOW - 50, "alice"))
    await send(store, [d], now=NOW - 50)
    late = NOW + 50  # its idle deadline
    assert await store.rotate(d, digest(), now=late, idle_deadline=late + 100, max_bytes=MAX, user_id="bob") is None
    assert await mailbox_of(store, d) == (1, 1)
    assert await ids(store, d, now=NOW - 50) == [1]
    await check_books(store)


async def test_purge_drops_messages_past_their_own_deadline_and_fixes_waiting(store: Store) -> None:
    a, b, c = await live(store), await live(store), await live(store)
    for i in range(6):
        await send(store, [a, b] if i % 2 else [a, b, c], ttl=10 if i < 4 else TTL)
    # a and b: 1-4 short-lived, 5-6 not; c: 1-2 short-lived, 3 not.
    assert await store.purge(now=NOW + 5, batch=1) == 0
    assert [await mailbox_of(store, d) for d in (a, b, c)] == [(6, 6), (6, 6), (3, 3)]
    assert await store.purge(now=NOW + 10, batch=1) == 0  # no session is over: every row stays
    await check_books(store)
    assert [await mailbox_of(store, d) for d in (a, b, c)] == [(6, 2), (6, 2), (3, 1)]
    assert await ids(store, a, now=NOW + 10) == [5, 6]
    assert await ids(store, b, now=NOW) == [5, 6]  # gone, not just hidden
    assert await ids(store, c, now=NOW) == [3]
    assert await send(store, [c], max_messages=2) == {c: 4}  # the room is back


PAYLOADS = {
    "unicode": encode({"text": "héllo wörld ✓ 日本語 😀👩‍👩‍👧 \u2028\u2029 e\u0301", "q": "\"'\\/%_$.[]*"}),
    "controls": encode("tab\tnewline\nreturn\rbell\x07 escape\x1b"),
    "emoji-64k": encode("😀" * 16_383),  # 65,534 bytes of UTF-8
    "two-byte-64k": encode("é" * 32_766),
    "ascii-64k": encode("x" * 65_534),  # 65,536 bytes with its quotes
    "number-text": "1.0e+10",  # the stored text, not a re-encoding of the number
    "spaced": '{ "a" : [ 1 , 2 ] }',
}


@pytest.mark.parametrize("name", sorted(PAYLOADS))
async def test_payload_text_and_event_names_round_trip_exactly(store: Store, name: str) -> None:
    a = await live(store)
    text = PAYLOADS[name]
    event = "événement 😀 " + name
    await send(store, [a], text, event=event)
    [message] = await pending(store, a)
    assert (message.event, message.payload) == (event, text)


async def test_the_longest_event_name_and_fractional_times_round_trip(store: Store) -> None:
    a = await live(store)
    event = "😀" * (MAX_EVENT_CHARS - 1) + "e"  # 191 characters, 761 bytes of UTF-8
    sent_at = NOW + 0.123456789
    await store.send([a], event, "{}", now=sent_at, expires=sent_at + 1 / 3, max_messages=1)
    assert await pending(store, a) == [Message(1, event, "{}", sent_at, sent_at + 1 / 3)]


@settings(max_examples=25)
@given(
    value=json_values,
    event=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=40),
)
async def test_any_json_payload_round_trips_exactly(store: Store, value: JSON, event: str) -> None:
    a = await live(store)
    text = encode(value)
    await send(store, [a], text, event=event)
    assert [(m.event, m.payload) for m in await pending(store, a)] == [(event, text)]


async def test_racing_sends_and_acks_on_one_session_keep_the_books_exact(store: Store) -> None:
    a = await live(store)
    calls: list[Awaitable[dict[bytes, int] | int]] = []
    for i in range(50):
        calls.append(send(store, [a], encode(i)))
        if i % 2:
            calls.append(store.ack(a, [i]))  # ids 1, 3, …, 49: some are not given yet when their ack runs
    results = await asyncio.gather(*calls)
    given = [r[a] for r in results if isinstance(r, dict)]
    removed = sum(r for r in results if isinstance(r, int))
    assert sorted(given) == list(range(1, 51)), "ids are unique and gapless"
    held = await pending(store, a)
    assert len(held) + removed == 50
    assert await mailbox_of(store, a) == (50, len(held))
    # The message under each id is the one whose send was given that id.
    sent_as = {message_id: encode(i) for i, message_id in enumerate(given)}
    assert all(m.payload == sent_as[m.id] for m in held)
    await check_books(store)
    # And acks racing each other: everything goes, exactly once.
    counts = await asyncio.gather(*(store.ack(a, [m.id, m.id % 50 + 1]) for m in held))
    assert sum(counts) == len(held)
    assert await mailbox_of(store, a) == (50, 0)
    await check_books(store)


async def test_racing_sends_to_overlapping_sessions_number_each_one_gaplessly(store: Store) -> None:
    targets = [await live(store) for _ in range(4)]
    rng = random.Random(7)
    picks = [rng.sample(targets, rng.randint(1, 4)) for _ in range(40)]
    results = await asyncio.gather(*(send(store, pick, encode(i)) for i, pick in enumerate(picks)))
    for d in targets:
        got = sorted(r[d] for r in results if d in r)
        assert got == list(range(1, sum(d in pick for pick in picks) + 1))
        by_id = {r[d]: encode(i) for i, r in enumerate(results) if d in r}
        assert [(m.id, m.payload) for m in await pending(store, d)] == sorted(by_id.items())
    await check_books(store)


async def test_a_connection_replays_a_mailbox_longer_than_a_page_in_id_order_and_its_acks_empty_it(
    store: Store,
) -> None:
    sessions = Sessions(store, FakeClock(NOW), policy=POLICY)
    sender = SessionHandle(sessions)
    token = (await sender.handshake("")).token
    mail = Mailboxes(sessions, store, policy=MailboxPolicy(max_messages=1000))
    count = 2 * PAGE + 30
    for i in range(1, count + 1):
        assert await mail.send(sender, "n", i) == 1
    acked_before = {5, PAGE, PAGE + 1}
    assert await store.ack(token.digest, acked_before) == 3

    # A restarted server (a Mailboxes that announced nothing) and a client that comes back.
    delivered: list[Delivery] = []

    async def deliver(delivery: Delivery) -> None:
        delivered.append(delivery)

    inbox = Inbox(Mailboxes(sessions, store), deliver)
    resumed = await SessionHandle(sessions).handshake(token.value)
    assert resumed.status is Status.RESUMED
    await inbox.open(resumed.token, resumed.session)
    expected = [i for i in range(1, count + 1) if i not in acked_before]
    assert [(d.id, d.payload, d.replayed) for d in delivered] == [(i, i, True) for i in expected]

    for delivery in delivered:
        delivery.ack()
    await inbox.drain()
    assert await mailbox_of(store, token.digest) == (count, 0)
    assert await pending(store, token.digest) == []
    await check_books(store)


async def test_a_purge_racing_sends_and_acks_keeps_the_books_exact(store: Store) -> None:
    targets = [await live(store) for _ in range(6)]
    for i in range(5):
        await send(store, targets, ttl=10 if i % 2 else TTL)  # 2 and 4 are over at NOW + 10
    later = NOW + 10
    calls: list[Awaitable[object]] = [store.purge(now=later, batch=2)]
    for i, d in enumerate(targets):
        calls += [send(store, [d, targets[i - 1]], now=later), store.ack(d, [1, 5 + i % 3])]
    calls.append(store.purge(now=later, batch=1))
    await asyncio.gather(*calls)
    await check_books(store)
    for d in targets:
        held = await ids(store, d, now=later)
        assert 2 not in held
        assert 4 not in held
        assert 1 not in held
        assert held[0] == 3
        assert await mailbox_of(store, d) == (7, len(held))
