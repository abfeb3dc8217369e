"""One group-commit batch of the MySQL store as few statements as possible.

A batch of N single-row statements costs MariaDB N parses and aiomysql N
result packets to read in pure Python. So a batch is sent as

    BEGIN;
    INSERT … VALUES (…), (…), …;                       -- every new session
    UPDATE … SET data = CASE id WHEN … END, … WHERE id IN (…);   -- one per round
    SELECT GROUP_CONCAT(HEX(id), ':', version) …;       -- what the UPDATEs matched
    COMMIT

A round holds at most one write per row, so every write keeps its own size
check and its own version, as if it ran alone at the batch's latest instant
(see batch_sql): a row written k times in one batch appears in k rounds, in
the order of the calls. A refused
statement (too large, an unaddressable key, a duplicate id) rolls the whole
transaction back and GroupCommit runs each job alone, which gives each caller
its own answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen


@frozen
class NewRow:
    """An INSERT of a new session: the hex id and the other columns' values in ``COLUMNS`` order."""

    values: tuple[object, ...]

    COLUMNS = "id, data, version, created, last_seen, expires, absolute_expires, user_id"
    PLACEHOLDERS = "(UNHEX(%s), %s, %s, %s, %s, %s, %s, %s)"


@frozen
class RowWrite:
    """An UPDATE of one live row: a change to ``data`` (or none: a touch) and a later idle deadline.

    ``data_sql`` is the new ``data`` as an SQL expression over ``data`` with
    ``data_params``; None leaves the data and the version as they are.
    """

    hexid: str
    data_sql: str | None
    data_params: Sequence[object]
    now: float
    idle_deadline: float
    max_bytes: int

    @classmethod
    def touch(cls, hexid: str, now: float, idle_deadline: float) -> RowWrite:
        """Only a later idle deadline: no data, so no size to check (the limit can never be reached)."""
        return cls(hexid, None, (), now, idle_deadline, max_bytes=2**62)


Payload = NewRow | RowWrite


@frozen
class BatchSQL:
    """The batch as one statement text's parts, and how to read back what each write matched."""

    statements: list[tuple[str, list[object]]]
    # Per job: the number of its write among the writes to its row in this batch (1-based), and
    # how many writes that row has; (0, 0) for a touch or an insert.
    write_numbers: list[tuple[int, int]]
    checks_versions: bool  # the last statement is the GROUP_CONCAT read-back


def batch_sql(table: str, payloads: Sequence[Payload]) -> BatchSQL:
    """The statements of a batch whose jobs carry ``payloads``, in the jobs' order (sorted by row)."""
    statements: list[tuple[str, list[object]]] = []
    rows = [p for p in payloads if isinstance(p, NewRow)]
    if rows:
        params: list[object] = [value for row in rows for value in row.values]
        statements.append(
            (
                f"INSERT INTO {table} ({NewRow.COLUMNS}) VALUES {', '.join([NewRow.PLACEHOLDERS] * len(rows))}",
                params,
            )
        )
    writes = [p for p in payloads if isinstance(p, RowWrite)]
    if not writes:
        return BatchSQL(statements, [(0, 0)] * len(payloads), False)
    # One instant for the whole batch, its latest: it runs after every caller's `now`, so a
    # session that expired within the batch's spread is ended for all of its writes (never
    # revived by an earlier `now`), and a row is either matched by every round or by none,
    # which is what makes the versions read back below exact.
    now = max(w.now for w in writes)
    rounds, numbers = _rounds(payloads)
    for round_ in rounds:
        statements.append(_update(table, round_, now))
    ids = sorted({w.hexid for w in writes})
    statements.append(
        (
            f"SELECT GROUP_CONCAT(HEX(id), ':', version SEPARATOR ',') FROM {table} FORCE INDEX (PRIMARY)"
            f" WHERE id IN ({', '.join(['UNHEX(%s)'] * len(ids))}) AND expires > %s",
            [*ids, now],
        )
    )
    return BatchSQL(statements, numbers, True)


