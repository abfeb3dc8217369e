"""The DDL files, with the configured table name put in, and the check that a table is ours.

The files are the top-level ``sql/mysql.sql`` and ``sql/sqlite.sql``, the one
copy in the repo; ``adapters/stores/sql`` is a symlink to that folder, so they
are package data of :mod:`adapters.stores` (see ``pyproject.toml``). They are
read through :mod:`importlib.resources`, which finds them the same way in a
checkout, an editable install and a wheel in site-packages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable

from adapters.stores.rows import ADDED_FOR_MAILBOX, COLUMNS, MAILBOX_SUFFIX
from application.errors import SchemaMissing

DEFAULT_TABLE = "socketio_session"
"""The table's name unless SESSION_TABLE says otherwise: the one place it is spelled."""

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
    return files("adapters.stores") / "sql" / f"{dialect}.sql"


def mailbox_table(table: str) -> str:
    """The mailbox table that goes with the sessions table ``table``."""
    return check_table_name(table) + MAILBOX_SUFFIX


def ddl(dialect: str, table: str = DEFAULT_TABLE) -> str:
    """The DDL for ``dialect`` ("mysql" or "sqlite") creating ``table`` and its mailbox."""
    return _read(ddl_path(dialect), table)


def drop_tables(table: str) -> str:
    """The statement that drops ``table`` and its mailbox (the mailbox first: it references the table)."""
    return f"DROP TABLE IF EXISTS `{mailbox_table(table)}`, `{check_table_name(table)}`"


def upgrade_ddl(dialect: str, table: str = DEFAULT_TABLE) -> str:
    """The DDL that adds the mailbox columns to a ``table`` made before them."""
    return _read(files("adapters.stores") / "sql" / f"{dialect}_upgrade_mailbox.sql", table)


def _read(resource: Traversable, table: str) -> str:
    try:
        text = resource.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        # Installed, the files always ship inside the package. In a checkout, `git clone` with
        # core.symlinks=false (Windows) writes the symlink as a small text file instead.
        raise FileNotFoundError(
            f"no DDL file {resource}: in a checkout adapters/stores/sql must be a symlink to ../../sql "
            "(git with core.symlinks=false makes it a plain file); otherwise reinstall socketio-token-session"
        ) from None
    return text.replace(DEFAULT_TABLE, check_table_name(table))


def statements(script: str) -> list[str]:
    """The statements of a DDL script (no semicolons inside strings in our files)."""
    without_comments = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in without_comments.split(";") if part.strip()]


def check_columns(where: str, present: Sequence[str], dialect: str) -> None:
    """:class:`SchemaMissing` unless ``present`` (an existing table's columns) holds all of ours; more are allowed.

    ``where`` names the table for the message ("table `t` in database `d`").
    The stores create a table only when it is missing, so pointing at
    ``migrate`` would send the user round in circles: the message says what
    differs and how to get out instead.
    """
    lowered = {name.lower() for name in present}  # both servers match column names without regard to case
    missing = [name for name in COLUMNS if name not in lowered]
    if not missing:
        return
    if set(missing) <= set(ADDED_FOR_MAILBOX):
        raise SchemaMissing(
            f"{where} was made by an earlier version, before the mailbox: it lacks the columns"
            f" {', '.join(missing)}. Upgrade it with `python -m entrypoints.cli migrate` (adds them and the"
            f" mailbox table; instant on MariaDB 10.3+ and MySQL 8.0.12+), or set SESSION_AUTO_MIGRATE=1."
        )
    differences = f"it lacks our columns {', '.join(missing)}"
    extra = [name for name in present if name.lower() not in COLUMNS]
    if extra:
        differences += f" and has columns we do not use: {', '.join(extra)}"
    raise SchemaMissing(
        f"{where} exists but is not a session table of ours: {differences}. Set SESSION_TABLE to a name not in use, "
        "or alter or drop that table by hand (`python -m entrypoints.cli schema` prints the DDL it should match; "
        f"the file is {ddl_path(dialect)})."
    )
