"""The contract every SessionStore keeps: memory, SQLite and MariaDB alike.

Each test runs once per store adapter (the ``store`` fixture is parametrized).
"""

from __future__ import annotations

import asyncio
import json
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.stores.mysql import MySQLStore
from application.ports import SessionStore
from domain.errors import SessionTooLarge
from domain.expiry import ExpiryPolicy
from domain.session import Change, Session
from domain.values import encode
from tests.support.strategies import json_values, keys

NOW = 1_700_000_000.0
POLICY = ExpiryPolicy(idle_ttl=100, absolute_ttl=1000)
MAX = 65536


def digest() -> bytes:
    return secrets.token_bytes(32)


def new_session(now: float = NOW) -> Session:
    return Session(data={}, created=now, deadlines=POLICY.open(now), last_seen=now)


async def write(store: SessionStore, d: bytes, change: Change, now: float = NOW, max_bytes: int = MAX) -> int | None:
    return await store.write(d, change, now=now, idle_deadline=POLICY.idle_deadline(now), max_bytes=max_bytes)


def sets(**values: object) -> Change:
    return Change(sets={k: encode(v) for k, v in values.items()})


async def test_a_stored_session_reads_back_as_stored(store: SessionStore) -> None:
    d, session = digest(), new_session()
    await store.insert(d, session)
    assert await store.fetch(d) == session


async def test_an_unknown_digest_has_no_session(store: SessionStore) -> None:
    assert await store.fetch(digest()) is None


async def test_concurrent_lookups_each_get_their_own_session(store: SessionStore) -> None:
    known = [digest() for _ in range(30)]
    for i, d in enumerate(known):
        await store.insert(d, new_session(NOW + i))
    unknown = [digest() for _ in range(5)]
    asked = known + unknown + known[:3]  # duplicates too
    found = await asyncio.gather(*(store.fetch(d) for d in asked))
    assert [s.created if s else None for s in found] == [NOW + i for i in range(30)] + [None] * 5 + [
        NOW,
        NOW + 1,
        NOW + 2,
    ]
    if isinstance(store, MySQLStore):
        assert store.reads.batches > 0  # they went out as one SELECT ... IN (...)


async def test_binary_digests_of_every_byte_value_are_distinct_keys(store: SessionStore) -> None:
    # Digests full of 0x00, 0x27 ('), 0x5c (\) and high bytes: what breaks naive byte binding.
    digests = [bytes([b]) * 32 for b in (0x00, 0x27, 0x5C, 0x22, 0xFF, 0x80)]
    for i, d in enumerate(digests):
        await store.insert(d, new_session())
        assert await write(store, d, sets(i=i)) == 1
    for i, d in enumerate(digests):
        found = await store.fetch(d)
        assert found is not None
        assert found.data == {"i": i}


async def test_a_write_sets_deletes_and_clears_and_counts_itself(store: SessionStore) -> None:
    d = digest()
    await store.insert(d, new_session())
    assert await write(store, d, sets(a=1, b=[1, 2], c={"x": None})) == 1
    assert await write(store, d, Change(deletes=("a", "missing"))) == 2
    found = await store.fetch(d)
    assert found is not None
    assert (dict(found.data), found.version) == ({"b": [1, 2], "c": {"x": None}}, 2)
    assert await write(store, d, Change(clear=True, sets={"z": "true"})) == 3
    found = await store.fetch(d)
    assert found is not None
    assert dict(found.data) == {"z": True}


async def test_a_write_slides_the_idle_deadline_but_never_past_the_absolute_one(store: SessionStore) -> None:
    d, session = digest(), new_session()
    await store.insert(d, session)
    await write(store, d, sets(a=1), now=NOW + 50)
    found = await store.fetch(d)
    assert found is not None
    assert found.deadlines.idle == NOW + 150
    assert found.last_seen == NOW + 50
    for step in range(1, 12):  # keep it alive past the absolute limit
        await write(store, d, sets(a=step), now=NOW + 90 * step)
    found = await store.fetch(d)
    assert found is not None
    assert found.deadlines.idle <= found.deadlines.absolute == NOW + 1000


