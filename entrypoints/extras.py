"""Optional pieces, imported only when configured; a missing one is a one-line error naming its extra."""

from __future__ import annotations

import importlib.util

REDIS_EXTRA = "socketio-token-session[redis]"


class MissingExtra(Exception):
    """An optional piece was configured but its package is not installed; the message says which extra."""


def require_module(module: str, extra: str, why: str) -> None:
    """Raise :class:`MissingExtra` (one line naming the extra) unless ``module`` can be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"{why} needs the {module!r} package: pip install '{extra}'")
