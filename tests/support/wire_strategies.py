"""Hypothesis strategies for wire payloads: what a broken or hostile Socket.IO client may send.

Payloads are plain Python values as python-socketio's client puts them on the wire: ``bytes``
become binary attachments, NaN and the infinities become the ``NaN`` / ``Infinity`` literals
(the client's ``json.dumps`` allows them and the server's ``json.loads`` reads them back).
Dictionaries only have string keys, so the server receives exactly the value generated
(but for integers of more than 100 characters: see :data:`oversized_ints`).

Some payloads name things that only exist while a test runs (the socket's current token, a
token it left behind, the public id of the bystander's session): :class:`TokenRef` and
:class:`IdRef` stand for them and the test resolves them when the example runs.

Inputs the server refuses by a rule of its own are generated too, and the fuzz's model
predicts each refusal: text with lone surrogates, which has no UTF-8 form (InvalidKey,
InvalidValue, an ``invalid`` token), user ids longer than the stores keep
(:data:`~domain.values.MAX_USER_ID_CHARS`, InvalidValue), integers of more than 100
characters (InvalidValue in a write, InvalidPayload as a userId), and events sent with more
than one argument (InvalidPayload; an ``invalid`` token for ``getToken``).
"""

from __future__ import annotations

import enum
import functools
import json
import math
import string
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import strategies as st

from domain.values import MAX_USER_ID_CHARS
from tests.support.strategies import json_values, keys, url_safe

# -- limits ---------------------------------------------------------------------------------

SESSION_MAX_BYTES = 65536
"""The fuzzed server's SESSION_MAX_BYTES (it then accepts messages of 2 * this + 4096 characters)."""

WIRE_LIMIT = 100_000
"""Largest payload generated, in characters of the client's JSON (the server's cap is larger)."""

DEEPEST = 40
"""Deepest nesting generated: past the 30 levels a session value may have (domain.values)."""

MAX_INT = 10**100 - 1
MIN_INT = -(10**99 - 1)
"""The longest integers the packet reader parses: 100 characters as JSON (python-engineio's
bound). Longer ones (:data:`oversized_ints`) reach the server as a value that is not JSON."""

# -- markers resolved while the test runs ----------------------------------------------------


class Special(enum.Enum):
    """Payloads that are not a value: no argument at all, or one explicit ``null`` argument."""

    ABSENT = "absent"
    NULL = "null"


@dataclass(frozen=True)
class TokenRef:
    """A token the fuzzing socket knows of; ``index`` picks one when there are several."""

    which: Literal["current", "left_behind", "dead"]
    index: int = 0


@dataclass(frozen=True)
class IdRef:
    """The public id (``user:sessions``) of a session the test knows of."""

    which: Literal["current", "left_behind", "dead", "bystander", "listed"]
    index: int = 0


Mode = Literal["call", "emit", "connect"]


@dataclass(frozen=True)
class Action:
    """One event the fuzzing socket sends.

    ``mode`` is ``call`` (wait for the ack), ``emit`` (no ack; only for ``getToken``, which
    answers with ``gotToken``) or ``connect`` (reconnect with the payload as Socket.IO ``auth``).
    ``extra`` are more arguments after the payload (a Socket.IO event may carry several).
    """

    event: str
    payload: Any
    mode: Mode = "call"
    extra: tuple[Any, ...] = ()


# -- helpers ------------------------------------------------------------------------------------


def _placeholder(value: object) -> object:
    if isinstance(value, bytes):
        return {"_placeholder": True, "num": 0}
    if isinstance(value, TokenRef | IdRef):
        return "x" * 43
    if isinstance(value, Special):
        return None
    raise TypeError(type(value).__name__)


def wire_chars(action: Action) -> int:
    """About how many characters the client sends for ``action`` (ASCII-escaped JSON, attachments)."""
    args = [action.payload, *action.extra]
    text = json.dumps(args, separators=(",", ":"), default=_placeholder)
    return len(text) + sum(len(b) for b in _walk(args) if isinstance(b, bytes))