async def test_an_expired_session_is_never_revived_by_a_write_a_touch_or_a_rotation(store: SessionStore) -> None:
    d = digest()
    await store.insert(d, new_session())
    late = NOW + 100  # exactly at the idle deadline: over
    assert await write(store, d, sets(a=1), now=late) is None
    assert not await store.touch(d, now=late, idle_deadline=POLICY.idle_deadline(late))
    assert not await store.rotate(d, digest(), now=late, idle_deadline=POLICY.idle_deadline(late), max_bytes=MAX)
    assert not await store.rotate(
        d, digest(), now=late, idle_deadline=late + 100, max_bytes=MAX, change=sets(a=1), user_id="u"
    )
    assert await store.fetch(d) == new_session()


async def test_a_write_past_the_size_limit_raises_and_writes_nothing(store: SessionStore) -> None:
    d = digest()
    await store.insert(d, new_session())
    await write(store, d, sets(small="x" * 100), max_bytes=1000)
    with pytest.raises(SessionTooLarge):
        await write(store, d, sets(big="y" * 1000), max_bytes=1000)
    found = await store.fetch(d)
    assert found is not None
    assert (dict(found.data), found.version) == ({"small": "x" * 100}, 1)


async def test_the_size_limit_is_measured_the_same_way_by_every_store(store: SessionStore) -> None:
    """Compact UTF-8 JSON: 400 one-character keys are 3,601 bytes, which fit in 4,096 everywhere."""
    d = digest()
    await store.insert(d, new_session())
    keys = [chr(0x4E00 + i) if i % 2 else f"{i:03}"[-1] + chr(0x41 + i % 26) for i in range(400)]
    for start in range(0, 400, 50):
        await write(store, d, Change(sets={k: "1" for k in keys[start : start + 50]}), max_bytes=8192)
    found = await store.fetch(d)
    assert found is not None
    size = len(json.dumps(dict(found.data), ensure_ascii=False, separators=(",", ":")).encode())
    await write(store, d, Change(sets={"x": "1"}), max_bytes=size + len(',"x":1'))  # exactly full: accepted
    with pytest.raises(SessionTooLarge):
        await write(store, d, Change(sets={"y": "1"}), max_bytes=size + len(',"x":1'))  # one more byte: refused


async def test_values_nested_30_levels_deep_round_trip(store: SessionStore) -> None:
    deep: object = {"leaf": [1, "two", None]}
    for level in range(28):
        deep = [deep] if level % 2 else {"k": deep}
    d = digest()
    await store.insert(d, new_session())
    await write(store, d, Change(sets={"deep": encode(deep)}))
    found = await store.fetch(d)
    assert found is not None
    assert found.data["deep"] == deep


async def test_touch_and_rotation_never_pass_the_absolute_deadline(store: SessionStore) -> None:
    d, moved = digest(), digest()
    await store.insert(d, new_session())
    late = NOW + 950  # keep it alive until close to the absolute deadline
    for now in range(int(NOW) + 90, int(late), 90):
        assert await store.touch(d, now=now, idle_deadline=now + 100)
    assert await store.touch(d, now=late, idle_deadline=late + 100)
    found = await store.fetch(d)
    assert found is not None
    assert found.deadlines.idle == found.deadlines.absolute == NOW + 1000
    assert await store.rotate(d, moved, now=late + 10, idle_deadline=late + 110, max_bytes=MAX)
    found = await store.fetch(moved)
    assert found is not None
    assert found.deadlines.idle == NOW + 1000


async def test_touch_extends_a_live_session_and_reports_it_even_when_nothing_changed(store: SessionStore) -> None:
    d = digest()
    await store.insert(d, new_session())
    assert await store.touch(d, now=NOW + 10, idle_deadline=NOW + 110)
    # Same instant again: MySQL reports 0 changed rows here unless FOUND_ROWS is set.
    assert await store.touch(d, now=NOW + 10, idle_deadline=NOW + 110)
    found = await store.fetch(d)
    assert found is not None
    assert (found.deadlines.idle, found.last_seen) == (NOW + 110, NOW + 10)


async def test_a_rotation_moves_the_session_and_kills_the_old_digest(store: SessionStore) -> None:
    old, new = digest(), digest()
    await store.insert(old, new_session())
    await write(store, old, sets(k="v"))
    moved = await store.rotate(old, new, now=NOW + 1, idle_deadline=POLICY.idle_deadline(NOW + 1), max_bytes=MAX)
    assert moved is not None
    assert await store.fetch(old) is None
    assert await write(store, old, sets(k="w")) is None
    assert await store.fetch(new) == moved
    assert (dict(moved.data), moved.version, moved.last_seen) == ({"k": "v"}, 1, NOW + 1)


