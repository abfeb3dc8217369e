"""Invariants of tokens and expiry, stated in words and checked by Hypothesis."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from domain.errors import MalformedToken
from domain.expiry import ExpiryPolicy
from domain.token import Token
from tests.support.strategies import malformed_tokens, well_formed_tokens

policies = st.builds(
    ExpiryPolicy,
    idle_ttl=st.floats(min_value=1, max_value=1e6),
    absolute_ttl=st.floats(min_value=1, max_value=1e7),
)
steps = st.lists(st.floats(min_value=0, max_value=1e5), max_size=30)


@given(st.integers(min_value=2, max_value=200))
def test_generated_tokens_are_unique_well_formed_and_256_bit(count: int) -> None:
    tokens = [Token.generate() for _ in range(count)]
    assert len({t.value for t in tokens}) == count
    for token in tokens:
        assert Token.parse(token.value) == token
        assert len(base64.urlsafe_b64decode(token.value + "=")) == 32


@given(st.lists(well_formed_tokens, min_size=2, max_size=50, unique=True))
def test_distinct_tokens_have_distinct_32_byte_digests(values: list[str]) -> None:
    digests = [Token(v).digest for v in values]
    assert len(set(digests)) == len(values)
    assert all(len(d) == 32 for d in digests)


@given(malformed_tokens)
def test_a_malformed_token_is_always_refused(presented: object) -> None:
    try:
        Token.parse(presented)
    except MalformedToken:
        return
    raise AssertionError(f"accepted {presented!r}")


@given(policies, st.floats(min_value=0, max_value=2e9), steps)
def test_expiry_never_passes_the_absolute_limit(policy: ExpiryPolicy, start: float, gaps: list[float]) -> None:
    deadlines = policy.open(start)
    now = start
    for gap in gaps:
        now += gap
        deadlines = policy.slide(deadlines, now)
        assert deadlines.expires <= start + policy.absolute_ttl
        assert deadlines.absolute == start + policy.absolute_ttl


@given(policies, st.floats(min_value=0, max_value=2e9), steps)
def test_sliding_extends_but_never_revives(policy: ExpiryPolicy, start: float, gaps: list[float]) -> None:
    deadlines = policy.open(start)
    now = start
    for gap in gaps:
        now += gap
        slid = policy.slide(deadlines, now)
        if policy.is_expired(deadlines, now):
            assert slid == deadlines  # over is over
            assert policy.is_expired(slid, now)
        else:
            assert slid.expires >= deadlines.expires  # never moved back
        deadlines = slid


anonymous_policies = st.builds(
    ExpiryPolicy,
    idle_ttl=st.floats(min_value=2, max_value=1e6),
    absolute_ttl=st.floats(min_value=1e6, max_value=1e7),
    anon_ttl=st.floats(min_value=1, max_value=1e6),
)


@given(anonymous_policies, st.floats(min_value=0, max_value=2e9), steps)
def test_a_session_nobody_writes_idles_out_after_the_anonymous_ttl(
    policy: ExpiryPolicy, start: float, gaps: list[float]
) -> None:
    """Resumes alone never give a session more than the anonymous idle window, however often they come."""
    assert policy.anon_ttl is not None
    window = min(policy.anon_ttl, policy.idle_ttl)
    deadlines = policy.open(start)
    assert deadlines.idle == start + window
    now = start
    for gap in gaps:
        now += gap
        deadlines = policy.slide(deadlines, now, anonymous=True)
        assert deadlines.idle <= max(now, start) + window


@given(anonymous_policies, st.floats(min_value=0, max_value=2e9), st.floats(min_value=0, max_value=1))
def test_the_first_write_earns_the_normal_idle_ttl(policy: ExpiryPolicy, start: float, fraction: float) -> None:
    """A write while the anonymous window is open extends the session to the full idle TTL from then."""
    assert policy.anon_ttl is not None
    deadlines = policy.open(start)
    now = start + fraction * (deadlines.idle - start) * 0.99
    written = policy.slide(deadlines, now)
    assert written.idle == min(now + policy.idle_ttl, written.absolute)
