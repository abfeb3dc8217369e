"""When a session ends: an idle timeout that slides, under an absolute cap."""

from __future__ import annotations

from attrs import field, frozen
from attrs.validators import gt, optional


@frozen
class Deadlines:
    """The two instants after which a session is over, in Unix seconds."""

    idle: float
    absolute: float

    @property
    def expires(self) -> float:
        return min(self.idle, self.absolute)

    def live_at(self, now: float) -> bool:
        """A session is over from its deadline on (the deadline itself included)."""
        return now < self.expires

    def extended(self, idle_deadline: float) -> Deadlines:
        """The idle deadline moved out to ``idle_deadline``: never back, never past the absolute one."""
        return Deadlines(idle=min(max(self.idle, idle_deadline), self.absolute), absolute=self.absolute)


@frozen
class ExpiryPolicy:
    """Idle (sliding) and absolute timeouts, in seconds.

    A session that was never written (no key set, no owner recorded) is
    anonymous: it idles out after ``anon_ttl`` instead of ``idle_ttl``, so
    sessions that clients open and abandon do not hold rows for a day. Its
    first write earns it the normal idle timeout.

    The current time is always handed in, never read, so the policy can be
    checked with any clock.

    >>> policy = ExpiryPolicy(idle_ttl=60, absolute_ttl=3600, anon_ttl=10)
    >>> policy.open(now=0).expires
    10
    >>> policy.slide(policy.open(now=0), now=5).expires
    65
    >>> policy.slide(policy.open(now=0), now=5, anonymous=True).expires
    15
    """

    idle_ttl: float = field(default=86400, validator=gt(0))
    absolute_ttl: float = field(default=30 * 86400, validator=gt(0))
    # None: anonymous sessions idle out like any other.
    anon_ttl: float | None = field(default=None, validator=optional(gt(0)))
    # Extending the idle deadline costs a write; on resume we only pay it once
    # this much of the idle window has been used (never more than a minute or
    # a hundredth of the window, whichever is less).
    touch_after: float = field(default=60.0)

    def _ttl(self, anonymous: bool) -> float:
        if anonymous and self.anon_ttl is not None:
            return min(self.anon_ttl, self.idle_ttl)
        return self.idle_ttl

    def open(self, now: float) -> Deadlines:
        """Deadlines of a session created at ``now`` (anonymous until its first write)."""
        absolute = now + self.absolute_ttl
        return Deadlines(idle=min(self.idle_deadline(now, anonymous=True), absolute), absolute=absolute)

    def is_expired(self, deadlines: Deadlines, now: float) -> bool:
        return not deadlines.live_at(now)

    def idle_deadline(self, now: float, *, anonymous: bool = False) -> float:
        """The idle deadline that activity at ``now`` earns, before the absolute cap.

        A write is never anonymous: it is what ends a session's anonymity.
        """
        return now + self._ttl(anonymous)

    def slide(self, deadlines: Deadlines, now: float, *, anonymous: bool = False) -> Deadlines:
        """The deadlines after activity at ``now``.

        Sliding only extends a live session: it never moves a deadline back,
        never passes the absolute limit, and an expired session stays expired.
        """
        if self.is_expired(deadlines, now):
            return deadlines
        return deadlines.extended(self.idle_deadline(now, anonymous=anonymous))

    def wants_touch(self, deadlines: Deadlines, now: float, *, anonymous: bool = False) -> bool:
        """Whether a resume at ``now`` should pay a write to extend the idle deadline."""
        ttl = self._ttl(anonymous)
        threshold = min(self.touch_after, ttl / 100)
        return min(self.idle_deadline(now, anonymous=anonymous), deadlines.absolute) - deadlines.idle > threshold