async def test_a_login_rotation_writes_and_records_the_owner_in_the_same_step(store: SessionStore) -> None:
    old, new = digest(), digest()
    await store.insert(old, new_session())
    await write(store, old, sets(k="v"))
    moved = await store.rotate(
        old, new, now=NOW + 1, idle_deadline=NOW + 101, max_bytes=MAX, change=sets(userId="alice"), user_id="alice"
    )
    assert moved is not None
    assert (dict(moved.data), moved.version, moved.user_id) == ({"k": "v", "userId": "alice"}, 2, "alice")
    assert await store.fetch(new) == moved


async def test_a_login_as_another_owner_clears_the_data_and_the_same_owner_keeps_it(store: SessionStore) -> None:
    """The previous user's keys never reach the next one: a new owner starts from the login's values only."""
    first, second, third, fourth = digest(), digest(), digest(), digest()
    await store.insert(first, new_session())
    await write(store, first, sets(cart="tea"))

    async def login(old: bytes, new: bytes, user: str, **values: object) -> Session:
        moved = await store.rotate(
            old, new, now=NOW + 1, idle_deadline=NOW + 101, max_bytes=MAX, change=sets(**values), user_id=user
        )
        assert moved is not None
        return moved

    alice = await login(first, second, "alice", userId="alice")  # anonymous -> alice: the cart stays
    assert (dict(alice.data), alice.version) == ({"cart": "tea", "userId": "alice"}, 2)
    again = await login(second, third, "alice")  # the same owner, nothing to write: data and version stay
    assert (dict(again.data), again.version, again.user_id) == ({"cart": "tea", "userId": "alice"}, 2, "alice")
    bob = await login(third, fourth, "bob", userId="bob")
    assert (dict(bob.data), bob.version, bob.user_id) == ({"userId": "bob"}, 3, "bob")
    assert await store.fetch(fourth) == bob
    fifth = digest()
    carol = await login(fourth, fifth, "carol")  # a new owner and no values: empty, and that is a write
    assert (dict(carol.data), carol.version, carol.user_id) == ({}, 4, "carol")


async def test_a_rotation_whose_write_does_not_fit_changes_nothing(store: SessionStore) -> None:
    old, new = digest(), digest()
    await store.insert(old, new_session())
    await write(store, old, sets(fill="x" * 900), max_bytes=1000)
    before = await store.fetch(old)
    with pytest.raises(SessionTooLarge):
        await store.rotate(
            old, new, now=NOW + 1, idle_deadline=NOW + 101, max_bytes=1000, change=sets(userId="y" * 200), user_id="u"
        )
    assert await store.fetch(old) == before  # the old token still works, nothing moved
    assert await store.fetch(new) is None


async def test_remove_deletes_only_that_session(store: SessionStore) -> None:
    a, b = digest(), digest()
    await store.insert(a, new_session())
    await store.insert(b, new_session())
    assert await store.delete(a)
    assert not await store.delete(a)
    assert await store.fetch(a) is None
    assert await store.fetch(b) is not None


async def test_purge_deletes_expired_sessions_in_bounded_batches_and_nothing_live(store: SessionStore) -> None:
    expired = [digest() for _ in range(5)]
    live = digest()
    for d in expired:
        await store.insert(d, new_session(NOW - 500))
    await store.insert(live, new_session())
    assert await store.purge(now=NOW, batch=2) == 5
    assert await store.purge(now=NOW, batch=2) == 0
    assert await store.fetch(live) is not None


async def test_concurrent_writers_to_different_keys_never_lose_each_others_key(store: SessionStore) -> None:
    d = digest()
    await store.insert(d, new_session())
    writers = 40
    versions = await asyncio.gather(*(write(store, d, sets(**{f"k{i}": i})) for i in range(writers)))
    found = await store.fetch(d)
    assert found is not None
    assert dict(found.data) == {f"k{i}": i for i in range(writers)}
    assert sorted(v for v in versions if v is not None) == list(range(1, writers + 1))
    assert found.version == writers
    if isinstance(store, MySQLStore):
        assert store.group.batches > 0  # they went out as group commits


