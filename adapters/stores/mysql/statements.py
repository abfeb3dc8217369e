"""The MySQL store's SQL, built from one description of each row operation.

Every insert, write and touch is described once (:class:`NewRow`,
:class:`RowWrite`). Alone, a description becomes one statement
(:func:`single`); in a group-commit batch, the descriptions are merged into as
few statements as possible (:func:`batch`), since a batch of N single-row
statements costs MariaDB N parses and aiomysql N round trips to read in
pure Python. One transaction, each line its own round trip (never one
multi-statement text: connection.Connection.begin says why):

    BEGIN
    INSERT … VALUES (…), (…), …                        -- every new session
    UPDATE … SET data = CASE id WHEN … END, … WHERE id IN (…)    -- one per round
    SELECT GROUP_CONCAT(HEX(id), ':', version) …        -- what the UPDATEs matched
    COMMIT

A round holds at most one write per row, so every write keeps its own size
check and its own version, as if it ran alone at the batch's latest instant: a
row written k times in one batch appears in k rounds, in the order of the
calls.

Refusals are signalled by the statement itself, so that they are told apart
by error code (errors.py), never by message text: a key the server cannot
address makes the JSON function return NULL, which strict mode refuses for
the NOT NULL ``data`` column (1048); a session that would grow past its limit
overflows ``version`` on purpose (1690). Either way the statement writes
nothing, however many writers race; in a batch, the store then asks which
writes of the round were refused (:meth:`Batch.probe`, in the same
transaction, the rows still locked) and runs the round again without them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Sequence

from attrs import frozen

from adapters.stores.mysql.connection import Outcome
from adapters.stores.rows import COLUMNS, FIELDS
from domain.session import Change

# The `version` of a session grown past its limit: BIGINT UNSIGNED out of range, error 1690.
# Not a constant (it reads the column), so the server only evaluates it when that branch is taken.
_TOO_LARGE = "version + 1 + 18446744073709551615"
# One placeholder per column of a new row, the id unhexed.
_ROW_PLACEHOLDERS = "(UNHEX(%s), " + ", ".join(["%s"] * (len(COLUMNS) - 1)) + ")"
_ROW_COLUMNS = ", ".join(COLUMNS)


def hexkey(digest: bytes) -> str:
    """The digest as bound in SQL: hex, UNHEX()ed by the statement.

    aiomysql 0.3.2 with PyMySQL >= 1.2.3 cannot bind bytes parameters
    (docs/decisions.md, binary keys). tests/contract/test_store_contract.py
    (test_binary_digests_of_every_byte_value_are_distinct_keys) fails if this
    is replaced by raw bytes; tests/integration/test_mysql_store.py
    (test_raw_bytes_parameters_still_break_so_digests_are_bound_as_hex) says
    when upstream is fixed.
    """
    return digest.hex()


def json_path(key: str) -> str:
    """The JSON path of a top-level ``key``: ``$."key"``, the key written as a JSON string.

    Quoting makes keys holding ``$ . [ ] * ' %`` plain names; JSON string
    escaping covers ``"``, ``\\`` and control characters, which MariaDB
    otherwise rejects with error 4042 (syntax error in JSON path). MariaDB
    10.11 also rejects a quoted key that starts with ``-`` (it parses it as a
    negative array index), so a leading ``-`` is written as ``\\u002d``, which
    names the same member (docs/decisions.md, JSON paths).
    tests/contract/test_store_contract.py (test_keys_with_a_leading_dash_round_trip)
    fails if this is removed.
    """
    quoted = json.dumps(key, ensure_ascii=False)
    if key.startswith("-"):
        quoted = '"\\u002d' + quoted[2:]
    return "$." + quoted


@functools.cache
def _data_sql(clear: bool, deletes: int, sets: int, compact: bool) -> str:
    """The SQL expression of ``data`` after a change of this shape (a handful of shapes, built once)."""
    expression = "'{}'" if clear else "data"
    if deletes:
        expression = f"JSON_REMOVE({expression}, {', '.join(['%s'] * deletes)})"
    if sets:
        # JSON_EXTRACT(?, '$') turns the bound text into a JSON value on both MariaDB and
        # MySQL 8; MariaDB has no CAST(? AS JSON) (docs/decisions.md, JSON values).
        pairs = ", ".join(["%s, JSON_EXTRACT(%s, '$')"] * sets)
        expression = f"JSON_SET({expression}, {pairs})"
    # MariaDB re-spaces what its JSON functions return; compacting keeps the stored text,
    # and so the size limit, the same as the other stores' (docs/decisions.md, JSON size).
    return f"JSON_COMPACT({expression})" if compact else expression


def data_expression(change: Change, *, compact: bool) -> tuple[str, list[object]]:
    """The SQL expression of the ``data`` column after ``change``, and its parameters."""
    params: list[object] = [json_path(key) for key in change.deletes]
    for key, text in change.sets.items():
        params += (json_path(key), text)
    return _data_sql(change.clear, len(change.deletes), len(change.sets), compact), params


@frozen
class NewRow:
    """An INSERT of a new session: the hex id and the other columns' values, in ``rows.FIELDS`` order."""

    hexid: str
    values: tuple[object, ...]


