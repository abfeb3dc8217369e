"""How a session maps to a row, shared by the SQL stores."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import evolve

from domain.expiry import Deadlines
from domain.session import Change, Session
from domain.values import JSON, check_size

FIELDS = "data, version, created, last_seen, expires, absolute_expires, user_id"
"""The columns :func:`session_from_row` reads, in its order."""


def encode_data(data: Mapping[str, JSON]) -> str:
    """The ``data`` column: the session as compact JSON."""
    return json.dumps(dict(data), ensure_ascii=False, separators=(",", ":"))


def session_from_row(row: Sequence[Any]) -> Session:
    """A session from the columns named in :data:`FIELDS`."""
    data, version, created, last_seen, expires, absolute, user_id = row
    return Session(
        data=json.loads(data),
        created=created,
        deadlines=Deadlines(idle=expires, absolute=absolute),
        last_seen=last_seen,
        version=version,
        user_id=user_id,
    )


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
    )


def moved_session(
    session: Session, now: float, idle_deadline: float, max_bytes: int, change: Change | None, user_id: str | None
) -> Session:
    """``session`` after a rename at ``now``: touched, ``change`` written, ``user_id`` recorded.

    A new owner (``user_id`` differs from one already recorded) gets the
    session cleared before ``change`` applies. For the stores that compute it
    in Python; raises SessionTooLarge.
    """
    deadlines = session.deadlines.extended(idle_deadline)
    if user_id is not None and session.user_id not in (None, user_id):
        change = evolve(change or Change(), clear=True)
    if change is not None and (change.sets or change.deletes or change.clear):
        session = session.with_change(change, now, deadlines)
        check_size(session.data, max_bytes)
    session = evolve(session, deadlines=deadlines, last_seen=now)
    return session if user_id is None else evolve(session, user_id=user_id)
