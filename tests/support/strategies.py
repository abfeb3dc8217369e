"""Hypothesis strategies for keys, JSON values and tokens."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from domain.values import JSON, MAX_KEY_CHARS, MAX_VALUE_DEPTH

# Characters that mean something to JSON paths, SQL or LIKE, plus a 4-byte emoji.
META = "$.\"'[]*\\%-😀"

# Text the stores must keep exactly: no NUL, no lone surrogates (check_key refuses those).
_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")

keys = st.one_of(
    st.text(alphabet=st.sampled_from(string.ascii_letters + META), min_size=1, max_size=12),
    st.text(alphabet=_chars, min_size=1, max_size=24),
).filter(lambda k: len(k) <= MAX_KEY_CHARS)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    # MySQL 8 keeps JSON numbers as int64/double: stay within what every store keeps exactly.
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(alphabet=_chars, max_size=30),
)


def _nest(depth: int, leaf: JSON) -> JSON:
    for level in range(depth):
        leaf = [leaf] if level % 2 else {"k": leaf}
    return leaf


json_values: st.SearchStrategy[JSON] = st.one_of(
    st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(alphabet=_chars, max_size=8), children, max_size=4),
        ),
        max_leaves=12,
    ),
    # Deep nesting up to the limit every store accepts (domain.values.MAX_VALUE_DEPTH).
    st.builds(_nest, st.integers(min_value=20, max_value=MAX_VALUE_DEPTH), scalars),
)

url_safe = string.ascii_letters + string.digits + "-_"

well_formed_tokens = st.text(alphabet=url_safe, min_size=32, max_size=64)

malformed_tokens = st.one_of(
    st.text(alphabet=url_safe, max_size=31).filter(bool),
    st.text(alphabet=url_safe, min_size=65, max_size=200),
    st.text(min_size=32, max_size=64).filter(lambda t: any(c not in url_safe for c in t)),
    st.integers(),
    st.floats(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.booleans(),
    st.just("' OR 1=1 -- "),
    st.just("x" * 10_000),
)
