from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from adapters.socketio import packet_json
from domain.errors import InvalidValue
from domain.values import JSON, encode
from tests.support.strategies import json_values


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


_STANDARD = json.JSONDecoder(parse_int=packet_json._parse_int)
_texts = st.one_of(
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
    json_values.map(json.dumps),  # \\u escapes
    st.lists(st.one_of(st.integers(), st.floats(allow_nan=True), st.text()), max_size=5).map(json.dumps),
    st.integers(min_value=-(10**40), max_value=10**40).map(lambda n: f'["e",{n}]'),
    st.text(max_size=30),  # mostly not JSON at all
)


def _standard(text: str) -> object:
    try:
        return ("value", _STANDARD.decode(text))
    except ValueError:
        return ("refused", None)


def _fast(text: str) -> object:
    try:
        return ("value", packet_json.loads(text))
    except ValueError:
        return ("refused", None)


@given(_texts)
@example('["e",-9223372036854775809]')  # 19 digits, past 64 bits: orjson would read a float
@example('["e",99999999999999999999]')
@example('["e",NaN,Infinity]')
@example('["e","\\ud800"]')  # a lone surrogate: orjson refuses it, the standard library reads it
def test_the_fast_path_reads_every_packet_as_the_standard_library_does(text: str) -> None:
    """orjson first, the standard library for what orjson refuses: the same values, the same refusals
    (NaN stays a float NaN for the event to refuse by name; a 19-digit or longer integer stays exact)."""
    fast, standard = _fast(text), _standard(text)
    assert repr(fast) == repr(standard)  # repr: NaN != NaN, and 1 == 1.0 == True must not pass


@given(json_values)
def test_what_the_fast_path_writes_reads_back_the_same(value: JSON) -> None:
    written = packet_json.dumps(value, separators=(",", ":"))
    assert repr(json.loads(written)) == repr(value)
