"""SQLite as Herald's local files use it (the state stores' copies, the timeline and content indexes): connections
in autocommit mode (isolation_level=None), so each write says where its transaction begins and ends."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN, then COMMIT on success or ROLLBACK on any exception (cancellation included)."""
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