@frozen
class RowWrite:
    """An UPDATE of one live row at ``now``: a change to ``data`` (or none: a touch), and a later idle deadline.

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
    def of(
        cls, hexid: str, change: Change, *, compact: bool, now: float, idle_deadline: float, max_bytes: int
    ) -> RowWrite:
        data_sql, params = data_expression(change, compact=compact)
        return cls(hexid, data_sql, params, now, idle_deadline, max_bytes)

    @classmethod
    def touch(cls, hexid: str, now: float, idle_deadline: float) -> RowWrite:
        """Only a later idle deadline: no data, so no size to check (the limit can never be reached)."""
        return cls(hexid, None, (), now, idle_deadline, max_bytes=2**62)


Payload = NewRow | RowWrite


def single(table: str, payload: Payload) -> tuple[str, list[object]]:
    """The one statement for ``payload`` when it goes out alone."""
    if isinstance(payload, NewRow):
        return f"INSERT INTO {table} ({_ROW_COLUMNS}) VALUES {_ROW_PLACEHOLDERS}", [payload.hexid, *payload.values]
    deadline = "last_seen = %s, expires = LEAST(GREATEST(expires, %s), absolute_expires)"
    where = "WHERE id = UNHEX(%s) AND expires > %s"
    tail: list[object] = [payload.now, payload.idle_deadline, payload.hexid, payload.now]
    if payload.data_sql is None:
        return f"UPDATE {table} SET {deadline} {where}", tail
    # Left to right: `data` takes its new value, then `version` checks that value's size.
    # LAST_INSERT_ID(expr) hands the new version back in the OK packet: no second round trip.
    return (
        f"UPDATE {table} SET data = {payload.data_sql},"
        f" version = IF(LENGTH(data) <= %s, LAST_INSERT_ID(version + 1), {_TOO_LARGE}), {deadline} {where}",
        [*payload.data_params, payload.max_bytes, *tail],
    )


def single_outcome(payload: Payload, outcome: Outcome) -> Outcome:
    """A lone statement's outcome as the store reads it (the same shape as :meth:`Batch.outcomes`)."""
    if isinstance(payload, RowWrite) and payload.data_sql is not None and not outcome.rowcount:
        return Outcome(0, [], None)  # no live row: LAST_INSERT_ID() was not set by this statement
    return outcome


Statement = tuple[str, list[object]]


