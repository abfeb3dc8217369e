"""One WARNING line now and then for events that may come in floods, with how many there were."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class CountedWarning:
    """Logs ``message % (count, *args)`` at once for the first event, then at most once per ``every`` seconds.

    Events in between are counted into the next line (or into :meth:`flush`),
    so a flood of bad input costs a line a minute, not a line each.
    """

    def __init__(
        self, logger: logging.Logger, message: str, *, every: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._message = message
        self._every = every
        self._clock = clock
        self._pending = 0
        self._last: float | None = None
        self.total = 0

    def count(self, *args: object) -> None:
        self.total += 1
        self._pending += 1
        now = self._clock()
        if self._last is None or now - self._last >= self._every:
            self._emit(args)
            self._last = now

    def flush(self, *args: object) -> None:
        """Log what was counted since the last line, if anything."""
        if self._pending:
            self._emit(args)

    def _emit(self, args: tuple[object, ...]) -> None:
        self._logger.warning(self._message, self._pending, *args)
        self._pending = 0
