"""When a session ends: an idle timeout that slides, under an absolute cap."""

from __future__ import annotations

from attrs import field, frozen
from attrs.validators import gt


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

    The current time is always handed in, never read, so the policy can be
    checked with any clock.

    >>> policy = ExpiryPolicy(idle_ttl=60, absolute_ttl=3600)
    >>> policy.open(now=0).expires
    60
    >>> policy.slide(policy.open(now=0), now=50).expires
    110
    """

    idle_ttl: float = field(default=86400, validator=gt(0))
    absolute_ttl: float = field(default=30 * 86400, validator=gt(0))
    # Extending the idle deadline costs a write; on resume we only pay it once
    # this much of the idle window has been used (never more than a minute or
    # a hundredth of the window, whichever is less).
    touch_after: float = field(default=60.0)

    def open(self, now: float) -> Deadlines:
        """Deadlines of a session created at ``now``."""
        absolute = now + self.absolute_ttl
        return Deadlines(idle=min(now + self.idle_ttl, absolute), absolute=absolute)

    def is_expired(self, deadlines: Deadlines, now: float) -> bool:
        return not deadlines.live_at(now)

    def idle_deadline(self, now: float) -> float:
        """The idle deadline that activity at ``now`` earns, before the absolute cap."""
        return now + self.idle_ttl

    def slide(self, deadlines: Deadlines, now: float) -> Deadlines:
        """The deadlines after activity at ``now``.

        Sliding only extends a live session: it never moves a deadline back,
        never passes the absolute limit, and an expired session stays expired.
        """
        if self.is_expired(deadlines, now):
            return deadlines
        return deadlines.extended(self.idle_deadline(now))

    def wants_touch(self, deadlines: Deadlines, now: float) -> bool:
        """Whether a resume at ``now`` should pay a write to extend the idle deadline."""
        threshold = min(self.touch_after, self.idle_ttl / 100)
        return min(self.idle_deadline(now), deadlines.absolute) - deadlines.idle > threshold
