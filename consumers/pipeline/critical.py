"""The critical lane: its own consumer, outside Faust's drain loop, so a code never waits behind a backlog.

One Faust app drains every topic through one consumer and one loop that hands out thousands of buffered records
per batch at the normal lane's pace; a critical record waited 23-50 s behind 20,000 normal ones there. In Kafka
there is no priority inside a partition or inside one consumer's fetch buffer, so the critical topics
(`events.critical`, `dispatch.*.critical`, and `receipts`, so a code's delivery receipt is applied before its
receipt wait ends) are read here by an aiokafka consumer of their own, on the worker's own partitions (see
`CriticalLane`), with a short fetch wait and small batches.

The guarantees are the normal lane's: every record of a batch gets an outcome (handled, or dead-lettered with a
status) and every write it made is acknowledged by the broker (`consumers.pipeline.outcomes.handle_batch`) before the
batch's offsets are committed; commits are contiguous because a batch is committed only as a whole; sends are
idempotent through the send ledger, so a batch handled again after a crash or a rebalance sends nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from consumers.ownership import Ownership
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.outcomes import Handler, handle_batch
from consumers.pipeline.records import Record, header_map
from consumers.topics import kafka_client_kwargs
from schemas.settings import Settings

log = logging.getLogger(__name__)


def to_record(message: ConsumerRecord) -> Record:
    return Record(topic=message.topic, partition=message.partition, offset=message.offset, key=message.key,
                  value=message.value, headers=header_map(message.headers),
                  timestamp=message.timestamp / 1000 if message.timestamp else None)


class Route:
    """How the lane handles one topic: its handler, and whether its records may be handled side by side
    (dispatches: yes, each is a message of its own; events: no, one person's events keep their order)."""

    def __init__(self, handler: Handler, *, concurrently: bool, stage: str) -> None:
        self.handler = handler
        self.concurrently = concurrently
        self.stage = stage


class CriticalLane:
    """Consumes `routes` (full topic name -> `Route`) on the partitions `ownership` says are this worker's, until
    cancelled.

    The lane does not join a group of its own: it reads the same partition numbers as the worker owns in the normal
    lane (one assignment for both lanes), so a critical event finds its recipient's state, and a critical dispatch
    its send record, on this worker. Its consumer group (`<app id>-critical`) only keeps its offsets. When a
    rebalance takes partitions away, the batches in flight on them finish and commit before the worker lets them go
    (revocations are awaited inside Faust's own), so their new owner starts where this one stopped.
    """

    def __init__(self, settings: Settings, routes: Mapping[str, Route], dead_letters: DeadLetters, *,
                 ownership: Ownership, ready: Callable[[int | None], Awaitable[None]] | None = None) -> None:
        """`ready(partition)` returns once the state of a partition is read; `ready(None)`, of all that is owned
        (at start: the replicated stores), which the lane waits for before it says it is up (`joined`)."""
        self.settings = settings
        self.routes = dict(routes)
        self.dead_letters = dead_letters
        self.ownership = ownership
        self.ready = ready
        self.group_id = f"{settings.app_id}-critical"
        self._started = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._in_flight: dict[TopicPartition, asyncio.Task[None]] = {}
        self._leaving: set[int] = set()

    @property
    def joined(self) -> bool:
        """The lane's consumer is up (it may own no partition: more workers than partitions)."""
        return self._started.is_set()

    def _consumer_for(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            **kafka_client_kwargs(s), group_id=self.group_id, client_id=f"{s.app_id}-critical",
            enable_auto_commit=False, auto_offset_reset="earliest",
            # Tansu re-checks its log during a long poll only every half of the remaining wait, and Faust's
            # fixed 1.5 s adds up to 0.7 s a hop; a short wait bounds that, at the cost of idle polls.
            fetch_max_wait_ms=s.critical_fetch_wait_ms, max_poll_records=s.critical_batch,
            max_partition_fetch_bytes=s.max_record_bytes + 65_536)

    def wanted(self) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for topic in sorted(self.routes) for p in sorted(self.ownership.partitions)]

    async def _follow(self, assigned: frozenset[int], revoked: frozenset[int]) -> None:
        """Take the worker's new partitions; let go of the old ones once their batches are committed."""
        consumer = self._consumer
        if consumer is None:
            return
        if revoked:
            self._leaving |= revoked  # no new batch starts on them, and a finished one does not resume them
            for tp in consumer.assignment():
                if tp.partition in revoked:
                    consumer.pause(tp)
            leaving = [task for tp, task in self._in_flight.items() if tp.partition in revoked]
            await asyncio.gather(*leaving, return_exceptions=True)
        consumer.assign(self.wanted())  # each partition resumes from the group's last commit
        self._leaving -= revoked
        log.info("critical lane partitions", extra={"owned": sorted(self.ownership.partitions)})

    async def run(self) -> None:
        if self.ready is not None:
            await self.ready(None)
        consumer = self._consumer = self._consumer_for()
        await consumer.start()
        self.ownership.on_change(self._follow)
        consumer.assign(self.wanted())
        self._started.set()
        log.info("critical lane started", extra={"group": self.group_id, "topics": len(self.routes)})
        # Each partition's batch runs on its own, its partition paused meanwhile, so an email code never waits for
        # a batch of SMS codes metered at one a second on another topic.
        in_flight = self._in_flight
        try:
            while True:
                if not consumer.assignment():
                    await asyncio.sleep(0.1)  # owns nothing (yet)
                    continue
                try:
                    batches = await consumer.getmany(timeout_ms=self.settings.critical_fetch_wait_ms,
                                                     max_records=self.settings.critical_batch)
                except KafkaError as exc:  # the broker went away for a moment; the next poll reconnects
                    log.warning("critical lane fetch failed", extra={"error_class": type(exc).__name__})
                    await asyncio.sleep(0.5)
                    continue
                for tp, records in batches.items():
                    if not records or tp not in consumer.assignment():
                        continue
                    if tp in in_flight or tp.partition in self._leaving:
                        consumer.seek(tp, records[0].offset)  # not now: read them again, never skip them
                        continue
                    consumer.pause(tp)
                    task = asyncio.create_task(self._handle(consumer, tp, records), name=f"critical {tp}")
                    in_flight[tp] = task
                    task.add_done_callback(partial(self._done, consumer, tp))
        finally:
            for task in in_flight.values():
                task.cancel()
            await asyncio.gather(*in_flight.values(), return_exceptions=True)
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _handle(self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Sequence[ConsumerRecord]
                      ) -> None:
        """One partition's batch until every record has a durable outcome, then its commit (so commits are
        contiguous: a batch is committed only as a whole, after the one before it)."""
        route = self.routes[tp.topic]
        if self.ready is not None:
            await self.ready(tp.partition)
        try:
            await handle_batch([to_record(r) for r in records], route.handler, stage=route.stage,
                               dead_letters=self.dead_letters, concurrently=route.concurrently)
        except Exception:  # handle_batch gives every record an outcome; should it ever fail, skip nothing
            log.exception("critical lane batch failed; it is read again", extra={"stage": route.stage})
            if tp in consumer.assignment():
                consumer.seek(tp, records[0].offset)
            return
        try:
            await consumer.commit({tp: records[-1].offset + 1})
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partition mid-batch: its new owner starts from the last commit, and the send
            # ledger keeps what this worker already sent from going out twice.
            log.warning("critical lane commit failed", extra={"error_class": type(exc).__name__})

    def _done(self, consumer: AIOKafkaConsumer, tp: TopicPartition, task: asyncio.Task[None]) -> None:
        if self._in_flight.get(tp) is task:
            del self._in_flight[tp]
        # A rebalance may have taken it meanwhile, or be about to.
        if tp in consumer.assignment() and tp.partition not in self._leaving:
            consumer.resume(tp)