@frozen
class Batch:
    """A group-commit batch of ``payloads`` (sorted by row): its statements, and each payload's outcome.

    Writes go in rounds, each naming a row at most once (:func:`batch`). A
    round refused by the server for some of its writes (too large, a key the
    server cannot address) is run again without them (:meth:`update` of the
    rest): :meth:`probe` tells which they are. :meth:`outcomes` reads the
    versions back, numbering each row's applied writes in call order.
    """

    table: str
    payloads: tuple[Payload, ...]
    rounds: tuple[tuple[int, ...], ...]  # indexes into payloads, one write per row each
    now: float  # one instant for the whole batch, its latest (see batch())

    @property
    def statements(self) -> list[Statement]:
        """Every statement, when nothing is refused: the insert, one UPDATE per round, the read-back."""
        found = [self.insert(), *(self.update(round_) for round_ in self.rounds), self.read_back()]
        return [statement for statement in found if statement is not None]

    def insert(self) -> Statement | None:
        """One INSERT of every new session of the batch, if any."""
        rows = [p for p in self.payloads if isinstance(p, NewRow)]
        if not rows:
            return None
        params: list[object] = [value for row in rows for value in (row.hexid, *row.values)]
        values = ", ".join([_ROW_PLACEHOLDERS] * len(rows))
        return f"INSERT INTO {self.table} ({_ROW_COLUMNS}) VALUES {values}", params

    def writes(self, indexes: Sequence[int]) -> list[RowWrite]:
        return [p for p in (self.payloads[i] for i in indexes) if isinstance(p, RowWrite)]

    def update(self, indexes: Sequence[int], *, collect: int | None = None) -> Statement:
        """One UPDATE of the writes ``indexes`` (a round, or part of one).

        With ``collect``, it also keeps what it matched on the connection, for
        :func:`collected` to read back: then a batch of one round needs no
        transaction (:attr:`one_statement`).
        """
        return _update(self.table, self.writes(indexes), self.now, collect)

    @property
    def one_statement(self) -> bool:
        """Whether the batch is one statement: inserts only, or one round of writes with no insert.

        Such a batch needs no transaction: one statement is atomic on its own.
        """
        inserts = any(isinstance(p, NewRow) for p in self.payloads)
        return (inserts and not self.rounds) or (not inserts and len(self.rounds) == 1)

    def probe(self, indexes: Sequence[int]) -> Statement:
        """What the data writes ``indexes`` would make of their rows: hex id and the new data's LENGTH (NULL:
        a key the server cannot address), for the live rows. Run in the batch's transaction, after a refusal."""
        writes = [w for w in self.writes(indexes) if w.data_sql is not None]
        params: list[object] = []
        for w in writes:
            params += [w.hexid, *w.data_params]
        ids = [w.hexid for w in writes]
        cases = " ".join(f"WHEN UNHEX(%s) THEN LENGTH({w.data_sql})" for w in writes)
        return (
            f"SELECT HEX(id), CASE id {cases} END FROM {self.table} FORCE INDEX (PRIMARY)"
            f" WHERE id IN ({', '.join(['UNHEX(%s)'] * len(ids))}) AND expires > %s",
            [*params, *ids, self.now],
        )

    def read_back(self) -> Statement | None:
        """The versions of the rows written (what the UPDATEs matched), if the batch writes any."""
        ids = sorted({w.hexid for w in self.writes(range(len(self.payloads)))})
        if not ids:
            return None
        return (
            f"SELECT GROUP_CONCAT(HEX(id), ':', version SEPARATOR ',') FROM {self.table} FORCE INDEX (PRIMARY)"
            f" WHERE id IN ({', '.join(['UNHEX(%s)'] * len(ids))}) AND expires > %s",
            [*ids, self.now],
        )

    def outcomes(self, read_back: Outcome | None, refused: Collection[int] = ()) -> list[Outcome | None]:
        """Each payload's outcome as if its statement had run alone; None for the ``refused`` ones."""
        versions = parse_versions(read_back.rows[0][0]) if read_back is not None else {}
        applied: dict[str, int] = {}  # data writes applied per row so far, in call order
        numbers: list[int] = []
        for i, payload in enumerate(self.payloads):
            if isinstance(payload, RowWrite) and payload.data_sql is not None and i not in refused:
                applied[payload.hexid] = applied.get(payload.hexid, 0) + 1
                numbers.append(applied[payload.hexid])
            else:
                numbers.append(0)
        found: list[Outcome | None] = []
        for i, payload in enumerate(self.payloads):
            if i in refused:
                found.append(None)
            elif isinstance(payload, NewRow):
                found.append(Outcome(1, [], None))  # an insert (a refused one fails the whole batch)
            elif (version := versions.get(payload.hexid.upper())) is None:
                found.append(Outcome(0, [], None))  # no live row
            elif not numbers[i]:
                found.append(Outcome(1, [], None))  # a touch: no version
            else:
                # The row's applied writes took versions version-count+1 … version, in call order.
                found.append(Outcome(1, [], version - applied[payload.hexid] + numbers[i]))
        return found


def batch(table: str, payloads: Sequence[Payload]) -> Batch:
    """The plan of a batch of ``payloads``, in their order (sorted by row)."""
    writes = [p for p in payloads if isinstance(p, RowWrite)]
    # One instant for the whole batch, its latest: it runs after every caller's `now`, so a
    # session that expired within the batch's spread is ended for all of its writes (never
    # revived by an earlier `now`), and a row is either matched by every round or by none,
    # which is what makes the versions read back exact.
    now = max((w.now for w in writes), default=0.0)
    return Batch(table, tuple(payloads), _rounds(payloads), now)


def _rounds(payloads: Sequence[Payload]) -> tuple[tuple[int, ...], ...]:
    """Split the writes into rounds with at most one write per row, keeping each row's order."""
    rounds: list[list[int]] = []
    slots: dict[str, int] = {}  # rounds each row is in so far
    for i, payload in enumerate(payloads):
        if not isinstance(payload, RowWrite):
            continue
        slot = slots.get(payload.hexid, 0)
        slots[payload.hexid] = slot + 1
        if slot == len(rounds):
            rounds.append([])
        rounds[slot].append(i)
    return tuple(tuple(round_) for round_ in rounds)


