"""A session: the data a client's token unlocks, and when it ends."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType

from attrs import evolve, field, frozen

from domain.expiry import Deadlines
from domain.values import JSON, check_size, encode


def _freeze(data: Mapping[str, JSON]) -> Mapping[str, JSON]:
    # A read-only view is kept as it is: every one we make wraps a dict of its own.
    return data if isinstance(data, MappingProxyType) else MappingProxyType(dict(data))


@frozen
class Change:
    """One write to a session: clear it (optionally), drop keys, then set keys.

    Values arrive already encoded as JSON text, so every store applies the
    same bytes and the size check sees what will be stored.
    """

    sets: Mapping[str, str] = field(factory=dict, converter=_freeze)
    deletes: tuple[str, ...] = ()
    clear: bool = False

    @property
    def empty(self) -> bool:
        """Writes nothing: no key set or deleted, no clearing."""
        return not (self.sets or self.deletes or self.clear)

    def apply(self, data: Mapping[str, JSON]) -> dict[str, JSON]:
        """``data`` with this change applied."""
        result: dict[str, JSON] = {} if self.clear else dict(data)
        for key in self.deletes:
            result.pop(key, None)
        for key, text in self.sets.items():
            result[key] = json.loads(text)
        return result

    def growth_bound(self) -> int:
        """At most how many bytes this change can add to a session's compact JSON, whatever it holds.

        A key's JSON string is at most 6 bytes per UTF-8 byte (``\\u00XX``) and
        its quotes; its value text is exact; a colon and a comma join them.
        """
        return sum(6 * len(key.encode("utf-8")) + 4 + len(text.encode("utf-8")) for key, text in self.sets.items())

    def size_after(self, data: Mapping[str, JSON], size: int) -> int:
        """``encoded_size(self.apply(data))``, given ``size == encoded_size(data)``, without encoding ``data`` again.

        Only the members this change replaces or drops are encoded (compact
        JSON is ``{`` members joined by ``,`` then ``}``), so checking a small
        write against a large session costs what the write costs.

        >>> Change(sets={"b": "22"}, deletes=("a",)).size_after({"a": 1}, size=len('{"a":1}'))
        8
        """
        members = 0 if self.clear else len(data)
        total = 0 if self.clear else size - 2 - max(members - 1, 0)  # the members' bytes alone
        gone = {key for key in (*self.deletes, *self.sets) if not self.clear and key in data}
        for key in gone:
            total -= _member_size(key, encode(data[key]))
            members -= 1
        for key, text in self.sets.items():
            total += _member_size(key, text)
            members += 1
        return total + 2 + max(members - 1, 0)


def _member_size(key: str, text: str) -> int:
    """Bytes of ``"key":text`` in compact UTF-8 JSON."""
    return len(json.dumps(key, ensure_ascii=False).encode("utf-8")) + 1 + len(text.encode("utf-8"))


@frozen
class Session:
    """What the store holds for one token (keyed by the token's digest).

    ``version`` counts the writes the session has seen; ``user_id`` is the
    owner the application recorded on login, if any. ``last_message`` is the id
    of the newest message ever sent to its mailbox and ``waiting`` how many
    messages the mailbox holds (domain/mailbox.py): kept on the session so that
    a handshake knows without another query whether there is anything to replay.
    """

    data: Mapping[str, JSON] = field(converter=_freeze)
    created: float
    deadlines: Deadlines
    last_seen: float
    version: int = 0
    user_id: str | None = None
    last_message: int = 0
    waiting: int = 0

    @property
    def expires(self) -> float:
        return self.deadlines.expires

    @property
    def anonymous(self) -> bool:
        """Never written: no key was ever set and no owner recorded (see ExpiryPolicy.anon_ttl)."""
        return self.version == 0 and self.user_id is None

    def live_at(self, now: float) -> bool:
        return self.deadlines.live_at(now)

    def with_change(self, change: Change, now: float, deadlines: Deadlines, version: int | None = None) -> Session:
        """This session after ``change`` was written at ``now`` (as write number ``version``)."""
        return evolve(
            self,
            data=MappingProxyType(change.apply(self.data)),
            version=self.version + 1 if version is None else version,
            deadlines=deadlines,
            last_seen=now,
        )

    # How a stored session changes: the stores that keep sessions as Python values (memory,
    # SQLite) apply these; the MySQL store says the same in SQL (adapters/stores/mysql/statements.py),
    # and tests/contract/test_store_contract.py holds every store to it.

    def touched(self, now: float, idle_deadline: float) -> Session:
        """Seen at ``now``: the idle deadline moved out to ``idle_deadline`` (never back, never past the absolute)."""
        return evolve(self, deadlines=self.deadlines.extended(idle_deadline), last_seen=now)

    def written(self, change: Change, now: float, idle_deadline: float, max_bytes: int) -> Session:
        """``change`` written at ``now``: one more version, touched; :class:`SessionTooLarge` past ``max_bytes``."""
        updated = self.with_change(change, now, self.deadlines.extended(idle_deadline))
        check_size(updated.data, max_bytes)
        return updated

    def moved(
        self, now: float, idle_deadline: float, max_bytes: int, change: Change | None, user_id: str | None
    ) -> Session:
        """What moves to a new token on rotation: touched, ``change`` written, ``user_id`` recorded.

        A new owner (``user_id`` differs from one already recorded) starts from
        empty data and an empty mailbox: the session is cleared before
        ``change`` applies, and that counts as a write; the messages were the
        previous owner's. Raises :class:`SessionTooLarge` past ``max_bytes``.
        """
        moved = self
        if user_id is not None and self.user_id not in (None, user_id):
            change = evolve(change or Change(), clear=True)
            moved = evolve(moved, waiting=0)
        if change is not None and not change.empty:
            moved = moved.written(change, now, idle_deadline, max_bytes)
        moved = moved.touched(now, idle_deadline)
        return moved if user_id is None else evolve(moved, user_id=user_id)

    def queued(self) -> Session:
        """One more message in the mailbox, under the next id (``last_message`` afterwards)."""
        return evolve(self, last_message=self.last_message + 1, waiting=self.waiting + 1)

    def acked(self, count: int) -> Session:
        """``count`` messages left the mailbox (acknowledged or dropped)."""
        return evolve(self, waiting=max(0, self.waiting - count))
