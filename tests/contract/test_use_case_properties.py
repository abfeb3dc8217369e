"""Use-case invariants, checked over every store adapter."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.errors import SessionEnded
from application.handle import SessionHandle
from application.ports import SessionStore
from application.sessions import Sessions, Status
from domain.expiry import ExpiryPolicy
from domain.session import Change
from domain.token import Token
from tests.support.fakes import FakeClock
from tests.support.strategies import json_values, keys, malformed_tokens, well_formed_tokens

POLICY = ExpiryPolicy(idle_ttl=100, absolute_ttl=1000)


class WatchedStore:
    """A fake wrapper that remembers every port call but ``insert`` (new sessions are expected)."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        method = getattr(self.inner, name)

        async def watched(*args: object, **kwargs: object) -> object:
            if name != "insert":
                self.calls.append(name)
            return await method(*args, **kwargs)

        return watched


@given(presented=malformed_tokens)
async def test_a_malformed_token_never_reaches_the_store(store: SessionStore, presented: object) -> None:
    watched = WatchedStore(store)
    sessions = Sessions(watched, FakeClock(), policy=POLICY)  # type: ignore[arg-type]
    result = await sessions.handshake(presented)
    assert result.status is Status.INVALID
    assert watched.calls == []  # no query ran with that input


async def test_writes_through_one_handle_apply_in_call_order_on_every_store(store: SessionStore) -> None:
    """SQLite and MySQL suspend inside a write, so without the handle's lock later calls could overtake."""
    sessions = Sessions(store, FakeClock(current=1_700_000_000 + secrets.randbelow(10**6)), policy=POLICY)
    handle = SessionHandle(sessions)
    await handle.handshake("")
    await asyncio.gather(*(handle.set("n", i) for i in range(30)))
    found = await store.fetch(handle.token.digest)
    assert found is not None
    assert (found.data["n"], found.version) == (29, 30)


async def test_login_then_logout_in_flight_together_leave_no_one_logged_in(store: SessionStore) -> None:
    sessions = Sessions(store, FakeClock(current=1_700_000_000 + secrets.randbelow(10**6)), policy=POLICY)
    handle = SessionHandle(sessions)
    await handle.handshake("")
    await asyncio.gather(handle.login("alice", {"userId": "alice"}), handle.destroy())
    assert handle.get("userId") == ""
    assert handle.session.user_id is None
    found = await store.fetch(handle.token.digest)
    assert found is not None
    assert (dict(found.data), found.user_id) == ({}, None)


@given(presented=well_formed_tokens)
async def test_a_token_the_server_did_not_issue_is_never_adopted(store: SessionStore, presented: str) -> None:
    sessions = Sessions(store, FakeClock(), policy=POLICY)
    result = await sessions.handshake(presented)
    assert result.status is Status.NOT_FOUND
    assert result.token.value != presented
    assert await store.fetch(Token(presented).digest) is None


@given(
    idle_gap=st.floats(min_value=0, max_value=5000),
    key=keys,
    value=json_values,
    path=st.sampled_from(["handshake", "set", "touch", "refresh"]),
)
async def test_an_expired_session_is_never_revived_by_any_path(
    store: SessionStore, idle_gap: float, key: str, value: object, path: str
) -> None:
    clock = FakeClock(current=1_700_000_000 + secrets.randbelow(10**6))
    sessions = Sessions(store, clock, policy=POLICY)
    handle = SessionHandle(sessions)
    await handle.handshake("")
    await handle.set("before", 1)
    token = handle.token
    clock.advance(100 + idle_gap)  # at or past the idle deadline
    if path == "handshake":
        result = await sessions.handshake(token.value)
        assert result.status is Status.EXPIRED
        assert result.token != token
        assert dict(result.session.data) == {}
    elif path == "set":
        with pytest.raises(SessionEnded):
            await handle.set(key, value)
    elif path == "touch":
        assert not await store.touch(token.digest, now=clock.now(), idle_deadline=clock.now() + 100)
    else:
        assert not await handle.refresh()
    found = await store.fetch(token.digest)
    assert found is None or POLICY.is_expired(found.deadlines, clock.now())
    assert (
        found is None
        or await store.write(
            token.digest, Change(sets={"x": "1"}), now=clock.now(), idle_deadline=clock.now() + 100, max_bytes=65536
        )
        is None
    )
