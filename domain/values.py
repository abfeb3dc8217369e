"""What may be stored in a session: string keys, JSON values, bounded size."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeAlias

from domain.errors import InvalidKey, InvalidValue, SessionTooLarge

JSON: TypeAlias = Any
"""A value that survives ``json.dumps`` / ``json.loads`` unchanged in meaning."""

MAX_KEY_CHARS = 256
# MariaDB 10.11 refuses JSON nested 32 levels deep (error 4040: "Limit of 32 on
# JSON nested structures depth"; MySQL 8 allows 100). The session object is one
# level and the check is reached at 32, so a value may nest 30 levels; seen
# here, and pinned by tests/contract/test_store_contract.py (docs/decisions.md, JSON depth).
MAX_VALUE_DEPTH = 30
DEFAULT_MAX_BYTES = 65536  # the old package's TEXT column


def check_key(key: object) -> str:
    """``key`` if it is a usable session key, else :class:`InvalidKey`."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("a session key is a non-empty string")
    if len(key) > MAX_KEY_CHARS:
        raise InvalidKey(f"a session key has at most {MAX_KEY_CHARS} characters")
    if "\x00" in key or has_surrogate(key):
        raise InvalidKey("a session key cannot contain NUL or lone surrogates")
    return key


def has_surrogate(text: str) -> bool:
    """True if ``text`` holds a lone surrogate (it then cannot be UTF-8)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


MAX_USER_ID_CHARS = 191  # VARCHAR(191): the longest utf8mb4 key InnoDB indexes everywhere


def check_user_id(user_id: object) -> str:
    """``user_id`` if the stores can keep and index it, else :class:`InvalidValue`."""
    if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidValue(f"a user id is a string of 1 to {MAX_USER_ID_CHARS} characters")
    if "\x00" in user_id or has_surrogate(user_id):
        raise InvalidValue("a user id cannot contain NUL or lone surrogates")
    if user_id.endswith(" "):
        # MySQL's PAD SPACE collations (utf8mb4_bin included) compare 'alice' and 'alice '
        # as equal: two users would share sessions there and not elsewhere.
        raise InvalidValue("a user id cannot end with a space")
    return user_id


def _depth(value: object) -> int:
    """How many arrays/objects deep ``value`` nests (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, (list, tuple)):
            children = list(item)
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_VALUE_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def encode(value: object) -> str:
    """The compact JSON text of ``value``, or :class:`InvalidValue`.

    NaN and the infinities are refused: they are not JSON, and other readers of
    the session (the old Node package, MySQL's JSON functions) reject them. So
    is nesting deeper than :data:`MAX_VALUE_DEPTH`, which the databases refuse.
    """
    if _depth(value) > MAX_VALUE_DEPTH:
        raise InvalidValue(f"value nests deeper than {MAX_VALUE_DEPTH} levels")
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidValue(f"value is not JSON: {type(exc).__name__}") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue("value holds a lone surrogate, which is not valid UTF-8") from None
    return text


def encoded_size(data: Mapping[str, JSON]) -> int:
    """Bytes of ``data`` as compact UTF-8 JSON: the size the limit is measured in.

    ``data`` holds values that :func:`encode` accepted already.
    """
    return len(json.dumps(dict(data), ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def check_size(data: Mapping[str, JSON], max_bytes: int) -> None:
    """:class:`SessionTooLarge` unless ``data`` fits in ``max_bytes``."""
    size = encoded_size(data)
    if size > max_bytes:
        raise SessionTooLarge(f"session would be {size} bytes; the maximum is {max_bytes}")