def _walk(value: object) -> list[object]:
    found: list[object] = [value]
    if isinstance(value, dict):
        for item in value.values():
            found += _walk(item)
    elif isinstance(value, list):
        for item in value:
            found += _walk(item)
    return found


def depth(value: object) -> int:
    """Nesting depth of containers: 0 for a scalar, 1 for ``[1]``."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def contains_bytes(value: object) -> bool:
    return any(isinstance(item, bytes) for item in _walk(value))


# -- text, numbers, junk -------------------------------------------------------------------------

# Every code point: NUL, control characters and lone surrogates included.
chars = st.characters()

EMOJI = "😀🎉👍🏽🧪𝄞🀄"
LONE_SURROGATES = "\ud83d\udfff"  # half an emoji, and the last low surrogate
METACHARS = "$.\"'[]*\\%"
SQL_TEXT = (
    "' OR 1=1 -- ",
    "'; DROP TABLE socketio_session; --",
    '" OR ""="',
    "1) OR SLEEP(5)#",
    "%' UNION SELECT data FROM socketio_session -- ",
    "\\'; SELECT 1; --",
    '$."a"[*] ** %',
    "` OR `1`=`1",
    "NULL",
    "0x00",
)

texts: st.SearchStrategy[str] = st.one_of(
    st.text(chars, max_size=40),
    st.text(
        st.sampled_from(string.ascii_letters + string.digits + METACHARS + EMOJI + LONE_SURROGATES + "-_ \x00\t\n"),
        max_size=40,
    ),
    st.sampled_from(SQL_TEXT),
)


@st.composite
def huge_texts(draw: st.DrawFn, budget: int = WIRE_LIMIT - 10_000) -> str:
    """A long string (thousands of characters) whose escaped JSON stays within ``budget``."""
    unit = draw(
        st.one_of(
            st.sampled_from(["x", "é", "😀", "'", "\\", '"', "$.", "A-_", "\x00"]),
            st.text(chars, min_size=1, max_size=3),
        )
    )
    per_unit = max(1, len(json.dumps(unit)) - 2)
    count = draw(st.integers(min_value=1000, max_value=max(1000, budget // per_unit)))
    return unit * count


numbers: st.SearchStrategy[int | float] = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=MIN_INT, max_value=MAX_INT),
    st.sampled_from([MIN_INT, MAX_INT]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 5e-324, 1e308, -1e308, 1e16, 2.0**53 + 2, 0.1, 1.5]),
)

not_json_numbers = st.sampled_from([math.nan, math.inf, -math.inf])

oversized_ints: st.SearchStrategy[int] = st.one_of(
    st.sampled_from([MAX_INT + 1, MIN_INT - 1]),
    st.integers(min_value=MAX_INT + 1, max_value=10**120),
    st.integers(min_value=-(10**120), max_value=MIN_INT - 1),
)
"""Integers of more than 100 characters as JSON: the server reads them as a value that is not
JSON (adapters/socketio/packet_json.py), so a write holding one is InvalidValue."""

scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    not_json_numbers,
    oversized_ints,
    texts,
    st.binary(max_size=64),
)

junk: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)),
    max_leaves=10,
)
"""Any value the wire can carry: wrong types, nested junk, NaN, bytes, unicode."""


@st.composite
def deep_values(draw: st.DrawFn) -> Any:
    """A valid JSON value wrapped in up to DEEPEST lists and objects."""
    value: Any = draw(st.one_of(st.none(), st.booleans(), numbers, texts))
    levels = draw(st.integers(min_value=1, max_value=DEEPEST))
    for _ in range(levels):
        member = draw(st.one_of(st.none(), st.sampled_from(["a", "", "$", "-", "😀", "[0]"])))
        value = [value] if member is None else {member: value}
    return value


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, picked in proportion to its weight (``st.one_of`` picks evenly)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


def _objects(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with ``fields`` plus, sometimes, some junk members."""
    return st.builds(
        lambda extra, named: {**extra, **named},
        st.dictionaries(texts, junk, max_size=2),
        st.fixed_dictionaries(fields),
    )


