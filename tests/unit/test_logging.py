"""Lifecycle events are logged, and no token ever appears in a log record."""

from __future__ import annotations

import logging

import pytest

from adapters.stores.memory import MemoryStore
from application.handle import SessionHandle
from application.sessions import Handshake, Sessions
from domain.expiry import ExpiryPolicy
from tests.support.fakes import FakeClock


async def test_no_log_record_holds_a_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    sessions = Sessions(MemoryStore(), clock, policy=ExpiryPolicy(idle_ttl=100, absolute_ttl=1000))
    tokens: list[str] = []

    async def remember(result: Handshake | None) -> None:
        assert result is not None
        tokens.append(result.token.value)

    handle = SessionHandle(sessions, on_rebound=remember)
    tokens.append((await handle.handshake("")).token.value)
    tokens.append((await sessions.handshake(tokens[0])).token.value)
    await handle.set("k", "v")
    await handle.login("alice")
    await handle.destroy()
    tokens.append((await sessions.handshake("not-a-token")).token.value)
    clock.advance(200)
    tokens.append((await sessions.handshake(tokens[-1])).token.value)

    events = {getattr(record, "session_event", None) for record in caplog.records}
    assert {"created", "resumed", "rotated", "destroyed", "invalid", "expired"} <= events
    for record in caplog.records:
        text = record.getMessage() + " " + " ".join(str(v) for v in vars(record).values())
        for token in tokens:
            assert token not in text
            assert token[:16] not in text


async def test_lifecycle_lines_are_at_info_and_skipped_below_it(caplog: pytest.LogCaptureFixture) -> None:
    sessions = Sessions(MemoryStore(), FakeClock())
    caplog.set_level(logging.INFO, logger="socketio_session")
    token = (await sessions.handshake("")).token.value
    await sessions.handshake(token)
    assert [(r.levelno, getattr(r, "session_event", None)) for r in caplog.records] == [
        (logging.INFO, "created"),
        (logging.INFO, "resumed"),
    ]
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="socketio_session")  # SESSION_LOG_LEVEL=WARNING
    await sessions.handshake(token)
    assert caplog.records == []
