"""The JSON codec for Socket.IO packets: pass it as ``AsyncServer(json=...)``.

python-engineio's codec refuses integers of more than 100 digits (parsing them
costs quadratic time) by raising inside the packet decoder: the whole packet
is dropped, the client never gets an answer, and a traceback is logged. Here
such a number is parsed into :class:`OversizedInteger` instead, a value that
is not JSON to us, so the event runs and is refused by name (``InvalidValue``
for a write, ``invalid`` for a token), as any other bad value is.

The same for nesting: Python's JSON parser gives up (RecursionError) around a
thousand levels, which python-socketio does not expect, so the packet got no
answer and two tracebacks were logged. Such a payload is read as its event name
and one :class:`TooDeep` argument: the event runs and is refused by name
(``InvalidPayload`` for the demo's events, ``invalid`` for a token), and one
WARNING line is logged (then one a minute at most, with the count).

Every packet first goes through orjson, which parses and writes JSON several
times faster than the standard library; whatever orjson refuses (NaN and the
infinities, integers past 64 bits, nesting past 1,024 levels, lone
surrogates, keys that are not strings) takes the standard library's path
above, so such input is answered exactly as before: a NaN a Python client
sent still reaches the event, which refuses it by name (InvalidValue),
instead of the packet being dropped unanswered. Written, a NaN an
application emits becomes ``null`` (orjson's choice), which every JSON reader
accepts, where the standard library wrote ``NaN``, which JavaScript's
``JSON.parse`` refuses.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import orjson

from adapters.socketio.log_throttle import CountedWarning

log = logging.getLogger("socketio_session.transport")
# A flood of such packets costs a line a minute, not a line each.
_TOO_DEEP = CountedWarning(log, "refused %d packet payloads nested too deep to parse (their events got InvalidPayload)")

MAX_INTEGER_DIGITS = 100  # python-engineio's own bound
_LONG_DIGITS = re.compile(r"[0-9]{19}")

# One decoder and one compact encoder for every packet: json.loads/json.dumps
# with options build a new one per call, which costs more than the parsing.
_COMPACT = (",", ":")
_ENCODER = json.JSONEncoder(separators=_COMPACT)


def dumps(value: Any, **options: Any) -> str:
    if not options or (options.keys() == {"separators"} and tuple(options["separators"]) == _COMPACT):
        try:
            return orjson.dumps(value).decode("utf-8")
        except TypeError:
            return _ENCODER.encode(value)  # e.g. an integer past 64 bits, a key that is not a string
    return json.dumps(value, **options)


class OversizedInteger:
    """An integer literal too long to parse safely; it cannot be stored or echoed."""

    __slots__ = ("digits",)

    def __init__(self, text: str) -> None:
        self.digits = len(text)

    def __repr__(self) -> str:
        return f"OversizedInteger({self.digits} digits)"


def _parse_int(text: str) -> int | OversizedInteger:
    return OversizedInteger(text) if len(text) > MAX_INTEGER_DIGITS else int(text)


_DECODER = json.JSONDecoder(parse_int=_parse_int)


class TooDeep:
    """A payload nested too deep to parse; it cannot be stored or echoed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TooDeep()"


def _too_deep(text: str) -> list[Any]:
    """``[event, TooDeep()]`` for an event packet's payload, ``[TooDeep()]`` for anything else."""
    start = len(text) - len(text.lstrip())
    if text[start : start + 1] == "[":
        after = len(text) - len(text[start + 1 :].lstrip())
        try:
            name, _ = _DECODER.raw_decode(text, after)
        except (ValueError, RecursionError):
            name = None
        if isinstance(name, str):
            _TOO_DEEP.count()
            return [name, TooDeep()]
    _TOO_DEEP.count()
    return [TooDeep()]


def loads(text: str | bytes, **options: Any) -> Any:
    if options:
        options.setdefault("parse_int", _parse_int)
        return json.loads(text, **options)
    # orjson reads an integer outside 64 bits as a float: a packet with a run of 19 digits or more
    # anywhere (in a string too, which costs only the faster path) is left to the standard library.
    if _LONG_DIGITS.search(text if isinstance(text, str) else text.decode("utf-8", "replace")) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # not JSON to orjson: the standard library's reading, with its named refusals
    decoded = text if isinstance(text, str) else text.decode("utf-8")
    try:
        return _DECODER.decode(decoded)
    except RecursionError:
        return _too_deep(decoded)
