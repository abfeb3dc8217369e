from __future__ import annotations

import hashlib
import math

import pytest

from domain.errors import InvalidKey, InvalidValue, MalformedToken, SessionTooLarge
from domain.expiry import Deadlines, ExpiryPolicy
from domain.session import Change, Session
from domain.token import Token
from domain.values import check_key, check_size, check_user_id, encode


def test_a_generated_token_is_43_url_safe_characters_of_256_bits() -> None:
    token = Token.generate(lambda n: bytes(range(n)))
    assert token.value == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
    assert len(token.value) == 43


def test_a_token_is_stored_by_its_sha256_digest() -> None:
    token = Token("A" * 43)
    assert token.digest == hashlib.sha256(b"A" * 43).digest()


def test_an_old_package_token_of_32_characters_is_accepted() -> None:
    assert Token.parse("abcdefghijklmnopqrstuvwxyz012345").value == "abcdefghijklmnopqrstuvwxyz012345"


@pytest.mark.parametrize(
    "presented", ["", "short", "x" * 65, "a" * 31, "a" * 42 + "=", "' OR 1=1 --" + "a" * 30, 42, None]
)
def test_anything_else_is_a_malformed_token(presented: object) -> None:
    with pytest.raises(MalformedToken):
        Token.parse(presented)


def test_a_token_never_shows_itself_in_repr_or_str() -> None:
    token = Token.generate()
    assert token.value not in repr(token)
    assert token.value not in str(token)
    assert token.value not in f"{token}"


def test_a_random_source_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="wanted 32"):
        Token.generate(lambda n: b"short")


def test_the_policy_opens_slides_and_caps() -> None:
    policy = ExpiryPolicy(idle_ttl=60, absolute_ttl=100)
    opened = policy.open(now=0)
    assert opened == Deadlines(idle=60, absolute=100)
    assert policy.slide(opened, now=50) == Deadlines(idle=100, absolute=100)
    assert policy.is_expired(opened, 60)
    assert not policy.is_expired(opened, 59.999)
    assert policy.slide(opened, now=60) == opened  # no revival


def test_touching_is_worth_a_write_only_after_a_meaningful_part_of_the_window() -> None:
    policy = ExpiryPolicy(idle_ttl=86400, absolute_ttl=10 * 86400)
    opened = policy.open(now=0)
    assert not policy.wants_touch(opened, now=30)
    assert policy.wants_touch(opened, now=61)


def test_keys_must_be_non_empty_strings_without_nul() -> None:
    assert check_key("userId") == "userId"
    for bad in ["", 1, None, "a\x00b", "x" * 257, "\ud800"]:
        with pytest.raises(InvalidKey):
            check_key(bad)


def test_values_must_be_json() -> None:
    assert encode({"a": [1, "é", None]}) == '{"a":[1,"é",null]}'
    for bad in [math.nan, math.inf, -math.inf, b"bytes", object(), {1, 2}, "\udc80"]:
        with pytest.raises(InvalidValue):
            encode(bad)


def test_values_may_nest_30_levels_and_no_deeper() -> None:
    deep: object = 1
    for _ in range(30):
        deep = [deep]
    encode(deep)
    with pytest.raises(InvalidValue, match="deeper"):
        encode([deep])


def test_size_is_measured_as_compact_utf8_json() -> None:
    check_size({"k": "é" * 10}, max_bytes=len('{"k":""}') + 20)
    with pytest.raises(SessionTooLarge):
        check_size({"k": "é" * 10}, max_bytes=len('{"k":""}') + 19)


def test_a_change_clears_then_deletes_then_sets() -> None:
    change = Change(sets={"b": "2", "c": '"x"'}, deletes=("a",), clear=False)
    assert change.apply({"a": 1, "b": 1}) == {"b": 2, "c": "x"}
    assert Change(clear=True, sets={"z": "null"}).apply({"a": 1}) == {"z": None}


def test_a_session_with_a_change_counts_the_write() -> None:
    policy = ExpiryPolicy(idle_ttl=10, absolute_ttl=100)
    session = Session(data={"a": 1}, created=0, deadlines=policy.open(0), last_seen=0)
    later = session.with_change(Change(sets={"b": "true"}), now=5, deadlines=policy.slide(session.deadlines, 5))
    assert (dict(later.data), later.version, later.last_seen, later.expires) == ({"a": 1, "b": True}, 1, 5, 15)
    assert dict(session.data) == {"a": 1}  # values, not mutation


def test_a_user_id_ending_with_a_space_is_refused() -> None:
    """MySQL's PAD SPACE collations would take 'alice ' for 'alice': one user's sessions for another's."""
    with pytest.raises(InvalidValue):
        check_user_id("alice ")
    assert check_user_id(" alice") == " alice"
