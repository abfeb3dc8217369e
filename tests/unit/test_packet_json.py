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
