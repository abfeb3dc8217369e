"""The DDL files in ``sql/``, with the configured table name put in.

``sql/`` is a package of data files (see ``pyproject.toml``), read through
:mod:`importlib.resources` so that the same code finds them in a checkout, an
editable install and a wheel in site-packages.
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable

DDL_PACKAGE = "sql"
DEFAULT_TABLE = "socketio_session"
COLUMNS = ("id", "data", "version", "created", "last_seen", "expires", "absolute_expires", "user_id")

# At most 56 characters: the DDL names indexes `<table>_expires` and `<table>_user_id`, and MySQL
# allows 64 characters per identifier.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,55}")


def check_table_name(table: str) -> str:
    """``table`` if it is a plain identifier; names are spliced into SQL, so nothing else is allowed."""
    if _TABLE_NAME.fullmatch(table) is None:
        raise ValueError(f"table name {table!r} must match {_TABLE_NAME.pattern}")
    return table


def ddl_path(dialect: str) -> Traversable:
    """The DDL file of ``dialect``; printed, the full path of ``.../sql/<dialect>.sql`` that users can open."""
    return files(DDL_PACKAGE) / f"{dialect}.sql"


def ddl(dialect: str, table: str = DEFAULT_TABLE) -> str:
    """The DDL for ``dialect`` ("mysql" or "sqlite") creating ``table``."""
    resource = ddl_path(dialect)
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        # Our files always ship with the package, so the likely cause is another distribution's
        # top-level `sql` (python-sql's) imported in place of ours: say so instead of a bare path.
        raise FileNotFoundError(
            f"no DDL file {resource}: if that `{DDL_PACKAGE}` package belongs to another distribution "
            "(python-sql has one), install socketio-token-session into an environment of its own"
        ) from None
    return text.replace(DEFAULT_TABLE, check_table_name(table))


def statements(script: str) -> list[str]:
    """The statements of a DDL script (no semicolons inside strings in our files)."""
    without_comments = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in without_comments.split(";") if part.strip()]
