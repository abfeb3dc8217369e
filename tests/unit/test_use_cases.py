"""The use cases over the in-memory store and a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.stores.memory import MemoryStore
from application.errors import SessionEnded, SessionKeyMissing, SessionNotReady, TooManyRequests
from application.handle import SessionHandle
from application.sessions import Handshake, Sessions, Status
from application.user_sessions import list_user_sessions
from domain.errors import InvalidKey, InvalidValue, SessionTooLarge
from domain.expiry import ExpiryPolicy
from domain.session import Change
from domain.token import Token
from tests.support.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def sessions(store: MemoryStore, clock: FakeClock) -> Sessions:
    return Sessions(store, clock, policy=ExpiryPolicy(idle_ttl=100, absolute_ttl=1000), max_bytes=1024)


async def opened(sessions: Sessions, presented: object = "") -> SessionHandle:
    handle = SessionHandle(sessions)
    await handle.handshake(presented)
    return handle


async def test_an_empty_token_opens_a_new_session(sessions: Sessions, store: MemoryStore) -> None:
    result = await sessions.handshake("")
    assert result.status is Status.CREATED
    assert list(store.sessions) == [result.token.digest]


async def test_a_live_token_resumes_its_session_with_its_data(sessions: Sessions) -> None:
    first = await opened(sessions)
    await first.set("userId", 7)
    second = await opened(sessions, first.token.value)
    assert second.token == first.token
    assert second.get("userId") == 7


async def test_an_expired_token_gets_a_new_session_without_the_old_data(
    sessions: Sessions, store: MemoryStore, clock: FakeClock
) -> None:
    first = await opened(sessions)
    await first.set("userId", 7)
    clock.advance(100)
    result = await sessions.handshake(first.token.value)
    assert result.status is Status.EXPIRED
    assert result.token != first.token
    assert dict(result.session.data) == {}
    assert first.token.digest not in store.sessions  # the expired row is gone, not revived


async def test_an_unknown_token_is_not_adopted(sessions: Sessions, store: MemoryStore) -> None:
    foreign = Token.generate()
    result = await sessions.handshake(foreign.value)
    assert result.status is Status.NOT_FOUND
    assert result.token != foreign
    assert foreign.digest not in store.sessions


async def test_a_malformed_token_never_reaches_the_store(sessions: Sessions, store: MemoryStore) -> None:
    for junk in ["' OR 1=1 --", "x" * 10_000, 42, ["a"], {"token": "x"}]:
        result = await sessions.handshake(junk)
        assert result.status is Status.INVALID
    assert len(store.sessions) == 5  # only the fresh sessions


async def test_resume_touches_only_after_a_meaningful_part_of_the_idle_window(
    sessions: Sessions, store: MemoryStore, clock: FakeClock
) -> None:
    handle = await opened(sessions)
    digest = handle.token.digest
    clock.advance(0.5)
    await sessions.handshake(handle.token.value)
    assert store.sessions[digest].expires == clock.now() - 0.5 + 100  # not touched
    clock.advance(10)
    result = await sessions.handshake(handle.token.value)
    assert store.sessions[digest].expires == clock.now() + 100 == result.session.expires


async def test_using_a_handle_before_its_handshake_is_a_named_error(sessions: Sessions) -> None:
    handle = SessionHandle(sessions)
    with pytest.raises(SessionNotReady):
        handle.get("a")
    with pytest.raises(SessionNotReady):
        await handle.set("a", 1)


async def test_get_returns_the_old_packages_empty_string_for_a_missing_key(sessions: Sessions) -> None:
    handle = await opened(sessions)
    assert handle.get("missing") == ""
    assert handle.get("missing", None) is None


async def test_writes_are_durable_when_they_return(sessions: Sessions, store: MemoryStore) -> None:
    handle = await opened(sessions)
    await handle.update({"a": 1, "b": 2})
    await handle.delete("a")
    assert dict(store.sessions[handle.token.digest].data) == {"b": 2}
    await handle.clear()
    assert dict(store.sessions[handle.token.digest].data) == {}
    assert store.sessions[handle.token.digest].version == 3


async def test_bad_writes_are_named_errors_and_write_nothing(sessions: Sessions, store: MemoryStore) -> None:
    handle = await opened(sessions)
    await handle.set("keep", "x" * 600)
    before = store.sessions[handle.token.digest]
    with pytest.raises(InvalidValue):
        await handle.set("k", float("nan"))
    with pytest.raises(InvalidKey):
        await handle.set("", 1)
    with pytest.raises(SessionTooLarge):
        await handle.set("k", "x" * 2000)  # refused before any I/O
    with pytest.raises(SessionTooLarge):
        await handle.update({f"k{i}": "x" * 100 for i in range(5)})  # refused by the store's exact check
    assert store.sessions[handle.token.digest] == before
    assert dict(handle.data) == {"keep": "x" * 600}


async def test_writes_through_one_handle_apply_in_call_order(sessions: Sessions, store: MemoryStore) -> None:
    handle = await opened(sessions)
    await asyncio.gather(*(handle.set("n", i) for i in range(50)))
    assert store.sessions[handle.token.digest].data["n"] == 49
    assert handle.get("n") == 49


async def test_a_write_to_an_expired_session_is_refused(sessions: Sessions, clock: FakeClock) -> None:
    handle = await opened(sessions)
    clock.advance(100)
    with pytest.raises(SessionEnded):
        await handle.set("a", 1)
    assert handle.ended


async def test_regenerate_moves_the_data_to_a_new_token_and_kills_the_old(
    sessions: Sessions, store: MemoryStore
) -> None:
    announced: list[Handshake] = []

    async def announce(result: Handshake | None) -> None:
        assert result is not None
        announced.append(result)

    handle = SessionHandle(sessions, on_rebound=announce)
    await handle.handshake("")
    other = await opened(sessions, handle.token.value)
    old = handle.token
    await handle.set("k", "v")
    new = await handle.regenerate()
    assert new != old
    assert [r.status for r in announced] == [Status.ROTATED]
    assert announced[0].token == new
    assert old.digest not in store.sessions
    assert store.sessions[new.digest].data == {"k": "v"}
    with pytest.raises(SessionEnded):
        await other.require()  # no grace period for the old token
    assert (await sessions.handshake(old.value)).status is Status.NOT_FOUND


async def test_destroy_ends_the_session_and_binds_a_fresh_empty_one(sessions: Sessions, store: MemoryStore) -> None:
    handle = await opened(sessions)
    other = await opened(sessions, handle.token.value)
    await handle.set("userId", 1)
    old = handle.token
    new = await handle.destroy()
    assert new != old
    assert handle.token == new
    assert dict(handle.data) == {}
    assert old.digest not in store.sessions
    assert new.digest in store.sessions
    with pytest.raises(SessionEnded):
        await other.require("userId")


async def test_the_guard_refreshes_and_needs_the_keys(sessions: Sessions) -> None:
    a = await opened(sessions)
    b = await opened(sessions, a.token.value)
    with pytest.raises(SessionKeyMissing):
        await b.require("userId")
    await a.set("userId", 5)
    await b.require("userId")  # b's view was refreshed from the store
    assert b.get("userId") == 5


async def test_refresh_says_when_the_session_ended_elsewhere(sessions: Sessions, clock: FakeClock) -> None:
    handle = await opened(sessions)
    assert await handle.refresh()
    clock.advance(100)
    assert not await handle.refresh()
    assert handle.ended


async def test_login_rotates_and_records_the_owner(sessions: Sessions, store: MemoryStore) -> None:
    handle = await opened(sessions)
    old = handle.token
    await handle.login("alice")
    assert handle.token != old
    assert store.sessions[handle.token.digest].user_id == "alice"


class _SlowStore(MemoryStore):
    """Writes wait for ``release``: they pile up on the handle like writes behind a slow database."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.writes = 0

    async def write(self, digest: bytes, change: Change, **options: Any) -> int | None:
        await self.release.wait()
        self.writes += 1
        return await super().write(digest, change, **options)


