"""The MySQL store's mailbox SQL: each operation one transaction, the session row locked first.

Every change to a session's messages locks its session row before touching the
mailbox table and sets ``mail_waiting`` in the same transaction, so the count a
handshake reads with the session is exact (tests/contract/test_store_contract.py
races sends and acks to check it). The foreign key (sql/mysql.sql) deletes the
messages with their session and moves them when its id changes on rotation.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.stores.rows import MESSAGE_FIELDS

Statement = tuple[str, list[object]]

# `mail_waiting` of a full mailbox: BIGINT UNSIGNED out of range, error 1690 (as statements._TOO_LARGE).
# Only reached when mail_waiting >= max_messages >= 1, so the sum always overflows.
_FULL = "mail_waiting + 18446744073709551615"


def _ids(count: int) -> str:
    return ", ".join(["UNHEX(%s)"] * count)


def send(
    table: str,
    mailbox: str,
    hexids: Sequence[str],
    event: str,
    payload: str,
    *,
    now: float,
    expires: float,
    max_messages: int,
) -> list[Statement]:
    """Queue one message for each live session of ``hexids``; the last statement reads back the ids given.

    The UPDATE locks the live rows (in key order: FORCE INDEX (PRIMARY), as the
    group-commit batches do) and numbers the message per session; the INSERT
    reads the same rows back (a row can neither become live nor appear under
    these ids meanwhile) and files one message per session under its new
    ``mail_last_id``. A full mailbox fails the UPDATE, and so the whole
    transaction: nothing is queued anywhere.
    """
    ids = _ids(len(hexids))
    where = f"FROM {table} FORCE INDEX (PRIMARY) WHERE id IN ({ids}) AND expires > %s"
    return [
        (
            f"UPDATE {table} FORCE INDEX (PRIMARY) SET mail_last_id = mail_last_id + 1,"
            f" mail_waiting = IF(mail_waiting < %s, mail_waiting + 1, {_FULL}) WHERE id IN ({ids}) AND expires > %s",
            [max_messages, *hexids, now],
        ),
        (
            f"INSERT INTO {mailbox} (session, {MESSAGE_FIELDS}) SELECT id, mail_last_id, %s, %s, %s, %s {where}",
            [event, payload, now, expires, *hexids, now],
        ),
        (f"SELECT LOWER(HEX(id)), mail_last_id {where}", [*hexids, now]),
    ]


def pending(mailbox: str) -> str:
    """Messages of one session after an id, unexpired, oldest first, at most a page."""
    return (
        f"SELECT {MESSAGE_FIELDS} FROM {mailbox}"
        " WHERE session = UNHEX(%s) AND id > %s AND expires > %s ORDER BY id LIMIT %s"
    )


def remove(table: str, mailbox: str, hexid: str, ids: Sequence[int]) -> list[Statement]:
    """Delete messages ``ids`` of one session and recount its ``mail_waiting``; the middle one says how many went.

    The count is taken after the DELETE with the session row locked, so it is
    exact whatever raced before, and a count gone wrong would mend itself here.
    """
    return [
        (f"SELECT 1 FROM {table} WHERE id = UNHEX(%s) FOR UPDATE", [hexid]),
        (
            f"DELETE FROM {mailbox} WHERE session = UNHEX(%s) AND id IN ({', '.join(['%s'] * len(ids))})",
            [hexid, *ids],
        ),
        (
            f"UPDATE {table} SET mail_waiting = (SELECT COUNT(*) FROM {mailbox} WHERE session = UNHEX(%s))"
            " WHERE id = UNHEX(%s)",
            [hexid, hexid],
        ),
    ]


def expired_sessions(mailbox: str) -> str:
    """Up to a batch of sessions holding messages past their deadline."""
    return f"SELECT DISTINCT LOWER(HEX(session)) FROM {mailbox} WHERE expires <= %s LIMIT %s"


def drop_expired(table: str, mailbox: str, hexids: Sequence[str], now: float) -> list[Statement]:
    """Delete the expired messages of these sessions and recount each one's ``mail_waiting``."""
    ids = _ids(len(hexids))
    return [
        (f"SELECT 1 FROM {table} FORCE INDEX (PRIMARY) WHERE id IN ({ids}) ORDER BY id FOR UPDATE", [*hexids]),
        (f"DELETE FROM {mailbox} WHERE session IN ({ids}) AND expires <= %s", [*hexids, now]),
        (
            f"UPDATE {table} FORCE INDEX (PRIMARY)"
            f" SET mail_waiting = (SELECT COUNT(*) FROM {mailbox} m WHERE m.session = {table}.id) WHERE id IN ({ids})",
            [*hexids],
        ),
    ]


def drop_for_new_owner(table: str, mailbox: str, hexid: str, user_id: str, now: float) -> list[Statement]:
    """Before a login rotation: lock the row, and delete its messages if another user owns it (they were theirs)."""
    return [
        (f"SELECT 1 FROM {table} WHERE id = UNHEX(%s) FOR UPDATE", [hexid]),
        (
            f"DELETE FROM {mailbox} WHERE session = UNHEX(%s) AND EXISTS (SELECT 1 FROM {table} WHERE id = UNHEX(%s)"
            " AND expires > %s AND user_id IS NOT NULL AND user_id <> %s)",
            [hexid, hexid, now, user_id],
        ),
    ]
