"""Keep engine.io session ids out of the access log.

A polling client's requests carry its engine.io ``sid`` in the query string
(``/socket.io/?EIO=4&transport=polling&sid=...``), and uvicorn's access log
writes the whole path. Whoever holds a live sid can poll that connection and
receive what is sent to it, its ``gotToken`` included: a log line with a sid
is a log line with a token in it. This filter masks the sid.
"""

from __future__ import annotations

import logging
import re

_SID = re.compile(r"(?<=[?&]sid=)[^&\s\"]+")
HIDDEN = "<hidden>"


def hide_sid(text: str) -> str:
    return _SID.sub(HIDDEN, text)


class HideEngineIOSid(logging.Filter):
    """Masks ``sid=...`` in every string argument (and the message) of a log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(hide_sid(arg) if isinstance(arg, str) else arg for arg in record.args)
        if isinstance(record.msg, str) and "sid=" in record.msg:
            record.msg = hide_sid(record.msg)
        return True


def hide_sids_in_access_log(logger_names: tuple[str, ...] = ("uvicorn.access", "uvicorn.error")) -> None:
    """Install the filter on uvicorn's loggers (once each): the access log, and the error log, on which
    uvicorn writes websocket upgrades (``"WebSocket /socket.io/?...&sid=..." [accepted]``)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideEngineIOSid) for f in logger.filters):
            logger.addFilter(HideEngineIOSid())
