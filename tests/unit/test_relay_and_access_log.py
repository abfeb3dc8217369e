"""The relay's message authentication and the access log's sid masking, without a server."""

from __future__ import annotations

import logging

from adapters.socketio.relay import sign, verified_body
from entrypoints.access_log import HideEngineIOSid, hide_sid

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
