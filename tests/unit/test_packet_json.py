from __future__ import annotations

import pytest

from adapters.socketio import packet_json
from domain.errors import InvalidValue
from domain.values import encode


def test_ordinary_json_reads_as_usual() -> None:
    assert packet_json.loads('{"a": [1, 2.5, "x", null, 12345678901234567890]}') == {
        "a": [1, 2.5, "x", None, 12345678901234567890]
    }


def test_an_integer_too_long_to_parse_safely_becomes_a_value_no_write_accepts() -> None:
    parsed = packet_json.loads('{"key": "n", "value": ' + "9" * 101 + "}")
    assert isinstance(parsed["value"], packet_json.OversizedInteger)
    assert parsed["value"].digits == 101
    with pytest.raises(InvalidValue):
        encode(parsed["value"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["demo:set",' + "[" * 5000 + "]" * 5000 + "]", "demo:set"),
        (' [ "getToken" , {"token": ' + "[" * 5000, "getToken"),  # cut short, too: still the event's name
        ("[" * 5000 + "]" * 5000, None),
        ("[" * 5001, None),  # cut short
    ],
)
def test_a_payload_nested_too_deep_reads_as_its_event_and_one_refusable_value(
    text: str, expected: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    parsed = packet_json.loads(text)
    if expected is None:
        assert len(parsed) == 1
    else:
        assert parsed[0] == expected
        assert len(parsed) == 2
    assert isinstance(parsed[-1], packet_json.TooDeep)
    with pytest.raises(InvalidValue):
        encode(parsed[-1])
    # At most a WARNING line (one a minute: tests/unit/test_relay_and_access_log.py), never a traceback.
    assert all(r.levelname == "WARNING" and r.exc_info is None for r in caplog.records)
