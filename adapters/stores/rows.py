"""How a session maps to a row, shared by the SQL stores: the one list of the table's columns."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from domain.expiry import Deadlines
from domain.mailbox import Message
from domain.session import Session
from domain.values import JSON

COLUMNS = (
    "id",
    "data",
    "version",
    "created",
    "last_seen",
    "expires",
    "absolute_expires",
    "user_id",
    "mail_last_id",
    "mail_waiting",
)
"""The table's columns in DDL order: the schema checks, the inserts and the import derive from it
(tests/unit/test_ddl.py checks the DDL files against it)."""

ADDED_FOR_MAILBOX = ("mail_last_id", "mail_waiting")
"""The columns a table made before the mailbox lacks; ``migrate`` adds them (sql/*_upgrade_mailbox.sql)."""

MAILBOX_SUFFIX = "_mailbox"
"""The mailbox table is named after the sessions table: ``<table>_mailbox``."""

MESSAGE_FIELDS = "id, event, payload, sent_at, expires"
"""The mailbox columns that make a :class:`domain.mailbox.Message`, in its field order."""

FIELDS = ", ".join(COLUMNS[1:])
"""The columns besides the id, in order: what :func:`session_from_row` reads and :func:`insert_values` gives."""


def encode_data(data: Mapping[str, JSON]) -> str:
    """The ``data`` column: the session as compact JSON."""
    return json.dumps(dict(data), ensure_ascii=False, separators=(",", ":"))


def session_from_row(row: Sequence[Any]) -> Session:
    """A session from the columns named in :data:`FIELDS`."""
    data, version, created, last_seen, expires, absolute, user_id, last_message, waiting = row
    return Session(
        data=json.loads(data),
        created=created,
        deadlines=Deadlines(idle=expires, absolute=absolute),
        last_seen=last_seen,
        version=version,
        user_id=user_id,
        last_message=last_message,
        waiting=waiting,
    )


def message_from_row(row: Sequence[Any]) -> Message:
    """A message from the columns named in :data:`MESSAGE_FIELDS`."""
    message_id, event, payload, sent_at, expires = row
    return Message(int(message_id), str(event), str(payload), float(sent_at), float(expires))


def insert_values(session: Session) -> tuple[object, ...]:
    """The values of :data:`FIELDS` for a new row, in order."""
    return (
        encode_data(session.data),
        session.version,
        session.created,
        session.last_seen,
        session.deadlines.expires,
        session.deadlines.absolute,
        session.user_id,
        session.last_message,
        session.waiting,
    )
