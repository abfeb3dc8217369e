"""The DDL files in ``sql/``, with the configured table name put in."""

from __future__ import annotations

import re
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
DEFAULT_TABLE = "socketio_session"
COLUMNS = ("id", "data", "version", "created", "last_seen", "expires", "absolute_expires", "user_id")

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def check_table_name(table: str) -> str:
    """``table`` if it is a plain identifier; names are spliced into SQL, so nothing else is allowed."""
    if _TABLE_NAME.fullmatch(table) is None:
        raise ValueError(f"table name {table!r} must match {_TABLE_NAME.pattern}")
    return table


def ddl_path(dialect: str) -> Path:
    return SQL_DIR / f"{dialect}.sql"


def ddl(dialect: str, table: str = DEFAULT_TABLE) -> str:
    """The DDL for ``dialect`` ("mysql" or "sqlite") creating ``table``."""
    text = ddl_path(dialect).read_text(encoding="utf-8")
    return text.replace(DEFAULT_TABLE, check_table_name(table))


def statements(script: str) -> list[str]:
    """The statements of a DDL script (no semicolons inside strings in our files)."""
    without_comments = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in without_comments.split(";") if part.strip()]