async def test_writes_queued_past_the_bound_fail_at_once_and_touch_nothing(clock: FakeClock) -> None:
    store = _SlowStore()
    sessions = Sessions(store, clock, max_pending_writes=3)
    handle = await opened(sessions)
    queued = [asyncio.create_task(handle.set(f"k{n}", n)) for n in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(TooManyRequests):
        await handle.set("one-too-many", 1)
    store.release.set()
    await asyncio.gather(*queued)
    assert store.writes == 3
    assert dict(handle.data) == {"k0": 0, "k1": 1, "k2": 2}
    await handle.set("after", 1)  # the bound is on what is queued, not on what was written


async def test_get_never_serves_the_view_of_an_expired_session(sessions: Sessions, clock: FakeClock) -> None:
    handle = await opened(sessions)
    await handle.set("cart", ["tea"])
    clock.advance(99)
    assert handle.get("cart") == ["tea"]
    clock.advance(1)  # the idle deadline: over
    with pytest.raises(SessionEnded):
        handle.get("cart")
    with pytest.raises(SessionEnded):
        _ = handle.data


async def test_an_expired_handle_is_rebound_and_told_once(sessions: Sessions, clock: FakeClock) -> None:
    told: list[Handshake] = []

    async def rebound(result: Handshake | None) -> None:
        assert result is not None
        told.append(result)

    handle = SessionHandle(sessions, on_rebound=rebound)
    await handle.handshake("")
    await handle.set("cart", ["tea"])
    old = handle.token
    assert not await handle.expire_if_due()
    clock.advance(100)
    assert await handle.expire_if_due()
    assert [r.status for r in told] == [Status.EXPIRED]
    assert handle.token != old
    assert handle.get("cart") == ""
    assert not await handle.expire_if_due()


async def test_a_handle_whose_session_was_kept_alive_elsewhere_only_reloads(
    sessions: Sessions, clock: FakeClock
) -> None:
    idle = await opened(sessions)
    busy = await opened(sessions, idle.token.value)
    clock.advance(60)
    await busy.set("n", 1)
    clock.advance(60)  # idle's view says expired; the store says live until 160 + 100
    assert await idle.expire_if_due() is False
    assert idle.token == busy.token
    assert idle.get("n") == 1


async def test_a_refused_admission_writes_nothing(sessions: Sessions, store: MemoryStore) -> None:
    with pytest.raises(TooManyRequests):
        await sessions.handshake("", admit=lambda: False)
    with pytest.raises(TooManyRequests):
        await sessions.handshake(Token.generate().value, admit=lambda: False)
    assert store.sessions == {}


async def test_a_login_past_the_cap_ends_the_least_recently_seen_other_session(
    store: MemoryStore, clock: FakeClock
) -> None:
    sessions = Sessions(store, clock, max_per_user=2)
    devices = [await opened(sessions) for _ in range(3)]
    for device in devices:
        clock.advance(1)
        await device.login("carol")
    listed = await list_user_sessions(sessions, "carol")
    assert len(listed) == 2
    assert devices[0].token.digest not in store.sessions
    assert {devices[1].token.digest, devices[2].token.digest} <= set(store.sessions)


async def test_an_expiry_found_first_by_an_event_is_still_pushed(sessions: Sessions, clock: FakeClock) -> None:
    told: list[Handshake | None] = []

    async def rebound(result: Handshake | None) -> None:
        told.append(result)

    handle = SessionHandle(sessions, on_rebound=rebound)
    await handle.handshake("")
    await handle.set("cart", ["tea"])
    clock.advance(100)
    assert await handle.refresh() is False  # a guarded event got there first: the handle is ended
    assert await handle.expire_if_due() is True  # and the socket is still told
    assert [r.status for r in told if r is not None] == [Status.EXPIRED]


async def test_a_fresh_session_refused_by_admission_leaves_the_handle_without_one(
    sessions: Sessions, clock: FakeClock
) -> None:
    told: list[Handshake | None] = []

    async def rebound(result: Handshake | None) -> None:
        told.append(result)

    handle = SessionHandle(sessions, on_rebound=rebound, admit=lambda: len(told) == 0 and not handle.bound)
    await handle.handshake("")
    assert await handle.destroy() is None  # no second new session for this client
    assert told == [None]  # the transport tells the client: Too Many Requests
    assert not handle.bound


async def test_a_bare_regenerate_keeps_an_anonymous_session_anonymous(store: MemoryStore, clock: FakeClock) -> None:
    sessions = Sessions(store, clock, policy=ExpiryPolicy(idle_ttl=1000, absolute_ttl=10_000, anon_ttl=10))
    handle = await opened(sessions)
    clock.advance(5)
    await handle.regenerate()
    assert handle.expires == clock.current + 10  # the anonymous window, not the idle one
    await handle.set("k", 1)
    assert handle.expires == clock.current + 1000


async def test_a_listener_that_fails_does_not_keep_the_others_from_hearing(sessions: Sessions) -> None:
    heard: list[frozenset[bytes]] = []

    class Broken:
        async def sessions_ended(self, digests: frozenset[bytes]) -> None:
            raise RuntimeError("boom")

    class Relay:
        async def sessions_ended(self, digests: frozenset[bytes]) -> None:
            heard.append(digests)

    sessions.subscribe(Broken())
    sessions.subscribe(Relay())
    await sessions.announce_ended({b"x" * 32})
    assert heard == [frozenset({b"x" * 32})]


class _CountingStore(MemoryStore):
    """Counts the writes and reads that reach the store."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.fetches = 0

    async def write(self, digest: bytes, change: Change, **kwargs: Any) -> int | None:
        self.writes += 1
        return await super().write(digest, change, **kwargs)

    async def fetch(self, digest: bytes) -> Any:
        self.fetches += 1
        return await super().fetch(digest)


async def test_a_write_the_view_says_cannot_fit_is_refused_before_the_store_is_asked(clock: FakeClock) -> None:
    store = _CountingStore()
    sessions = Sessions(store, clock, max_bytes=100)
    handle = await opened(sessions)
    await handle.set("fill", "x" * 80)
    writes, fetches = store.writes, store.fetches
    for _ in range(5):
        with pytest.raises(SessionTooLarge):
            await handle.set("more", "y" * 30)
    assert store.writes == writes  # the store never ran a write it would refuse
    assert store.fetches == fetches + 1  # the view was reloaded once, then trusted while fresh
    clock.advance(2)
    with pytest.raises(SessionTooLarge):
        await handle.set("more", "y" * 30)
    assert store.fetches == fetches + 2  # older than a second: reloaded before refusing


async def test_a_write_that_fits_once_another_tab_made_room_goes_through(clock: FakeClock) -> None:
    store = _CountingStore()
    sessions = Sessions(store, clock, max_bytes=100)
    phone = await opened(sessions)
    await phone.set("fill", "x" * 80)
    tab = await opened(sessions, phone.token.value)
    await tab.delete("fill")  # the phone's view still holds it
    await phone.set("more", "y" * 30)
    assert dict(phone.session.data) == {"more": "y" * 30}


async def test_many_small_writes_keep_a_bound_and_refuse_nothing_that_fits(sessions: Sessions) -> None:
    handle = await opened(sessions)
    for n in range(500):  # the bound grows with each write; the handle measures again when it must
        await handle.set("n", n)
    await handle.set("fill", "z" * 900)
    with pytest.raises(SessionTooLarge):
        await handle.set("fill2", "z" * 200)
