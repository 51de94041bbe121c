"""The console's copy of the survey ratings on `herald.replies` (`<type>.rated`, consumers/inbound/replies.py
`rating_cloudevent`): the latest rating per message in a SQLite file beside the message timeline, pruned with the
same window, for the rates page's distributions. Read by a `TopicReader` like the timeline
(consumers/observe/timeline.py); every other record of the topic (raw replies, confirmations) is passed over.

A file of its own rather than a table in the timeline's: a `TopicReader` reads one topic into one file, with that
file's read positions per partition, and the timeline's file is emptied whenever its schema changes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

RATED_SUFFIX = ".rated"
SOURCE = "herald/replies"  # Herald's own answers: a `.rated` type from anyone else is not a rating

SCHEMA = """
CREATE TABLE IF NOT EXISTS ratings (message_id TEXT PRIMARY KEY, at REAL NOT NULL, event_type TEXT NOT NULL,
                                    channel TEXT, score INTEGER NOT NULL, scale INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS ratings_at ON ratings (at, event_type, channel, scale, score);
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""
# A person who rates again replaces their rating: the latest answer counts, whatever order it is read in.
UPSERT = """
INSERT INTO ratings (message_id, at, event_type, channel, score, scale) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (message_id) DO UPDATE SET at = excluded.at, event_type = excluded.event_type,
    channel = excluded.channel, score = excluded.score, scale = excluded.scale WHERE excluded.at >= ratings.at
"""

Row = tuple[int, int, bytes | None]
Rating = tuple[str, float, str, str | None, int, int]  # message id, at (epoch seconds), type, channel, score, scale


def rating_of(value: bytes | None) -> Rating | None:
    """The columns of a `<type>.rated` record; None for any other record of herald.replies."""
    try:
        doc = orjson.loads(value or b"")
        event_type, data = doc["type"], doc["data"]
        if doc.get("source") != SOURCE or not event_type.endswith(RATED_SUFFIX):
            return None
        message_id, score, scale = data["message_id"], data["score"], data["scale"]
        at = datetime.fromisoformat(doc["time"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
    channel = data.get("channel")
    if not isinstance(message_id, str) or not all(type(n) is int and 1 <= n <= 9 for n in (score, scale)) \
            or score > scale or not (channel is None or isinstance(channel, str)):
        return None
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return message_id, at.timestamp(), event_type.removesuffix(RATED_SUFFIX), channel, score, scale


class RatingIndex:
    """The latest rating per message, with the offset each partition was read to (the `TopicIndex` protocol of
    consumers/observe/timeline.py). `add`, `prune` and `forget` write; `query` reads through a connection of its
    own, so the console reads while the reader writes."""

    def __init__(self, path: Path | str, *, cache_kib: int = 1024) -> None:
        self.path = str(path)
        self._write = self._connect(cache_kib)
        self._read = self._connect(cache_kib)

    def _connect(self, cache_kib: int) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.executescript(f"PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-{cache_kib};{SCHEMA}")
        return db

    def add(self, rows: Iterable[Row], positions: Mapping[int, int], *, since: float | None = None) -> int:
        """Index the ratings among `rows` (at or after `since`, epoch seconds) and move each partition's position,
        in one transaction; returns how many ratings were indexed."""
        found = (rating_of(value) for _, _, value in rows)
        ratings = [r for r in found if r is not None and (since is None or r[1] >= since)]
        with self._transaction():
            self._write.executemany(UPSERT, ratings)
            self._write.executemany("INSERT OR REPLACE INTO positions (partition, next_offset) VALUES (?, ?)",
                                    list(positions.items()))
        return len(ratings)

    def prune(self, before: float) -> int:
        with self._transaction():
            return self._write.execute("DELETE FROM ratings WHERE at < ?", (before,)).rowcount

    def forget(self, partition: int) -> None:
        # Ratings are keyed by message id, not by partition: a recreated topic keeps them until they leave the
        # window; only the position is dropped so the new topic is read from its start.
        with self._transaction():
            self._write.execute("DELETE FROM positions WHERE partition = ?", (partition,))

    def position(self, partition: int) -> int | None:
        row = self._write.execute("SELECT next_offset FROM positions WHERE partition = ?", (partition,)).fetchone()
        return int(row[0]) if row else None

    def count(self) -> int:
        return int(self._read.execute("SELECT COUNT(*) FROM ratings").fetchone()[0])

    def query(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query of the `ratings` table (message_id, at, event_type, channel, score, scale).
        Never pass it text from a request other than as `parameters`."""
        return list(self._read.execute(sql, parameters))

    def close(self) -> None:
        self._read.close()
        self._write.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._write.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._write.execute("ROLLBACK")
            raise
        self._write.execute("COMMIT")
