"""The message timeline: every status of `herald.status` within a retention window, indexed on disk, so support
can ask "what happened to this message / event / idempotency key?" (`GET /messages/…` on the admin port,
`herald trace`).

Statuses are keyed by message id, so one message's statuses sit in one partition, but any worker may be asked
about any message: each worker reads the whole topic, without a consumer group, into a SQLite file of its own
(WAL; SQLite's page cache is capped, so memory does not grow with the number of statuses). A worker that read the
topic before resumes from where its file stopped; a new one starts at the first status of the retention window
(`offsets_for_times`), or at the beginning where the broker cannot look offsets up by time. Rows older than the
window are pruned as it goes. Writes run in a thread, a batch at a time, and nothing on the send path waits for
them; lookups read through a connection of their own.

Only ids are indexed (message, event, tenant and time); a row keeps the status's JSON as published, validated into
a `DeliveryStatus` when it is read back. Imports nothing from consumers or channels: the Kafka connection
arguments and the message ids an idempotency key maps to are given by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    value BLOB NOT NULL,
    PRIMARY KEY (partition, offset)
);
CREATE INDEX IF NOT EXISTS statuses_message ON statuses (message_id);
CREATE INDEX IF NOT EXISTS statuses_event ON statuses (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS statuses_at ON statuses (at);
CREATE TABLE IF NOT EXISTS tenants (tenant TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""

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
                     f"PRAGMA temp_store=MEMORY; {SCHEMA}")
    return db


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), SQL_BATCH):
        yield items[start:start + SQL_BATCH]


def _ids(value: bytes | None) -> tuple[str, str | None, str, float] | None:
    """(message id, event id, tenant or "", epoch seconds) of a status record; None for one that is not a status.

    orjson, not pydantic: a worker catching up reads a week of statuses, and only ids are needed to index them."""
    try:
        doc = orjson.loads(value or b"")
        message_id, at = doc["message_id"], doc["at"]
        event_id, tenant = doc.get("event_id"), doc.get("tenant")
        if not isinstance(message_id, str) or not isinstance(at, str):
            return None
        when = datetime.fromisoformat(at)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return (message_id, event_id if isinstance(event_id, str) else None, tenant if isinstance(tenant, str) else "",
            when.timestamp())


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
            ids = _ids(value)
            if ids is None:
                self.skipped += 1
                continue
            message_id, event_id, tenant, at = ids
            if since is not None and at < since:
                continue
            values.append((partition, offset, message_id, event_id, tenant, at, value))
            tenants.add(tenant)
        with self._transaction():
            self._write.executemany("INSERT OR REPLACE INTO statuses (partition, offset, message_id, event_id, "
                                    "tenant, at, value) VALUES (?, ?, ?, ?, ?, ?, ?)", values)
            self._write.executemany("INSERT OR IGNORE INTO tenants (tenant) VALUES (?)", [(t,) for t in tenants])
            self._write.executemany("INSERT OR REPLACE INTO positions (partition, next_offset) VALUES (?, ?)",
                                    list(positions.items()))
        return len(values)

    def prune(self, before: float) -> int:
        """Delete the statuses older than `before` (epoch seconds); returns how many."""
        with self._transaction():
            return self._write.execute("DELETE FROM statuses WHERE at < ?", (before,)).rowcount

    def forget(self, partition: int) -> None:
        """Drop a partition's rows and position (its topic was recreated: offsets start again at 0)."""
        with self._transaction():
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

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._write.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._write.execute("ROLLBACK")
            raise
        self._write.execute("COMMIT")


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