no_payload = st.sampled_from([Special.ABSENT, Special.NULL])

extra_args: st.SearchStrategy[tuple[Any, ...]] = weighted(
    (9, st.just(())),
    (1, st.lists(junk, min_size=1, max_size=2).map(tuple)),
)
"""Mostly none, sometimes one or two more arguments after the payload (a malformed event)."""

# -- getToken --------------------------------------------------------------------------------


def _exactly(n: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(url_safe), min_size=n, max_size=n)


token_values: st.SearchStrategy[Any] = st.one_of(
    st.just(""),
    *(_exactly(n) for n in (31, 32, 43, 64, 65)),
    st.text(st.sampled_from(url_safe), max_size=80),
    st.sampled_from(SQL_TEXT).map(lambda sql: (sql * 43)[:43]),
    st.sampled_from(SQL_TEXT),
    st.text(st.sampled_from(url_safe + METACHARS), min_size=30, max_size=66),
    st.text(st.sampled_from(url_safe + EMOJI), min_size=30, max_size=66),
    texts,
    huge_texts(),
    junk,
    st.builds(TokenRef, st.sampled_from(["current", "left_behind", "dead"]), st.integers(0, 20)),
    st.just(TokenRef("current")),
)
"""Tokens of every shape: lengths around the 32..64 bounds, SQL and JSON-path text, wrong types."""

get_token_payloads: st.SearchStrategy[Any] = st.one_of(
    st.fixed_dictionaries({"token": token_values}),
    _objects(token=token_values),
    st.dictionaries(texts.filter(lambda k: k != "token"), junk, max_size=3),
    junk,
    no_payload,
)


def _get_token_action(payload: Any, mode: Mode, extra: list[Any]) -> Action:
    # Socket.IO's CONNECT packet carries one object (or nothing) and cannot carry attachments.
    if mode == "connect" and (
        extra or not (payload is Special.ABSENT or (isinstance(payload, dict) and not contains_bytes(payload)))
    ):
        mode = "emit"
    return Action("getToken", payload, mode, tuple(extra))


get_token_actions: st.SearchStrategy[Action] = st.builds(
    _get_token_action,
    get_token_payloads,
    st.sampled_from(["emit", "call", "connect"]),
    st.one_of(st.just([]), st.lists(junk, min_size=1, max_size=2)),
)

# -- demo:set / demo:get ---------------------------------------------------------------------------

VALID_KEYS = (
    "a",
    "userId",
    "probe",
    "-",
    "-1",
    "$",
    ".",
    "$.a",
    "a.b",
    "[0]",
    "*",
    "**",
    "\\",
    '"',
    "'",
    "%",
    "😀",
    'a"b',
    " ",
    "\u2028",
    "\ufeff",
    "x" * 256,
)

valid_keys: st.SearchStrategy[str] = st.one_of(st.sampled_from(VALID_KEYS), keys)

set_keys: st.SearchStrategy[Any] = st.one_of(
    valid_keys,
    st.text(chars, min_size=1, max_size=40),
    st.text(st.sampled_from(url_safe), min_size=257, max_size=300),
    st.just(""),
    st.sampled_from(SQL_TEXT),
    st.one_of(st.none(), st.booleans(), numbers, st.binary(max_size=8), st.lists(texts, max_size=2)),
)
"""Keys valid and not: metacharacters, emoji, NUL, empty, too long, not strings."""


