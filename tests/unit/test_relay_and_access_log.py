"""The relay's message authentication and the access log's sid masking, without a server."""

from __future__ import annotations

import logging

import pytest

from adapters.socketio.log_throttle import CountedWarning
from adapters.socketio.relay import sign, verified_body
from entrypoints.access_log import HideEngineIOSid, hide_sid
from tests.support.fakes import FakeClock

KEY = b"k" * 32


def test_only_a_message_signed_with_the_shared_key_is_believed() -> None:
    body = b'{"digests": []}'
    assert verified_body(KEY, sign(KEY, body)) == body
    assert verified_body(KEY, sign(b"another key of the same length!!", body)) is None
    assert verified_body(KEY, body) is None  # unsigned
    assert verified_body(KEY, sign(KEY, body).replace(b"[]", b"[1]")) is None  # changed after signing
    assert verified_body(KEY, b"") is None
    assert verified_body(KEY, b"." + body) is None


def test_the_engine_io_sid_is_masked_in_access_log_lines() -> None:
    path = "/socket.io/?EIO=4&transport=polling&t=abc&sid=Zx8_aB-1cD2eF3gH4iJ5"
    assert hide_sid(path) == "/socket.io/?EIO=4&transport=polling&t=abc&sid=<hidden>"
    assert hide_sid("/socket.io/?sid=abc&EIO=4") == "/socket.io/?sid=<hidden>&EIO=4"
    assert hide_sid("/healthz") == "/healthz"
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s"', ("1.2.3.4", "GET", path), None)
    assert HideEngineIOSid().filter(record)
    assert "Zx8_aB" not in record.getMessage()


def test_a_flood_of_warnings_is_a_line_at_once_then_a_line_a_minute_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(0.0)
    warning = CountedWarning(logging.getLogger("flood"), "dropped %d messages on %s", every=60, clock=clock.now)
    with caplog.at_level(logging.WARNING, logger="flood"):
        for _ in range(1000):
            warning.count("ch")
            clock.advance(0.01)
        clock.advance(60)
        warning.count("ch")
        warning.count("ch")
        warning.flush("ch")
    assert [r.getMessage() for r in caplog.records] == [
        "dropped 1 messages on ch",
        "dropped 1000 messages on ch",  # the 999 between, and the one that came a minute later
        "dropped 1 messages on ch",
    ]
    assert warning.total == 1002
