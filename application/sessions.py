"""The handshake: turn whatever token a client presents into a live session."""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Collection

from attrs import define, evolve, field, frozen

from application.errors import TooManyRequests
from application.ports import Clock, EndedListener, SessionStore
from domain.errors import MalformedToken
from domain.expiry import ExpiryPolicy
from domain.session import Session
from domain.token import Token
from domain.values import DEFAULT_MAX_BYTES

log = logging.getLogger("socketio_session")

Admission = Callable[[], bool]
"""Asked before a new session is made: True lets it be made (and counts it)."""


class Status(enum.Enum):
    """How a handshake (or a later rebind) ended."""

    CREATED = "created"  # no token presented: a new session
    RESUMED = "resumed"  # the presented session is live
    EXPIRED = "expired"  # it existed but expired: a new session, old data dropped
    NOT_FOUND = "not_found"  # no such session: a new one
    INVALID = "invalid"  # the token was malformed: a new session, no query ran
    ROTATED = "rotated"  # same session, new token (regenerate)


@frozen
class Handshake:
    """The token the client must keep from now on, its session, and why."""

    token: Token
    session: Session
    status: Status


@define
class Sessions:
    """The session use cases over a store and a clock.

    One instance serves a whole process; hand it to every transport.

    >>> import asyncio
    >>> from adapters.stores.memory import MemoryStore     # doctest: +SKIP
    >>> sessions = Sessions(MemoryStore(), clock)          # doctest: +SKIP
    >>> result = asyncio.run(sessions.handshake(""))       # doctest: +SKIP
    >>> result.status                                      # doctest: +SKIP
    <Status.CREATED: 'created'>
    """

    store: SessionStore
    clock: Clock
    policy: ExpiryPolicy = field(factory=ExpiryPolicy)
    max_bytes: int = DEFAULT_MAX_BYTES
    # Writes one handle may have queued (waiting or running); more fail with TooManyRequests.
    max_pending_writes: int = 32
    # Live sessions one user may hold; a login beyond it ends the least recently seen one.
    max_per_user: int = 50
    new_token: Callable[[], Token] = Token.generate
    # Lifecycle log lines name a session by a keyed hash of its token, so logs
    # can be correlated but never replayed, even together with a table dump.
    log_key: bytes = field(factory=lambda: secrets.token_bytes(16), repr=False)
    # Transports and relays that hold sessions open and must hear when they end.
    listeners: list[EndedListener] = field(factory=list)

    def subscribe(self, listener: EndedListener) -> None:
        """Have ``listener`` told whenever sessions end (destroyed, rotated, ended by user)."""
        self.listeners.append(listener)

    async def announce_ended(self, digests: Collection[bytes], *, source: EndedListener | None = None) -> None:
        """Tell every listener but ``source`` that the sessions under ``digests`` are gone."""
        ended = frozenset(digests)
        if not ended:
            return
        # Each listener is told whatever another one does: a transport that fails to rebind
        # one socket must not keep the relay from telling the other processes.
        outcomes = await asyncio.gather(
            *(listener.sessions_ended(ended) for listener in list(self.listeners) if listener is not source),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                log.error("a listener failed to hear of ended sessions", exc_info=outcome)

    async def handshake(self, presented: object, *, admit: Admission | None = None) -> Handshake:
        """Resume the session of ``presented``, or open a new one and say why.

        ``presented`` is whatever the client sent: None or "" asks for a new
        session; anything that is not a well-formed token is refused before
        any query. A session that expired is never revived and its data is
        not carried over; a token the server did not issue is never adopted.

        ``admit`` is asked before a new session (a row) is made; when it says
        no, :class:`TooManyRequests` is raised and nothing is written. Resumes
        do not ask: they make no row.
        """
        if presented is None or presented == "":
            return await self.open(Status.CREATED, admit=admit)
        try:
            token = Token.parse(presented)
        except MalformedToken:
            self.audit("invalid", None)
            return await self.open(Status.INVALID, admit=admit)
        found = await self.live(token)
        if isinstance(found, Status):
            self.audit(found.value, token)
            return await self.open(found, admit=admit)
        self.audit("resumed", token)
        return Handshake(token, found, Status.RESUMED)

    async def live(self, token: Token) -> Session | Status:
        """The live session of ``token``, its idle deadline slid when due; else why not.

        ``Status.NOT_FOUND`` when there is no such session, ``Status.EXPIRED``
        when it is past a deadline (its row is then deleted: it can never come
        back). The one path by which a stored session becomes live again, for
        the handshake and for handles reloading their view.
        """
        now = self.clock.now()
        found = await self.store.fetch(token.digest)
        if found is None:
            return Status.NOT_FOUND
        if self.policy.is_expired(found.deadlines, now):
            await self.store.delete(token.digest)
            return Status.EXPIRED
        anonymous = found.anonymous
        if self.policy.wants_touch(found.deadlines, now, anonymous=anonymous):
            deadline = self.policy.idle_deadline(now, anonymous=anonymous)
            if not await self.store.touch(token.digest, now=now, idle_deadline=deadline):
                return Status.EXPIRED  # it ended between our read and our touch
            found = evolve(found, deadlines=self.policy.slide(found.deadlines, now, anonymous=anonymous), last_seen=now)
        return found

    async def open(self, status: Status = Status.CREATED, *, admit: Admission | None = None) -> Handshake:
        """A brand-new empty session with a fresh token; :class:`TooManyRequests` if ``admit`` refuses."""
        if admit is not None and not admit():
            self.audit("rate_limited", None)
            raise TooManyRequests("too many new sessions from this client; try again later")
        now = self.clock.now()
        token = self.new_token()
        session = Session(data={}, created=now, deadlines=self.policy.open(now), last_seen=now)
        await self.store.insert(token.digest, session)
        self.audit("created", token)
        return Handshake(token, session, status)

    def fingerprint_user(self, user_id: str) -> str:
        """A keyed hash that names a user in logs: stable within a log key, not guessable from a name."""
        return hmac.new(self.log_key, b"user:" + user_id.encode(), hashlib.sha256).hexdigest()[:16]

    def fingerprint(self, token: Token) -> str:
        """A keyed hash that names ``token`` in logs without revealing it."""
        return hmac.new(self.log_key, token.digest, hashlib.sha256).hexdigest()[:16]

    def audit(self, event: str, token: Token | None, **extra: object) -> None:
        """One structured log line for a session lifecycle event (at INFO)."""
        if not log.isEnabledFor(logging.INFO):
            return  # the fingerprint and the record cost ~14 µs: skip them when nobody listens
        fingerprint = self.fingerprint(token) if token is not None else "-"
        details = "".join(f" {key}={value}" for key, value in extra.items())
        log.info(
            "session %s session=%s%s",
            event,
            fingerprint,
            details,
            extra={"session_event": event, "session": fingerprint, **extra},
        )