def _rounds(payloads: Sequence[Payload]) -> tuple[list[list[RowWrite]], list[tuple[int, int]]]:
    """Split the writes into rounds with at most one statement per row, keeping each row's order.

    Also numbers each data write among its row's data writes (touches bump no version).
    """
    rounds: list[list[RowWrite]] = []
    slots: dict[str, int] = {}  # rounds each row is in so far
    counted: dict[str, int] = {}  # data writes each row has so far
    numbered: list[tuple[str, int] | None] = []
    for payload in payloads:
        if not isinstance(payload, RowWrite):
            numbered.append(None)
            continue
        slot = slots.get(payload.hexid, 0)
        slots[payload.hexid] = slot + 1
        if slot == len(rounds):
            rounds.append([])
        rounds[slot].append(payload)
        if payload.data_sql is None:
            numbered.append(None)
        else:
            counted[payload.hexid] = counted.get(payload.hexid, 0) + 1
            numbered.append((payload.hexid, counted[payload.hexid]))
    numbers = [(0, 0) if n is None else (n[1], counted[n[0]]) for n in numbered]
    return rounds, numbers


def _update(table: str, round_: list[RowWrite], now: float) -> tuple[str, list[object]]:
    """One UPDATE for rows named at most once each, live at ``now``.

    Left to right as in MySQLStore.write: ``data`` takes its new value, then
    ``version`` checks the new size (NULL, refused by strict mode, when too
    big). Each row keeps its own idle deadline.

    FORCE INDEX (PRIMARY): without it MariaDB 10.11 may scan the whole primary
    index (small tables) or walk the ``expires`` index (many expired rows) for
    ``id IN (…) AND expires > …``, locking rows the batch never writes and in no
    key order, so two processes' batches deadlocked (1213) or waited (1205) on
    each other. tests/integration/test_mysql_store.py checks the plan.
    """
    writes = [w for w in round_ if w.data_sql is not None]
    params: list[object] = []
    data = "data"
    if writes:
        data = "CASE id " + " ".join(f"WHEN UNHEX(%s) THEN {w.data_sql}" for w in writes) + " ELSE data END"
        for w in writes:
            params += [w.hexid, *w.data_params]
    limits = {w.max_bytes for w in round_}
    if len(limits) == 1:
        limit = "%s"
        params.append(limits.pop())
    else:
        limit = "CASE id " + " ".join(["WHEN UNHEX(%s) THEN %s"] * len(round_)) + " END"
        for w in round_:
            params += [w.hexid, w.max_bytes]
    bump = "0"
    if writes:
        bump = "CASE id " + " ".join(["WHEN UNHEX(%s) THEN 1"] * len(writes)) + " ELSE 0 END"
        params += [w.hexid for w in writes]
    deadline = "CASE id " + " ".join(["WHEN UNHEX(%s) THEN %s"] * len(round_)) + " END"
    for w in round_:
        params += [w.hexid, w.idle_deadline]
    params += [now, *(w.hexid for w in round_), now]
    sql = (
        f"UPDATE {table} FORCE INDEX (PRIMARY) SET data = {data},"
        f" version = IF(LENGTH(data) <= {limit}, version + {bump}, NULL),"
        f" expires = LEAST(GREATEST(expires, {deadline}), absolute_expires),"
        " last_seen = %s"
        f" WHERE id IN ({', '.join(['UNHEX(%s)'] * len(round_))}) AND expires > %s"
    )
    return sql, params


def parse_versions(text: str | bytes | None) -> dict[str, int]:
    """The GROUP_CONCAT read-back: hex id (upper case) → version, for the live rows written."""
    if not text:
        return {}
    if isinstance(text, bytes):
        text = text.decode("ascii")
    found: dict[str, int] = {}
    for item in text.split(","):
        hexid, _, version = item.partition(":")
        found[hexid] = int(version)
    return found