class StatusTimeline:
    """Reads `topic` (herald.status) into a `TimelineIndex` at `path`: `run` keeps it up to date (a worker's
    background task), `catch_up` reads to the end once (`herald trace`)."""

    def __init__(self, topic: str, client_kwargs: Mapping[str, Any], path: Path | str, *, retention: timedelta,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), poll_ms: int = 500,
                 batch: int = 2000, prune_interval: float = 60.0) -> None:
        self.topic = topic
        self.client_kwargs = dict(client_kwargs)
        self.path = Path(path)
        self.retention = retention
        self.clock = clock
        self.poll_ms = poll_ms
        self.batch = batch
        self.prune_interval = prune_interval
        self.caught_up = False  # read to the end the topic had when reading started
        self._index: TimelineIndex | None = None
        self._writing: asyncio.Future[Any] | None = None  # the write running in a thread, if any

    @property
    def index(self) -> TimelineIndex:
        """The index, opened on first use (an app that never runs the task never creates the file)."""
        if self._index is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._index = TimelineIndex(self.path)
        return self._index

    def since(self) -> float:
        """Start of the window, epoch seconds."""
        return (self.clock() - self.retention).timestamp()

    async def run(self) -> None:
        """Follow the topic for ever (until cancelled), pruning what leaves the window; a broker or disk error
        stops the reading for a few seconds, not for good. Closes the index when cancelled."""
        try:
            while True:
                try:
                    await self._read(follow=True)
                except (KafkaError, OSError, sqlite3.Error) as exc:
                    log.warning("message timeline stopped reading (%s); again in 5 s", exc)
                    await asyncio.sleep(5.0)
        finally:
            if self._writing is not None:  # cancelled mid-write: the thread finishes before the file is closed
                await asyncio.wait([self._writing])
            self.close()

    async def catch_up(self) -> None:
        """Read the topic up to the end it has now, then return."""
        await self._read(follow=False)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    async def _read(self, *, follow: bool) -> None:
        index = self.index
        consumer = AIOKafkaConsumer(**self.client_kwargs, enable_auto_commit=False, auto_offset_reset="earliest",
                                    client_id="herald-timeline")
        try:
            await consumer.start()  # inside: a consumer that failed to start is stopped too
            parts = await self._assign(consumer)
            ends = await consumer.end_offsets(parts)
            await self._seek(consumer, parts, ends)
            pending = {tp: end for tp, end in ends.items()}  # partitions not read to their end yet
            pruned_at = 0.0
            while True:
                if pending:
                    pending = {tp: end for tp, end in pending.items() if await consumer.position(tp) < end}
                if not pending and not self.caught_up:
                    self.caught_up = True
                    log.info("message timeline caught up", extra={"statuses": index.count()})
                if not follow and not pending:
                    return
                if time.monotonic() - pruned_at >= self.prune_interval:
                    pruned_at = time.monotonic()
                    await self._in_thread(index.prune, self.since())
                fetched = await consumer.getmany(timeout_ms=self.poll_ms, max_records=self.batch)
                rows = [(r.partition, r.offset, r.value) for records in fetched.values() for r in records]
                if rows:
                    positions = {tp.partition: records[-1].offset + 1 for tp, records in fetched.items() if records}
                    await self._in_thread(partial(index.add, rows, positions, since=self.since()))
        finally:
            await consumer.stop()

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a write of the index in a thread, so a batch of SQLite work never holds up the event loop."""
        self._writing = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        try:
            return await asyncio.shield(self._writing)
        finally:
            if self._writing.done():
                self._writing = None

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Every partition of the topic, assigned (waits for the topic to exist: the worker creates it at start)."""
        while True:
            await consumer.topics()  # refreshes metadata, so partitions_for_topic knows the topic
            numbers = consumer.partitions_for_topic(self.topic)
            if numbers:
                parts = [TopicPartition(self.topic, p) for p in sorted(numbers)]
                consumer.assign(parts)
                return parts
            await asyncio.sleep(1.0)

    async def _seek(self, consumer: AIOKafkaConsumer, parts: list[TopicPartition],
                    ends: Mapping[TopicPartition, int]) -> None:
        """From where this index stopped, or from the window's first status, whichever is later."""
        index = self.index
        starts: dict[TopicPartition, int | None] = dict.fromkeys(parts)
        try:
            found = await asyncio.wait_for(
                consumer.offsets_for_times(dict.fromkeys(parts, int(self.since() * 1000))), 10)
            # None: no status in the window yet; the next one will be at the end.
            starts = {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in parts}
        except (KafkaError, TimeoutError) as exc:  # a broker that cannot look offsets up by time
            log.info("offsets by time unavailable (%s); reading the status topic from its beginning", exc)
        for tp in parts:
            stored = index.position(tp.partition)
            if stored is not None and stored > ends[tp]:  # the topic was recreated: its offsets started again
                await self._in_thread(index.forget, tp.partition)
                stored = None
            start = max(x for x in (stored, starts[tp], 0) if x is not None)
            consumer.seek(tp, start)
