"""A store's local copy on disk: SQLite (stdlib, no native wheel to pin), one file per store, rows by partition.

The topic is the source of truth; this file is a cache of it that survives restarts, so a worker that owned a
partition before resumes reading it from where it stopped instead of from the beginning. Each partition's rows and
the offset after the last record applied change in one transaction, so the two never disagree, even after a
SIGKILL (WAL mode: a committed transaction is in the log before the call returns). `synchronous=OFF` gives up only
what an operating-system crash would lose, which the topic still has: such a copy is read again from scratch.
Memory stays bounded: SQLite's page cache is capped (`cache_kib`, 1 MiB a store: a worker has ten stores, and
caches that fill slowly make a worker's memory creep for hours), whatever the number of keys; the operating
system's file cache, outside the worker, keeps hot pages close.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    partition INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (key, partition)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_partition ON kv (partition);
CREATE TABLE IF NOT EXISTS positions (
    partition INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
"""

# A write to apply: (partition, key, value); value None deletes.
Change = tuple[int, str, bytes | None]


class LocalDb:
    """Rows of one store, by partition, with the offset each partition has been read to."""

    def __init__(self, path: Path | str, *, cache_kib: int = 1024) -> None:
        self.path = str(path)
        # The event loop's thread only; check_same_thread off so a tool may close it from a finaliser.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.executescript(f"PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-{cache_kib};"
                               f"PRAGMA temp_store=MEMORY; {SCHEMA}")

    def lookup(self, key: str, partitions: AbstractSet[int]) -> tuple[int, bytes] | None:
        """(partition, value) of `key` in any of `partitions` (a key lives in one partition; the set only hides
        the others)."""
        for partition, value in self._db.execute("SELECT partition, value FROM kv WHERE key = ?", (key,)):
            if partition in partitions:
                return int(partition), bytes(value)
        return None

    def get(self, key: str, partitions: AbstractSet[int]) -> bytes | None:
        found = self.lookup(key, partitions)
        return found[1] if found else None

    def page(self, partitions: Iterable[int], after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Up to `limit` (key, value) of `partitions` in key order, from the first key after `after` (None: from
        the first key): a scan a page at a time holds one page in memory, however many keys the store has."""
        return [(str(key), bytes(value)) for key, value in self._page("key, value", partitions, after, limit)]

    def key_page(self, partitions: Iterable[int], after: str | None, limit: int) -> list[str]:
        """`page` without the values."""
        return [str(key) for (key,) in self._page("key", partitions, after, limit)]

    def _page(self, columns: str, partitions: Iterable[int], after: str | None, limit: int) -> list[Any]:
        wanted = sorted(set(partitions))
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        # The primary key (key, partition) orders the rows: each page is a range read, and writes between pages
        # neither repeat nor skip the keys that stay.
        where = "key > ? AND " if after is not None else ""
        first = (after,) if after is not None else ()
        return self._db.execute(f"SELECT {columns} FROM kv WHERE {where}partition IN ({marks}) ORDER BY key LIMIT ?",
                                (*first, *wanted, limit)).fetchall()

    def count(self, partitions: Iterable[int]) -> int:
        wanted = sorted(set(partitions))
        if not wanted:
            return 0
        marks = ",".join("?" * len(wanted))
        row = self._db.execute(f"SELECT COUNT(DISTINCT key) FROM kv WHERE partition IN ({marks})", wanted).fetchone()
        return int(row[0])

    def apply(self, changes: Iterable[Change], positions: dict[int, int]) -> None:
        """Apply `changes` and move each partition's position to `positions[p]`, all in one transaction."""
        now = time.time()
        with self._transaction():
            for partition, key, value in changes:
                if value is None:
                    self._db.execute("DELETE FROM kv WHERE key = ? AND partition = ?", (key, partition))
                else:
                    self._db.execute("INSERT OR REPLACE INTO kv (partition, key, value) VALUES (?, ?, ?)",
                                     (partition, key, value))
            self._db.executemany("INSERT OR REPLACE INTO positions (partition, next_offset, updated_at) "
                                 "VALUES (?, ?, ?)", [(p, o, now) for p, o in positions.items()])

    def position(self, partition: int) -> tuple[int, float] | None:
        """(next offset to read, when it was last moved) for a partition read before; None if never."""
        row = self._db.execute("SELECT next_offset, updated_at FROM positions WHERE partition = ?",
                               (partition,)).fetchone()
        return (int(row[0]), float(row[1])) if row else None

    def drop(self, partition: int) -> None:
        """Forget a partition entirely: its rows and its position (it is read again from the beginning)."""
        with self._transaction():
            self._db.execute("DELETE FROM kv WHERE partition = ?", (partition,))
            self._db.execute("DELETE FROM positions WHERE partition = ?", (partition,))

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """COMMIT on success, ROLLBACK on an exception (isolation_level=None leaves both to us)."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
