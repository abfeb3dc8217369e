"""The session handle: one connection's view of its session, and its writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn

from application.errors import SessionEnded, SessionKeyMissing, SessionNotReady, TooManyRequests
from application.sessions import Admission, Handshake, Sessions, Status
from application.user_sessions import cap_user_sessions
from domain.errors import InvalidValue, SessionTooLarge
from domain.session import Change, Session
from domain.token import Token
from domain.values import JSON, check_key, check_user_id, encode, encoded_size

# How old a view may be for a write to be refused as too large on its word alone (see _apply).
_SIZE_FRESH = 1.0

Rebound = Callable[[Handshake | None], Awaitable[None]]
"""Called after the handle moved to another token (rotated, or a fresh session), or with None when
it was left without a session because a fresh one was refused (too many new sessions)."""


class SessionHandle:
    """What application code holds for one connection.

    ``get`` reads the handle's current view synchronously; every write returns
    only once it is durable in the store and extends the idle deadline. Writes
    through one handle are applied in the order they were called, even when the
    transport runs each event as its own task.

    >>> await handle.handshake(presented_token)          # doctest: +SKIP
    >>> await handle.set("userId", 42)                   # doctest: +SKIP
    >>> handle.get("userId")                             # doctest: +SKIP
    42
    """

    def __init__(
        self, sessions: Sessions, on_rebound: Rebound | None = None, *, admit: Admission | None = None
    ) -> None:
        self._sessions = sessions
        self._on_rebound = on_rebound
        # Asked before any new session this handle makes (handshakes, logouts, replacements):
        # the transport's limit of new sessions per client address.
        self._admit = admit
        self._token: Token | None = None
        self._session: Session | None = None
        self._ended = False
        self._pending = 0  # writes waiting for the lock or holding it
        # A view and its encoded size once measured (exact: True), or a bound of it (False).
        self._sized: tuple[Session, int, bool] | None = None
        self._measured_at = -_SIZE_FRESH  # when a write found the view too full and reloaded it
        # asyncio.Lock wakes waiters first-come first-served, and a call reaches
        # ``acquire`` before its first suspension, so the lock order is the call order.
        self._lock = asyncio.Lock()

    # -- binding --------------------------------------------------------------

    async def handshake(self, presented: object) -> Handshake:
        """Bind this handle to the session of ``presented`` (or a new one, if the handle's admission allows it)."""
        async with self._lock:
            result = await self._sessions.handshake(presented, admit=self._admit)
            self._bind(result)
            return result

    @property
    def sessions(self) -> Sessions:
        """The use cases this handle works through (its store, clock and policy)."""
        return self._sessions

    @property
    def bound(self) -> bool:
        return self._token is not None

    @property
    def ended(self) -> bool:
        """True once the session is known to have ended (expired or destroyed elsewhere)."""
        return self._ended

    @property
    def token(self) -> Token:
        return self._require_bound()[0]

    @property
    def session(self) -> Session:
        """The session as this handle last saw it; :class:`SessionEnded` once its deadline has passed."""
        return self._unexpired()

    @property
    def data(self) -> Mapping[str, JSON]:
        """A read-only view of the session data as this handle last saw it.

        Raises :class:`SessionEnded` once the view's deadline has passed: an
        expired session's data is never served, not even from the view.
        """
        return self._unexpired().data

    @property
    def expires(self) -> float:
        """The deadline of the session as this handle last saw it (it may have been extended since)."""
        return self._require_bound()[1].expires

    def get(self, key: str, default: JSON = "") -> JSON:
        """The value at ``key`` in the current view, or ``default`` (the old package's "").

        Raises :class:`SessionEnded` once the view's deadline has passed. A
        session kept alive by another connection meanwhile is seen again at
        the next reload (a guarded event, ``refresh()``, or the transport's
        expiry watch, which also hands an expired session's sockets a new one).
        """
        return self._unexpired().data.get(key, default)

    def _unexpired(self) -> Session:
        _, session = self._require_bound()
        if session.expires <= self._sessions.clock.now():
            raise SessionEnded("the session has expired")
        return session

    # -- writes -----------------------------------------------------------------

    async def set(self, key: str, value: JSON) -> None:
        """Store ``value`` at ``key``."""
        await self._write(Change(sets={check_key(key): encode(value)}))

    async def update(self, values: Mapping[str, JSON]) -> None:
        """Store several keys in one atomic write."""
        await self._write(self._change(values))

    @staticmethod
    def _change(values: Mapping[str, JSON]) -> Change:
        if not isinstance(values, Mapping):
            raise InvalidValue("expected a mapping of keys to values")
        return Change(sets={check_key(k): encode(v) for k, v in values.items()})

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error when it is absent)."""
        await self._write(Change(deletes=(check_key(key),)))

    async def clear(self) -> None:
        """Remove every key; the session and its token stay."""
        await self._write(Change(clear=True))

    async def _write(self, change: Change) -> None:
        self._require_bound()
        self._precheck(change)
        self._join_queue()
        try:
            async with self._lock:
                await self._apply(change)
        finally:
            self._pending -= 1

    def _join_queue(self) -> None:
        """Count one more write waiting for (or holding) the lock, unless too many are queued already.

        python-socketio runs each event as its own task, so without a bound one
        socket could queue writes faster than the store takes them. Past
        ``max_pending_writes`` the write fails at once and the store is not
        touched. The caller takes the lock next and decrements ``_pending`` in a
        ``finally`` (inline, not an async context manager: that cost ~4 µs per
        write on the hot path, measured).
        """
        if self._pending >= self._sessions.max_pending_writes:
            raise TooManyRequests(f"more than {self._sessions.max_pending_writes} writes queued on this session handle")
        self._pending += 1

    async def _apply(self, change: Change) -> None:
        """Write ``change`` to the live session; the caller holds the lock."""
        token, session = self._require_live()
        sessions = self._sessions
        sized = self._size_after(session, change) if change.sets else None
        if sized is not None and sized[0] > sessions.max_bytes:
            # The view says it cannot fit: refuse here, so the store never runs a write it would
            # refuse (the database's JSON work on a full session, and in a group-commit batch a
            # round trip more for the others). Another connection may have made room meanwhile:
            # a view older than a second is reloaded first.
            if sessions.clock.now() - self._measured_at >= _SIZE_FRESH:
                if not await self._reload():
                    self._end(token, "write to ended session")
                self._measured_at = sessions.clock.now()
                token, session = self._require_live()
                sized = self._size_after(session, change)
            if (size := sized[0]) > sessions.max_bytes:
                raise SessionTooLarge(f"the session would be {size} bytes; the maximum is {sessions.max_bytes}")
        now = sessions.clock.now()
        version = await sessions.store.write(
            token.digest,
            change,
            now=now,
            idle_deadline=sessions.policy.idle_deadline(now),
            max_bytes=sessions.max_bytes,
        )
        if version is None:
            self._end(token, "write to ended session")
        self._session = session.with_change(change, now, sessions.policy.slide(session.deadlines, now), version)
        if sized is not None:
            self._sized = (self._session, *sized)

    def _size_after(self, session: Session, change: Change) -> tuple[int, bool]:
        """The view's size after ``change``, or a bound of it that fits (cheaper, and all a write needs).

        Known from the last write through this handle, else measured once. A
        bound is kept as long as it stays under the limit; when it no longer
        does, the view is measured again and the exact size taken.
        """
        sized = self._sized
        if sized is None or sized[0] is not session:
            sized = self._sized = (session, encoded_size(session.data), True)
        _, size, exact = sized
        if (bound := size + change.growth_bound()) <= self._sessions.max_bytes:
            return bound, False
        if not exact:
            size = encoded_size(session.data)
            self._sized = (session, size, True)
        return change.size_after(session.data, size), True

    async def _rotate(self, change: Change | None = None, user_id: str | None = None) -> tuple[Token, Handshake]:
        """Move the live session to a fresh token (writing ``change``, recording ``user_id``).

        One store call, so it lands whole or not at all. The caller holds the
        lock. Returns the old token and the new binding.
        """
        token, session = self._require_live()
        sessions = self._sessions
        now = sessions.clock.now()
        new = sessions.new_token()
        # A bare regenerate of a session nobody wrote keeps it anonymous: it earns no more time.
        anonymous = session.anonymous and user_id is None and (change is None or change.empty)
        moved = await sessions.store.rotate(
            token.digest,
            new.digest,
            now=now,
            idle_deadline=sessions.policy.idle_deadline(now, anonymous=anonymous),
            max_bytes=sessions.max_bytes,
            change=change,
            user_id=user_id,
        )
        if moved is None:
            self._end(token, "rotation of ended session")
        owner = {} if user_id is None else {"user": sessions.fingerprint_user(user_id)}
        sessions.audit("rotated", new, previous=sessions.fingerprint(token), **owner)
        result = Handshake(new, moved, Status.ROTATED)
        self._bind(result)
        return token, result

    def _precheck(self, change: Change) -> None:
        # Fail fast, before any I/O, on a write that is too large whatever the
        # store holds; the store enforces the exact limit atomically.
        size = sum(len(k.encode()) + len(v.encode()) for k, v in change.sets.items())
        if size > self._sessions.max_bytes:
            raise SessionTooLarge(f"write is {size} bytes; the maximum is {self._sessions.max_bytes}")

    # -- lifecycle --------------------------------------------------------------

    async def refresh(self) -> bool:
        """Reload the view from the store; False when the session has ended."""
        async with self._lock:
            return await self._reload()

    async def require(self, *keys: str, user: bool = False) -> None:
        """The guard for secured operations: fresh from the store, live, with ``keys`` set.

        With ``user=True`` the session must also have an owner recorded by
        :meth:`login`, which only the server can set (a data key can be written
        by any code that calls :meth:`set`). Raises :class:`SessionEnded` when
        the session ended anywhere (destroyed, rotated, expired) and
        :class:`SessionKeyMissing` when a key or the owner is absent.
        """
        async with self._lock:
            if not await self._reload():
                raise SessionEnded("the session has ended")
            missing = [key for key in keys if key not in self.session.data]
            if user and self.session.user_id is None:
                missing.append("a logged-in user")
            if missing:
                raise SessionKeyMissing(f"session lacks {', '.join(missing)}")

    async def regenerate(self) -> Token:
        """Move the session to a new token; the old token is dead at once.

        Call it on login (and on any privilege change) against session fixation.
        """
        async with self._lock:
            old, result = await self._rotate()
        await self._announce(result)
        # Other connections holding the old token lose it (no grace period, and
        # no adopting the new token: that would undo the anti-fixation).
        await self._sessions.announce_ended({old.digest})
        return result.token

    async def destroy(self) -> Token | None:
        """Log out: delete the session and bind a fresh, empty one; its token is returned.

        Every other connection holding the destroyed session is told at once.
        None when no fresh session was allowed (too many new sessions from this
        client): the handle then holds none until the next handshake.
        """
        async with self._lock:
            token, _ = self._require_bound()
            await self._sessions.store.delete(token.digest)
            self._ended = True  # and stays so if opening the fresh session fails
            self._sessions.audit("destroyed", token)
            result = await self._replace(Status.CREATED)
        await self._announce(result)
        await self._sessions.announce_ended({token.digest})
        return None if result is None else result.token

    async def replace_if_ended(self, digests: frozenset[bytes]) -> bool:
        """If this handle holds one of the ended ``digests``, bind a fresh session and announce it.

        Transports call this when they hear that sessions ended elsewhere.
        """
        async with self._lock:
            if self._token is None or self._token.digest not in digests:
                return False
            self._ended = True  # stays so if opening a fresh session fails
            result = await self._replace(Status.NOT_FOUND)
        await self._announce(result)
        return True

    async def login(self, user_id: str, values: Mapping[str, JSON] | None = None) -> Token:
        """Log in: a new token, ``user_id`` recorded as the owner, ``values`` stored, in one step.

        It lands whole or not at all (a login that would make the session too
        large changes nothing, the token included), and nothing queued behind
        it (a logout, say) can land between its parts.

        A login as a different user than the owner already recorded starts
        from empty data (only ``values``): the previous user's keys never reach
        the next one on a shared device. The same user logging in again, or the
        first login of an anonymous session, keeps the data (a cart survives
        signing in). Past ``max_per_user`` live sessions, the user's least
        recently seen other session is ended.
        """
        user_id = check_user_id(user_id)
        change = self._change(values or {})
        self._require_bound()
        self._precheck(change)
        self._join_queue()
        try:
            async with self._lock:
                old, result = await self._rotate(change, user_id)
        finally:
            self._pending -= 1
        await self._announce(result)
        await self._sessions.announce_ended({old.digest})
        await cap_user_sessions(self._sessions, user_id, keep=result.token)
        return result.token

    async def expire_if_due(self) -> bool:
        """If the view's deadline has passed, reload it; if the session really ended, bind a fresh one.

        The fresh session is announced with status ``expired`` (its socket gets
        ``gotToken``). A session extended meanwhile by another connection just
        refreshes the view. Returns whether the handle moved. Transports call it
        for every handle whose :attr:`expires` has passed, also when an event
        found the session over first, and again after a failure.
        """
        if self._token is None or self._session is None:
            return False
        if self._session.expires > self._sessions.clock.now():
            return False
        async with self._lock:
            token, _ = self._require_bound()
            if await self._reload():
                return False  # kept alive elsewhere
            self._sessions.audit("expired", token)
            result = await self._replace(Status.EXPIRED)
        await self._announce(result)
        return True

    # -- internals --------------------------------------------------------------

    def _bind(self, result: Handshake) -> None:
        self._token, self._session, self._ended = result.token, result.session, False

    def _require_bound(self) -> tuple[Token, Session]:
        if self._token is None or self._session is None:
            raise SessionNotReady("no session yet: the client has not completed the handshake")
        return self._token, self._session

    def _require_live(self) -> tuple[Token, Session]:
        token, session = self._require_bound()
        if self._ended:
            raise SessionEnded("the session has ended")
        return token, session

    async def _reload(self) -> bool:
        token, _ = self._require_bound()
        found = await self._sessions.live(token)
        if isinstance(found, Status):
            self._ended = True
            return False
        self._session, self._ended = found, False
        return True

    def _end(self, token: Token, why: str) -> NoReturn:
        self._ended = True
        self._sessions.audit("ended", token, reason=why)
        raise SessionEnded("the session has ended")

    async def _replace(self, status: Status) -> Handshake | None:
        """Bind a fresh session in place of the one held; None (and no session) if it was refused.

        The caller holds the lock.
        """
        try:
            result = await self._sessions.open(status, admit=self._admit)
        except TooManyRequests:
            self._token, self._session, self._ended = None, None, False
            return None
        self._bind(result)
        return result

    async def _announce(self, result: Handshake | None) -> None:
        if self._on_rebound is not None:
            await self._on_rebound(result)
