"""How a group-commit batch is cut into statements (adapters/stores/mysql/statements.py)."""

from __future__ import annotations

from adapters.stores.mysql.connection import Outcome
from adapters.stores.mysql.statements import NewRow, RowWrite, batch, parse_versions


def write(hexid: str, data: bool = True, max_bytes: int = 100) -> RowWrite:
    if not data:
        return RowWrite.touch(hexid, 1.0, 2.0)
    return RowWrite(hexid, "JSON_SET(data, %s, %s)", ("$.a", "1"), 1.0, 2.0, max_bytes)


def versions(text: str) -> Outcome:
    return Outcome(1, [(text,)], None)


def test_a_row_written_twice_goes_in_two_rounds_and_its_writes_are_numbered_in_call_order() -> None:
    plan = batch("t", [write("aa"), write("aa"), write("bb"), write("aa", data=False), write("aa")])
    kinds = [sql.split()[0] for sql, _ in plan.statements]
    assert kinds == ["UPDATE"] * 4 + ["SELECT"]  # aa is in four rounds (three writes and a touch)
    assert plan.rounds == ((0, 2), (1,), (3,), (4,))
    found = [o.last_id if o else None for o in plan.outcomes(versions("AA:13,BB:7"))]
    assert found == [11, 12, 7, None, 13]


def test_a_refused_write_takes_no_version_and_the_row_s_later_writes_keep_their_order() -> None:
    plan = batch("t", [write("aa"), write("aa"), write("bb"), write("aa")])
    outcomes = plan.outcomes(versions("AA:12,BB:7"), refused={1})
    assert outcomes[1] is None
    assert [o.last_id if o else None for o in outcomes] == [11, None, 7, 12]


def test_a_round_without_its_refused_writes_names_only_the_rest() -> None:
    plan = batch("t", [write("aa"), write("bb"), write("cc")])
    sql, params = plan.update((0, 2))
    assert sql.count("%s") == len(params)
    assert "bb" not in params
    assert {"aa", "cc"} <= set(params)
    probe, probe_params = plan.probe((0, 1, 2))
    assert probe.startswith("SELECT HEX(id), CASE id WHEN UNHEX(%s) THEN LENGTH(JSON_SET(data, %s, %s))")
    assert probe.count("%s") == len(probe_params)


def test_inserts_share_one_statement_and_read_nothing_back() -> None:
    rows = [NewRow(h, ("{}", 0, 1.0, 1.0, 2.0, 3.0, None)) for h in ("aa", "bb", "cc")]
    plan = batch("t", rows)
    assert [sql.split()[0] for sql, _ in plan.statements] == ["INSERT"]
    assert len(plan.statements[0][1]) == 3 * 8
    assert plan.read_back() is None
    assert plan.outcomes(None) == [Outcome(1, [], None)] * 3


def test_one_round_with_different_size_limits_checks_each_row_against_its_own() -> None:
    sql, params = batch("t", [write("aa", max_bytes=10), write("bb", max_bytes=20)]).statements[0]
    assert "LENGTH(data) <= CASE id WHEN UNHEX(%s) THEN %s WHEN UNHEX(%s) THEN %s END" in sql
    assert sql.count("%s") == len(params)


def test_the_read_back_maps_upper_case_hex_ids_to_versions() -> None:
    assert parse_versions(b"AA:3,BB:1") == {"AA": 3, "BB": 1}
    assert parse_versions(None) == {}
