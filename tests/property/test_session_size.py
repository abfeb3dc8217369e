"""The size a write is checked against before it reaches the store (domain/session.py, Change.size_after)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.session import Change
from domain.values import JSON, encode, encoded_size
from tests.support.strategies import json_values, keys

datas = st.dictionaries(keys, json_values, max_size=6)
changes = st.builds(
    Change,
    sets=st.dictionaries(keys, json_values.map(encode), max_size=4),
    deletes=st.lists(keys, max_size=3).map(tuple),
    clear=st.booleans(),
)


@given(datas, changes)
def test_the_size_a_write_predicts_is_the_size_it_makes(data: dict[str, JSON], change: Change) -> None:
    """Counting only the members a write replaces or drops gives the size of the whole session after it."""
    assert change.size_after(data, encoded_size(data)) == encoded_size(change.apply(data))


@given(datas, changes)
def test_the_prediction_depends_on_the_change_not_on_the_order_of_keys(data: dict[str, JSON], change: Change) -> None:
    reordered = dict(reversed(list(data.items())))
    size = encoded_size(data)
    assert change.size_after(reordered, size) == change.size_after(data, size)


@given(datas, changes)
def test_no_write_grows_a_session_by_more_than_its_bound(data: dict[str, JSON], change: Change) -> None:
    """The cheap bound a handle keeps instead of measuring: never below the size a write makes."""
    assert encoded_size(change.apply(data)) <= encoded_size(data) + change.growth_bound()
