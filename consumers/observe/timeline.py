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
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumers.observe.timeline_index import MessageTimeline, MessageTimelines, Row, TimelineIndex

__all__ = ["MessageTimeline", "MessageTimelines", "StatusTimeline", "TimelineIndex", "TopicReader"]

log = logging.getLogger(__name__)

class TopicIndex(Protocol):
    """What a `TopicReader` writes to: rows of a topic, with the offset each partition was read to."""

    def add(self, rows: Iterable[Row], positions: Mapping[int, int], *, since: float | None = None) -> int: ...
    def prune(self, before: float) -> int: ...
    def forget(self, partition: int) -> None: ...
    def position(self, partition: int) -> int | None: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


IndexT = TypeVar("IndexT", bound=TopicIndex)


class TopicReader(Generic[IndexT]):
    """Reads every partition of `topic` into an index file at `path` (opened with `open_index`): `run` keeps it up
    to date (a worker's background task), `catch_up` reads to the end once (`herald trace`)."""

    def __init__(self, topic: str, client_kwargs: Mapping[str, Any], path: Path | str, *, retention: timedelta,
                 open_index: Callable[[Path], IndexT], clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 poll_ms: int = 500, batch: int = 2000, prune_interval: float = 60.0) -> None:
        self.topic = topic
        self.client_kwargs = dict(client_kwargs)
        self.path = Path(path)
        self.retention = retention
        self.open_index = open_index
        self.clock = clock
        self.poll_ms = poll_ms
        self.batch = batch
        self.prune_interval = prune_interval
        self.caught_up = False  # read to the end the topic had when reading started
        self._index: IndexT | None = None
        self._writing: asyncio.Future[Any] | None = None  # the write running in a thread, if any
        # Called on the event loop with each batch of records once indexed (the console's live tail).
        self.listeners: list[Callable[[list[bytes]], None]] = []

    @property
    def index(self) -> IndexT:
        """The index, opened on first use (an app that never runs the task never creates the file)."""
        if self._index is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._index = self.open_index(self.path)
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
                    log.warning("index of %s stopped reading (%s); again in 5 s", self.topic, exc)
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
                    log.info("caught up", extra={"topic": self.topic, "records": index.count()})
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
                    self._tell([value for _, _, value in rows if value])
        finally:
            await consumer.stop()

    def _tell(self, values: list[bytes]) -> None:
        for listener in list(self.listeners):
            try:
                listener(values)
            except Exception:  # a listener's bug must not stop the index
                log.exception("timeline listener failed")

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


class StatusTimeline(TopicReader[TimelineIndex]):
    """The message timeline: herald.status read into a `TimelineIndex`."""

    def __init__(self, topic: str, client_kwargs: Mapping[str, Any], path: Path | str, *, retention: timedelta,
                 **options: Any) -> None:
        super().__init__(topic, client_kwargs, path, retention=retention, open_index=TimelineIndex, **options)
