"""Another process's lock on a SQLite file, held for as long as a test needs it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def locked_by_another_process(path: str) -> Iterator[threading.Event]:
    """Holds the file's write lock from another connection until the block ends (or ``release`` is set).

    To SQLite a second connection is as good as another process: the lock is the file's.
    """
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(20)
        db.execute("ROLLBACK")
        db.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(5)
        yield release
    finally:
        release.set()
        holder.join()