def _update(table: str, round_: list[RowWrite], now: float, collect: int | None = None) -> Statement:
    """One UPDATE for rows named at most once each, live at ``now``.

    Left to right as in :func:`single`: ``data`` takes its new value, then
    ``version`` checks the new size. Each row keeps its own idle deadline.

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
    last_seen = "%s"
    if collect is not None:
        # Each row matched appends `HEX(id):version` (its new version: assignments run left to
        # right) to @_ss_versions, which a SELECT on the same connection reads back (collected()).
        # @_ss_batch names the statement that wrote it, so a value left by an earlier one is never
        # read as this one's. The condition is never true: last_seen is set to now. Both assignments
        # sit in one sum, so both run for every row (MariaDB 10.11 skipped the second operand of
        # an OR here; tests/integration/test_mysql_store.py reads back what a batch matched).
        last_seen = (
            "IF(LENGTH(@_ss_versions := CONCAT_WS(',', IF(@_ss_batch <=> %s, @_ss_versions, NULL),"
            " CONCAT(HEX(id), ':', version))) + (@_ss_batch := %s) < 0, NULL, %s)"
        )
        params += [collect, collect]
    params += [now, *(w.hexid for w in round_), now]
    sql = (
        f"UPDATE {table} FORCE INDEX (PRIMARY) SET data = {data},"
        f" version = IF(LENGTH(data) <= {limit}, version + {bump}, {_TOO_LARGE}),"
        f" expires = LEAST(GREATEST(expires, {deadline}), absolute_expires),"
        f" last_seen = {last_seen}"
        f" WHERE id IN ({', '.join(['UNHEX(%s)'] * len(round_))}) AND expires > %s"
    )
    return sql, params


def collected(number: int) -> Statement:
    """What the UPDATE built with ``collect=number`` matched: the read-back's text, or NULL for nothing."""
    return "SELECT IF(@_ss_batch <=> %s, @_ss_versions, NULL)", [number]


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


def rotation(
    table: str,
    old: str,
    new: str,
    *,
    now: float,
    idle_deadline: float,
    max_bytes: int,
    change: Change,
    user_id: str | None,
    compact: bool,
) -> tuple[str, list[object]]:
    """One UPDATE moving a live session from ``old`` to ``new`` (hex ids), with its write and owner.

    The move, the write and the owner land together or not at all. A new owner
    starts from empty data and an empty mailbox: assignments run left to right,
    so ``data``, ``version`` and ``mail_waiting`` still see the old owner, and
    ``user_id`` is set last. The session's messages move with it (the foreign
    key cascades the new id to them).
    """
    assignments: list[str] = ["id = UNHEX(%s)"]
    params: list[object] = [new]
    changes = not change.empty
    if user_id is not None:
        other_owner = "user_id IS NOT NULL AND user_id <> %s"
        flushed, flushed_params = data_expression(
            Change(sets=change.sets, deletes=change.deletes, clear=True), compact=compact
        )
        kept, kept_params = data_expression(change, compact=compact) if changes else ("data", [])
        assignments += [
            f"data = IF({other_owner}, {flushed}, {kept})",
            f"version = IF(LENGTH(data) <= %s, version + IF({other_owner}, 1, %s), {_TOO_LARGE})",
            # The messages were the other owner's: mailbox.drop_for_new_owner deleted them just before.
            f"mail_waiting = IF({other_owner}, 0, mail_waiting)",
            "user_id = %s",
        ]
        params += [user_id, *flushed_params, *kept_params, max_bytes, user_id, int(changes), user_id, user_id]
    elif changes:
        expression, data_params = data_expression(change, compact=compact)
        assignments += [f"data = {expression}", f"version = IF(LENGTH(data) <= %s, version + 1, {_TOO_LARGE})"]
        params += [*data_params, max_bytes]
    assignments += ["last_seen = %s", "expires = LEAST(GREATEST(expires, %s), absolute_expires)"]
    params += [now, idle_deadline, old, now]
    return f"UPDATE {table} SET {', '.join(assignments)} WHERE id = UNHEX(%s) AND expires > %s", params


def select_one(table: str) -> str:
    return f"SELECT {FIELDS} FROM {table} WHERE id = UNHEX(%s)"


def select_many(table: str, count: int) -> str:
    return f"SELECT id, {FIELDS} FROM {table} WHERE id IN ({', '.join(['UNHEX(%s)'] * count)})"


def select_user(table: str) -> str:
    return f"SELECT id, {FIELDS} FROM {table} WHERE user_id = %s AND expires > %s ORDER BY created"


def delete_many(table: str, count: int) -> str:
    return f"DELETE FROM {table} WHERE id IN ({', '.join(['UNHEX(%s)'] * count)})"


def select_existing(table: str, count: int) -> str:
    """Which of ``count`` hex ids the table holds, as lower-case hex."""
    return f"SELECT LOWER(HEX(id)) FROM {table} WHERE id IN ({', '.join(['UNHEX(%s)'] * count)})"