async def test_one_refused_write_among_concurrent_ones_fails_alone(store: SessionStore) -> None:
    """In a group commit, the too-large write gets its own error and the others are stored."""
    sessions = [digest() for _ in range(6)]
    for d in sessions:
        await store.insert(d, new_session())
    outcomes = await asyncio.gather(
        *(write(store, d, sets(big="x" * (2000 if i == 3 else 10)), max_bytes=1000) for i, d in enumerate(sessions)),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes] == ["int"] * 3 + ["SessionTooLarge"] + ["int"] * 2
    for i, d in enumerate(sessions):
        found = await store.fetch(d)
        assert found is not None
        assert dict(found.data) == ({} if i == 3 else {"big": "x" * 10})


@pytest.mark.parametrize("key", ["-", "-a", "--x", "-😀", "a-b"])
async def test_keys_with_a_leading_dash_round_trip(store: SessionStore, key: str) -> None:
    d = digest()
    await store.insert(d, new_session())
    assert await write(store, d, sets(**{key: 1})) == 1
    assert await write(store, d, sets(**{key: 2})) == 2
    found = await store.fetch(d)
    assert found is not None
    assert dict(found.data) == {key: 2}
    assert await write(store, d, Change(deletes=(key,))) == 3
    found = await store.fetch(d)
    assert found is not None
    assert dict(found.data) == {}


@given(key=keys, value=json_values)
async def test_any_key_and_json_value_round_trip_exactly(store: SessionStore, key: str, value: object) -> None:
    """Keys with JSON-path and SQL metacharacters and 4-byte emoji come back as written."""
    d = digest()
    await store.insert(d, new_session())
    await write(store, d, Change(sets={key: encode(value)}))
    found = await store.fetch(d)
    assert found is not None
    assert dict(found.data) == {key: json.loads(encode(value))}
    await write(store, d, Change(deletes=(key,)))
    found = await store.fetch(d)
    assert found is not None
    assert dict(found.data) == {}


@given(offset=st.floats(min_value=0, max_value=10_000, allow_nan=False))
async def test_no_operation_revives_a_session_after_its_deadline(store: SessionStore, offset: float) -> None:
    """An expired session is never revived: every mutating call at or after its deadline is refused."""
    d = digest()
    await store.insert(d, new_session())
    late = NOW + 100 + offset
    assert await write(store, d, sets(a=1), now=late) is None
    assert not await store.touch(d, now=late, idle_deadline=POLICY.idle_deadline(late))
    found = await store.fetch(d)
    assert found is not None
    assert POLICY.is_expired(found.deadlines, late)


async def test_a_batch_of_mixed_writes_gives_each_caller_its_own_outcome(store: SessionStore) -> None:
    """Inserts, writes (some rows twice, one row gone, one expired) and touches arriving together.

    On MySQL they are merged into a few statements (adapters/stores/mysql/statements.py); every caller
    must still see what it would have seen alone: its own version, False/None for a dead row.
    """
    live = [digest() for _ in range(8)]
    for d in live:
        await store.insert(d, new_session())
    expired = digest()
    await store.insert(expired, new_session(NOW - 500))
    fresh = [digest() for _ in range(3)]
    later = NOW + 10
    calls = [
        *(store.insert(d, new_session(later)) for d in fresh),
        *(write(store, d, sets(a=i), now=later) for i, d in enumerate(live)),
        *(write(store, d, Change(sets={"b": encode(i)}, deletes=("a",)), now=later) for i, d in enumerate(live[:3])),
        write(store, digest(), sets(a=1), now=later),  # no such row
        write(store, expired, sets(a=1), now=later),
        store.touch(live[5], now=later, idle_deadline=POLICY.idle_deadline(later + 5)),
        store.touch(expired, now=later, idle_deadline=POLICY.idle_deadline(later)),
    ]
    outcomes = await asyncio.gather(*calls)
    assert outcomes == [None] * 3 + [1] * 8 + [2] * 3 + [None, None, True, False]
    for i, d in enumerate(live):
        found = await store.fetch(d)
        assert found is not None
        assert dict(found.data) == ({"b": i} if i < 3 else {"a": i})
        assert found.version == (2 if i < 3 else 1)
        assert found.expires == POLICY.idle_deadline(later + (5 if i == 5 else 0))
    for d in fresh:
        assert await store.fetch(d) == new_session(later)
    if isinstance(store, MySQLStore):
        assert store.merged_batches > 0
