"""The message timeline's index: statuses of `herald.status` in a SQLite file, by message, event, tenant and
recipient, with the columns the console filters and counts by (type, channel, status, locale, provider, variant).

A row keeps the status's JSON as published, validated into a `DeliveryStatus` when it is read back; the columns are
copies of its fields, read with orjson (a worker catching up reads a week of statuses). The file carries its schema
version (`PRAGMA user_version`): a file of another version is emptied and read again from the topic.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consumers.sqlite import transaction
from schemas.status import DeliveryStatus

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS statuses (
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    event_id TEXT,
    tenant TEXT NOT NULL,
    at REAL NOT NULL,
    recipient TEXT,
    event_type TEXT,
    channel TEXT,
    status TEXT NOT NULL,
    locale TEXT,
    provider TEXT,
    variant TEXT,
    value BLOB NOT NULL,
    PRIMARY KEY (partition, offset)
);
CREATE INDEX IF NOT EXISTS statuses_message ON statuses (message_id);
CREATE INDEX IF NOT EXISTS statuses_event ON statuses (event_id) WHERE event_id IS NOT NULL;
-- By time, with the columns the console's tail filters by and its rates count by: read from this index alone.
CREATE INDEX IF NOT EXISTS statuses_at ON statuses (at, event_type, channel, status, locale, variant, message_id);
CREATE INDEX IF NOT EXISTS statuses_recipient ON statuses (recipient) WHERE recipient IS NOT NULL;
CREATE TABLE IF NOT EXISTS tenants (tenant TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""

SCHEMA_VERSION = 4  # 2: the recipient, type, channel, status, locale and provider columns; 3: the `at` index
# carries type, channel, status, locale and message id; 4: the `variant` column (in the `at` index too)
COLUMNS = ("message_id", "event_id", "tenant", "at", "recipient", "event_type", "channel", "status", "locale",
           "provider", "variant")
MAX_TIMELINES = 100  # per lookup: an event fans out to a few messages, a key to a few events
SQL_BATCH = 500  # ids per `IN (…)`: under SQLite's oldest limit on bound parameters (999)

# A row to index: (partition, offset, the record's value).
Row = tuple[int, int, bytes | None]
# The message ids an event with idempotency key `key` (second) of tenant `tenant` (first) may have.
KeyIds = Callable[[str | None, str], Iterable[str]]


class MessageTimeline(BaseModel):
    """Every status of one message still in the window, oldest first."""

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(description="Herald's message id.", examples=["msg-3f2a9c"])
    event_id: str | None = Field(default=None, description="The event it came from, when a status named it.",
                                 examples=["evt-81ac"])
    event_type: str | None = Field(default=None, description="Catalog type, when a status named it.",
                                   examples=["order.confirmed"])
    statuses: list[DeliveryStatus] = Field(description="Its statuses ordered by `at` (then by topic offset).")


class MessageTimelines(BaseModel):
    """The answer of a lookup by event id or idempotency key: one timeline per message, first-started first."""

    model_config = ConfigDict(extra="forbid")

    messages: list[MessageTimeline]


def _connect(path: str, cache_kib: int) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.executescript(f"PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-{cache_kib};"
                     "PRAGMA temp_store=MEMORY;")
    if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        # An index of another version (or none): emptied, positions included, so it is read again from the topic.
        db.executescript("DROP TABLE IF EXISTS statuses; DROP TABLE IF EXISTS tenants; DROP TABLE IF EXISTS positions;"
                         f"{SCHEMA} PRAGMA user_version={SCHEMA_VERSION};")
    return db


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), SQL_BATCH):
        yield items[start:start + SQL_BATCH]


def _text(doc: Mapping[str, Any], name: str) -> str | None:
    value = doc.get(name)
    return value if isinstance(value, str) else None


def _columns(value: bytes | None) -> tuple[Any, ...] | None:
    """The `COLUMNS` of a status record (tenant "" for none, `at` in epoch seconds); None for one that is not a
    status.

    orjson, not pydantic: a worker catching up reads a week of statuses, and only these fields are indexed."""
    try:
        doc = orjson.loads(value or b"")
        message_id, at, status = doc["message_id"], doc["at"], doc["status"]
        if not isinstance(message_id, str) or not isinstance(at, str) or not isinstance(status, str):
            return None
        when = datetime.fromisoformat(at)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return (message_id, _text(doc, "event_id"), _text(doc, "tenant") or "", when.timestamp(),
            _text(doc, "recipient"), _text(doc, "event_type"), _text(doc, "channel"), status,
            _text(doc, "locale"), _text(doc, "provider"), _text(doc, "variant"))


class TimelineIndex:
    """Statuses on disk by message id, event id and tenant, with the offset each partition was read to.

    `add`, `prune` and `forget` write through one connection (call them one at a time, from any thread); lookups
    read through another, on the caller's thread."""

    def __init__(self, path: Path | str, *, cache_kib: int = 4096) -> None:
        self.path = str(path)
        self._write = _connect(self.path, cache_kib)
        self._read = _connect(self.path, cache_kib)
        self.skipped = 0  # records that were not statuses

    # --- writing --------------------------------------------------------------------------------------------------

    def add(self, rows: Iterable[Row], positions: Mapping[int, int], *, since: float | None = None) -> int:
        """Index `rows` (statuses at or after `since`, epoch seconds) and move each partition's position to
        `positions[p]`, in one transaction; returns how many were indexed. A row read again replaces itself."""
        values, tenants = [], set()
        for partition, offset, value in rows:
            columns = _columns(value)
            if columns is None:
                self.skipped += 1
                continue
            if since is not None and columns[3] < since:
                continue
            values.append((partition, offset, *columns, value))
            tenants.add(columns[2])
        names = ", ".join(("partition", "offset", *COLUMNS, "value"))
        with transaction(self._write):
            self._write.executemany(f"INSERT OR REPLACE INTO statuses ({names}) "
                                    f"VALUES ({', '.join('?' * (len(COLUMNS) + 3))})", values)
            self._write.executemany("INSERT OR IGNORE INTO tenants (tenant) VALUES (?)", [(t,) for t in tenants])
            self._write.executemany("INSERT OR REPLACE INTO positions (partition, next_offset) VALUES (?, ?)",
                                    list(positions.items()))
        return len(values)

    def prune(self, before: float) -> int:
        """Delete the statuses older than `before` (epoch seconds); returns how many."""
        with transaction(self._write):
            return self._write.execute("DELETE FROM statuses WHERE at < ?", (before,)).rowcount

    def forget(self, partition: int) -> None:
        """Drop a partition's rows and position (its topic was recreated: offsets start again at 0)."""
        with transaction(self._write):
            self._write.execute("DELETE FROM statuses WHERE partition = ?", (partition,))
            self._write.execute("DELETE FROM positions WHERE partition = ?", (partition,))

    def position(self, partition: int) -> int | None:
        """The next offset to read of a partition read before; None if never."""
        row = self._write.execute("SELECT next_offset FROM positions WHERE partition = ?", (partition,)).fetchone()
        return int(row[0]) if row else None

    # --- lookups --------------------------------------------------------------------------------------------------

    def message(self, message_id: str) -> MessageTimeline | None:
        """One message's timeline; None when no status of it is in the index."""
        found = self.messages([message_id])
        return found[0] if found else None

    def messages(self, message_ids: Iterable[str]) -> list[MessageTimeline]:
        """The timelines of those of `message_ids` the index knows, the earliest-started first."""
        rows: dict[str, list[tuple[float, int, int, bytes]]] = {}
        for chunk in _chunks(sorted(set(message_ids))):
            marks = ",".join("?" * len(chunk))
            for message_id, at, partition, offset, value in self._read.execute(
                    f"SELECT message_id, at, partition, offset, value FROM statuses WHERE message_id IN ({marks})",
                    list(chunk)):
                rows.setdefault(message_id, []).append((at, partition, offset, bytes(value)))
        timelines = [t for message_id, found in rows.items() if (t := _timeline(message_id, found))]
        timelines.sort(key=lambda t: (t.statuses[0].at, t.message_id))
        return timelines[:MAX_TIMELINES]

    def by_event(self, event_id: str) -> list[MessageTimeline]:
        """Every message of an event (its receipts too, which name only the message)."""
        return self.messages(self._message_ids("event_id", [event_id]))

    def by_key(self, key: str, key_ids: KeyIds, tenant: str | None = None) -> list[MessageTimeline]:
        """Every message of the events published with idempotency key `key`, of `tenant` or of any tenant seen.

        Statuses do not carry the key: `key_ids` gives the message ids the router derives from (tenant, key) —
        the event's own and its first message per channel — and the other messages of the events found that way
        (a type's later reminders) are found by their event id."""
        tenants = [tenant] if tenant is not None else self.tenants()
        direct = sorted({mid for t in tenants for mid in key_ids(t or None, key)})
        found = set(self._message_ids("message_id", direct))
        events = sorted({str(e) for chunk in _chunks(sorted(found)) for (e,) in self._read.execute(
            f"SELECT DISTINCT event_id FROM statuses WHERE message_id IN ({','.join('?' * len(chunk))}) "
            "AND event_id IS NOT NULL", list(chunk))})
        return self.messages(found | set(self._message_ids("event_id", events)))

    def tenants(self) -> list[str]:
        """Every tenant a status named ("" for none)."""
        return [str(t) for (t,) in self._read.execute("SELECT tenant FROM tenants ORDER BY tenant")]

    def query(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query of the `statuses` table (columns: partition, offset, `COLUMNS`, value), on the
        lookup connection: what the console searches, tails and counts with. Never pass it text from a request
        other than as `parameters`."""
        return list(self._read.execute(sql, parameters))

    def count(self) -> int:
        return int(self._read.execute("SELECT COUNT(*) FROM statuses").fetchone()[0])

    def close(self) -> None:
        self._read.close()
        self._write.close()

    def _message_ids(self, column: str, values: Sequence[str]) -> list[str]:
        found: list[str] = []
        for chunk in _chunks(values):
            marks = ",".join("?" * len(chunk))
            found += [str(m) for (m,) in self._read.execute(
                f"SELECT DISTINCT message_id FROM statuses WHERE {column} IN ({marks})", list(chunk))]
        return found


def _timeline(message_id: str, rows: list[tuple[float, int, int, bytes]]) -> MessageTimeline | None:
    statuses = []
    for _, _, _, value in sorted(rows, key=lambda r: r[:3]):  # by time, then by the topic's order
        try:
            statuses.append(DeliveryStatus.model_validate_json(value))
        except ValidationError:  # a record this version cannot read: shown by the versions that can
            log.warning("status unreadable in the timeline", extra={"message_id": message_id})
    if not statuses:
        return None
    return MessageTimeline(message_id=message_id, statuses=statuses,
                           event_id=next((s.event_id for s in statuses if s.event_id), None),
                           event_type=next((s.event_type for s in statuses if s.event_type), None))


