"""A stateful test: handshake, set, delete, regenerate, destroy and time passing,
checked step by step against a simple model, over every store adapter."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import pytest
from attrs import define, field
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from application.errors import SessionEnded
from application.handle import SessionHandle
from application.ports import SessionStore
from application.sessions import Sessions, Status
from domain.expiry import Deadlines, ExpiryPolicy
from domain.token import Token
from domain.values import JSON, encode
from tests.support.fakes import FakeClock
from tests.support.stores import open_store
from tests.support.strategies import json_values, keys

POLICY = ExpiryPolicy(idle_ttl=100, absolute_ttl=400, touch_after=5)
T = TypeVar("T")


@define
class Modelled:
    """What the model believes about one token's session."""

    data: dict[str, JSON]
    deadlines: Deadlines
    alive: bool = True  # False once destroyed or rotated away


@define
class Model:
    sessions: dict[str, Modelled] = field(factory=dict)

    def live(self, token: str, now: float) -> Modelled | None:
        found = self.sessions.get(token)
        return found if found is not None and found.alive and found.deadlines.live_at(now) else None


def machine_for(kind: str, workdir: Path) -> type[RuleBasedStateMachine]:
    class SessionMachine(RuleBasedStateMachine):
        handles = Bundle("handles")

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.stack = AsyncExitStack()
            self.store: SessionStore = self.run(self.stack.enter_async_context(open_store(kind, workdir)))
            self.clock = FakeClock()
            self.sessions = Sessions(self.store, self.clock, policy=POLICY)
            self.model = Model()
            self.issued: list[str] = []

        def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
            return self.loop.run_until_complete(coroutine)

        def teardown(self) -> None:
            self.run(self.stack.aclose())
            self.loop.close()

        def _new(self, token: Token) -> None:
            now = self.clock.now()
            self.model.sessions[token.value] = Modelled({}, POLICY.open(now))
            self.issued.append(token.value)

        @rule(target=handles)
        def open_session(self) -> SessionHandle:
            handle = SessionHandle(self.sessions)
            result = self.run(handle.handshake(""))
            assert result.status is Status.CREATED
            self._new(result.token)
            return handle

        @rule(target=handles, pick=st.integers(min_value=0))
        def resume(self, pick: int) -> SessionHandle:
            handle = SessionHandle(self.sessions)
            presented = self.issued[pick % len(self.issued)] if self.issued else ""
            result = self.run(handle.handshake(presented))
            now = self.clock.now()
            expected = self.model.sessions.get(presented)
            live = self.model.live(presented, now)
            if live is not None:
                assert result.status is Status.RESUMED
                assert result.token.value == presented
                assert dict(result.session.data) == live.data
                if POLICY.wants_touch(live.deadlines, now):
                    live.deadlines = POLICY.slide(live.deadlines, now)
                assert result.session.deadlines == live.deadlines
                return handle
            if presented == "":
                assert result.status is Status.CREATED
            elif expected is not None and expected.alive:
                assert result.status is Status.EXPIRED
                expected.alive = False  # its row was dropped
            else:
                assert result.status is Status.NOT_FOUND
            assert result.token.value != presented
            assert dict(result.session.data) == {}
            self._new(result.token)
            return handle

        def _write(self, handle: SessionHandle, change: dict[str, JSON] | None, delete: str | None) -> None:
            now = self.clock.now()
            live = self.model.live(handle.token.value, now)
            try:
                if change is not None:
                    self.run(handle.update(change))
                elif delete is not None:
                    self.run(handle.delete(delete))
                else:
                    self.run(handle.clear())
            except SessionEnded:
                assert live is None, "a live session refused a write"
                return
            assert live is not None, "an ended session accepted a write"
            if change is not None:
                live.data.update({k: json.loads(encode(v)) for k, v in change.items()})
            elif delete is not None:
                live.data.pop(delete, None)
            else:
                live.data.clear()
            live.deadlines = POLICY.slide(live.deadlines, now)

        @rule(handle=handles, key=keys, value=json_values)
        def set_value(self, handle: SessionHandle, key: str, value: JSON) -> None:
            self._write(handle, {key: value}, None)

        @rule(handle=handles, key=keys)
        def delete_key(self, handle: SessionHandle, key: str) -> None:
            self._write(handle, None, key)

        @rule(handle=handles)
        def clear(self, handle: SessionHandle) -> None:
            self._write(handle, None, None)

        @rule(handle=handles)
        def regenerate(self, handle: SessionHandle) -> None:
            now = self.clock.now()
            old = handle.token.value
            live = self.model.live(old, now)
            try:
                new = self.run(handle.regenerate())
            except SessionEnded:
                assert live is None
                return
            assert live is not None
            live.alive = False
            self.model.sessions[new.value] = Modelled(dict(live.data), POLICY.slide(live.deadlines, now))
            self.issued.append(new.value)

        @rule(handle=handles)
        def destroy(self, handle: SessionHandle) -> None:
            old = self.model.sessions[handle.token.value]
            new = self.run(handle.destroy())
            assert new is not None  # no admission limit here
            old.alive = False
            self._new(new)

        @rule(seconds=st.sampled_from([0.0, 1.0, 6.0, 50.0, 99.0, 100.0, 150.0]))
        def time_passes(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @invariant()
        def store_matches_model(self) -> None:
            now = self.clock.now()
            for token, modelled in self.model.sessions.items():
                found = self.run(self.store.fetch(Token(token).digest))
                if self.model.live(token, now) is not None:
                    assert found is not None, "a live session vanished"
                    assert dict(found.data) == modelled.data
                    assert found.deadlines == modelled.deadlines
                elif not modelled.alive:
                    assert found is None, "a destroyed or rotated-away token still has a row"
                else:
                    assert found is None or not found.deadlines.live_at(now), "an expired session came back"

    return SessionMachine


@pytest.mark.parametrize("kind", ["memory", "sqlite", "mysql"])
def test_sessions_behave_like_the_model(kind: str, tmp_path: Path) -> None:
    examples = {"memory": 60, "sqlite": 25, "mysql": 25}[kind]
    run_state_machine_as_test(
        machine_for(kind, tmp_path), settings=settings(max_examples=examples, stateful_step_count=25, deadline=None)
    )
