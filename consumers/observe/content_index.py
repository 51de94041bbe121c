"""The console's copy of `herald.content` (what messages said, for the types that allow showing it): the newest
record per message id in a SQLite file beside the message timeline, pruned with the same window. Read by a
`TopicReader` like the timeline (consumers/observe/timeline.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson
from pydantic import ValidationError

from consumers.sqlite import transaction
from schemas.content import MessageContent

SCHEMA = """
CREATE TABLE IF NOT EXISTS contents (message_id TEXT PRIMARY KEY, at REAL NOT NULL, value BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS contents_at ON contents (at);
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""

Row = tuple[int, int, bytes | None]


def _key(value: bytes | None) -> tuple[str, float, bool] | None:
    """(message id, time, whether the record is a `ContentErased`) of a record, None if it is neither kind."""
    try:
        doc = orjson.loads(value or b"")
        message_id, at = doc["message_id"], datetime.fromisoformat(doc["at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if not isinstance(message_id, str):
        return None
    return message_id, (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp(), doc.get("erased") is True


class ContentIndex:
    """Message contents by message id, with the offset each partition was read to (the `TopicIndex` protocol of
    consumers/observe/timeline.py)."""

    def __init__(self, path: Path | str, *, cache_kib: int = 1024) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.executescript(f"PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-{cache_kib};"
                               f"{SCHEMA}")
        self.skipped = 0

    def add(self, rows: Iterable[Row], positions: Mapping[int, int], *, since: float | None = None) -> int:
        values: dict[str, tuple[str, float, bytes] | None] = {}  # by message id, in order: the last one counts
        for _, _, value in rows:
            key = _key(value)
            if key is None or value is None:
                self.skipped += 1
                continue
            message_id, at, erased = key
            values.pop(message_id, None)
            if erased:  # `herald forget`: the content goes, whenever it was read
                values[message_id] = None
            elif since is None or at >= since:
                values[message_id] = (message_id, at, value)
        kept = [row for row in values.values() if row is not None]
        with transaction(self._db):
            self._db.executemany("DELETE FROM contents WHERE message_id = ?",
                                 [(m,) for m, row in values.items() if row is None])
            self._db.executemany("INSERT OR REPLACE INTO contents (message_id, at, value) VALUES (?, ?, ?)", kept)
            self._db.executemany("INSERT OR REPLACE INTO positions (partition, next_offset) VALUES (?, ?)",
                                 list(positions.items()))
        return len(kept)

    def prune(self, before: float) -> int:
        with transaction(self._db):
            return self._db.execute("DELETE FROM contents WHERE at < ?", (before,)).rowcount

    def forget(self, partition: int) -> None:
        # Contents are keyed by message id, not by partition: a recreated topic keeps them until they leave the
        # window; only the position is dropped so the new topic is read from its start.
        with transaction(self._db):
            self._db.execute("DELETE FROM positions WHERE partition = ?", (partition,))

    def position(self, partition: int) -> int | None:
        row = self._db.execute("SELECT next_offset FROM positions WHERE partition = ?", (partition,)).fetchone()
        return int(row[0]) if row else None

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM contents").fetchone()[0])

    def content(self, message_id: str) -> MessageContent | None:
        """What message `message_id` said, if it was kept and is still in the window."""
        row = self._db.execute("SELECT value FROM contents WHERE message_id = ?", (message_id,)).fetchone()
        if row is None:
            return None
        try:
            return MessageContent.model_validate_json(bytes(row[0]))
        except ValidationError:
            return None

    def close(self) -> None:
        self._db.close()
