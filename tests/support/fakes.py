"""Fakes for the ports the use cases need (a fake observes state; nothing is mocked)."""

from __future__ import annotations

from attrs import define


@define
class FakeClock:
    """A clock that moves only when told to."""

    current: float = 1_700_000_000.0

    def now(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds
