"""The DDL files and the check that a table is ours, shared by the MySQL and SQLite stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.stores.ddl import check_columns, ddl, ddl_path
from adapters.stores.rows import COLUMNS
from application.errors import SchemaMissing
from tests.support.server import REPO


@pytest.mark.parametrize("dialect", ["mysql", "sqlite"])
def test_the_ddl_is_read_from_the_top_level_sql_folder_through_adapters_stores(dialect: str) -> None:
    path = Path(str(ddl_path(dialect)))
    assert path == REPO / "adapters" / "stores" / "sql" / f"{dialect}.sql"
    # One copy in the repo: adapters/stores/sql is a relative symlink to the top-level sql/.
    assert (REPO / "adapters" / "stores" / "sql").readlink() == Path("../../sql")
    assert path.resolve() == REPO / "sql" / f"{dialect}.sql"
    assert "CREATE TABLE IF NOT EXISTS" in ddl(dialect, "other_name")
    assert "socketio_session" not in ddl(dialect, "other_name")


def test_there_is_no_top_level_sql_package_any_more() -> None:
    assert not (REPO / "sql" / "__init__.py").exists()


@pytest.mark.parametrize(
    "present", [list(COLUMNS), [name.upper() for name in reversed(COLUMNS)], [*COLUMNS, "note"]], ids=str
)
def test_a_table_with_all_our_columns_passes_whatever_their_case_order_or_company(present: list[str]) -> None:
    check_columns("table `t`", present, "mysql")


def test_a_table_that_is_not_ours_is_named_with_what_it_lacks_and_what_it_has_besides() -> None:
    with pytest.raises(SchemaMissing) as raised:
        check_columns("table `t` in SQLite file x.db", ["ID", "Data", "payload", "expires", "Extra2"], "sqlite")
    assert str(raised.value) == (
        "table `t` in SQLite file x.db exists but is not a session table of ours: it lacks our columns version,"
        " created, last_seen, absolute_expires, user_id, mail_last_id, mail_waiting and has columns we do not use:"
        " payload, Extra2. Set"
        " SESSION_TABLE to a name not in use, or alter or drop that table by hand (`python -m entrypoints.cli"
        f" schema` prints the DDL it should match; the file is {ddl_path('sqlite')})."
    )


def test_a_table_lacking_columns_and_holding_no_others_says_only_what_it_lacks() -> None:
    with pytest.raises(SchemaMissing) as raised:
        check_columns("table `t`", ["id", "data", "expires", "user_id"], "mysql")
    message = str(raised.value)
    assert "lacks our columns version, created, last_seen, absolute_expires, mail_last_id, mail_waiting. Set" in message
    assert "columns we do not use" not in message
    assert message.endswith(f"the file is {ddl_path('mysql')}).")