def _filler(size: int, unit: str) -> str:
    """``unit`` repeated so that its JSON text takes about ``size`` bytes."""
    return unit * (size // len(json.dumps(unit, ensure_ascii=False)[1:-1].encode()))


# Strings whose JSON text is about SESSION_MAX_BYTES: the limit, to the byte. Only ASCII
# gets there in one message (the client escapes the rest to \uXXXX, 3 characters a byte).
near_the_limit = st.builds(
    _filler,
    st.integers(min_value=SESSION_MAX_BYTES - 300, max_value=SESSION_MAX_BYTES + 10),
    st.sampled_from(["x", "\\", '"', "ab"]),
)

values: st.SearchStrategy[Any] = st.one_of(
    json_values,
    junk,
    deep_values(),
    huge_texts(),
    near_the_limit,
    numbers,
    not_json_numbers,
    oversized_ints,
    st.binary(max_size=64),
)

set_payloads: st.SearchStrategy[Any] = weighted(
    # Mostly well-formed, so that writes get through to the store...
    (4, st.fixed_dictionaries({"key": valid_keys, "value": values})),
    (2, st.fixed_dictionaries({"key": valid_keys, "value": json_values})),
    # ...and every way of not being so.
    (2, st.fixed_dictionaries({"key": set_keys, "value": values})),
    (1, _objects(key=set_keys, value=values)),
    (1, st.fixed_dictionaries({"key": set_keys})),
    (1, st.fixed_dictionaries({"value": values})),
    (1, junk),
    (1, no_payload),
)

get_payloads: st.SearchStrategy[Any] = st.one_of(
    st.fixed_dictionaries({"key": set_keys}),
    _objects(key=set_keys),
    junk,
    no_payload,
)

store_actions: st.SearchStrategy[Action] = st.one_of(
    st.builds(Action, st.just("demo:set"), set_payloads, st.just("call"), extra_args),
    st.builds(Action, st.just("demo:get"), get_payloads, st.just("call"), extra_args),
)

# -- user events ------------------------------------------------------------------------------------

USERS = ("alice", "bob", "0", "1", "😀", "' OR 1=1 -- ", "$.a")

user_ids: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(USERS),
    st.text(chars, max_size=MAX_USER_ID_CHARS),
    st.text(chars, min_size=MAX_USER_ID_CHARS + 1, max_size=MAX_USER_ID_CHARS + 20),
    texts,
    st.integers(min_value=MIN_INT, max_value=MAX_INT),
    oversized_ints,
    st.just(""),
    st.booleans(),
    st.floats(),
    st.none(),
    junk,
)

session_ids: st.SearchStrategy[Any] = st.one_of(
    st.builds(IdRef, st.sampled_from(["current", "left_behind", "dead", "bystander", "listed"]), st.integers(0, 20)),
    st.builds(IdRef, st.sampled_from(["current", "listed"]), st.integers(0, 20)),
    st.text(st.sampled_from("0123456789abcdef"), min_size=24, max_size=24),
    texts,
    junk,
)

_any_payload = st.one_of(junk, no_payload)


def _event(
    name: str, payloads: st.SearchStrategy[Any], extra: st.SearchStrategy[tuple[Any, ...]] = extra_args
) -> st.SearchStrategy[Action]:
    return st.builds(functools.partial(Action, name, mode="call"), payloads, extra=extra)


user_actions: st.SearchStrategy[Action] = st.one_of(
    _event(
        "user:login", st.one_of(st.fixed_dictionaries({"userId": user_ids}), _objects(userId=user_ids), _any_payload)
    ),
    _event("user:securedEvent", _any_payload),
    _event("user:logout", _any_payload),
    _event("user:sessions", _any_payload),
    _event(
        "user:endSession", st.one_of(st.fixed_dictionaries({"id": session_ids}), _objects(id=session_ids), _any_payload)
    ),
    # Enough of the rest to move between sessions and to fake the guard's key.
    _event(
        "getToken",
        st.fixed_dictionaries(
            {"token": st.builds(TokenRef, st.sampled_from(["current", "left_behind", "dead"]), st.integers(0, 20))}
        ),
        extra=st.just(()),
    ),
    _event("getToken", st.just({"token": ""}), extra=st.just(())),
    _event(
        "demo:set",
        st.fixed_dictionaries({"key": st.just("userId"), "value": st.one_of(user_ids, values)}),
        extra=st.just(()),
    ),
)

any_actions: st.SearchStrategy[Action] = st.one_of(get_token_actions, store_actions, user_actions)

call_actions: st.SearchStrategy[Action] = any_actions.map(lambda a: Action(a.event, a.payload, "call", a.extra))
"""Every event, acknowledged: what a burst of concurrent events is made of."""
