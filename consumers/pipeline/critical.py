"""The critical lane: its own consumer, outside Faust's drain loop, so a code never waits behind a backlog.

One Faust app drains every topic through one consumer and one loop that hands out thousands of buffered records
per batch at the normal lane's pace; a critical record waited 23-50 s behind 20,000 normal ones there. In Kafka
there is no priority inside a partition or inside one consumer's fetch buffer, so the critical topics
(`events.critical`, `dispatch.*.critical`) are read here by an aiokafka consumer of their own, in a consumer
group of their own (`<app id>-critical`), with a short fetch wait and small batches.

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
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

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


class _Joined(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped: a base of type Any
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.event.set()


class Route:
    """How the lane handles one topic: its handler, and whether its records may be handled side by side
    (dispatches: yes, each is a message of its own; events: no, one person's events keep their order)."""

    def __init__(self, handler: Handler, *, concurrently: bool, stage: str) -> None:
        self.handler = handler
        self.concurrently = concurrently
        self.stage = stage


class CriticalLane:
    """Consumes `routes` (full topic name -> `Route`) until cancelled."""

    def __init__(self, settings: Settings, routes: Mapping[str, Route], dead_letters: DeadLetters, *,
                 ready: Callable[[], Awaitable[None]] | None = None) -> None:
        self.settings = settings
        self.routes = dict(routes)
        self.dead_letters = dead_letters
        self.ready = ready
        self._joined = _Joined()
        self.group_id = f"{settings.app_id}-critical"

    @property
    def joined(self) -> bool:
        """The lane's consumer has joined its group (it may own no partition: more workers than partitions)."""
        return self._joined.event.is_set()

    def _consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            **kafka_client_kwargs(s), group_id=self.group_id, client_id=f"{s.app_id}-critical",
            enable_auto_commit=False, auto_offset_reset="earliest",
            # Tansu re-checks its log during a long poll only every half of the remaining wait, and Faust's
            # fixed 1.5 s adds up to 0.7 s a hop; a short wait bounds that, at the cost of idle polls.
            fetch_max_wait_ms=s.critical_fetch_wait_ms, max_poll_records=s.critical_batch,
            session_timeout_ms=6000, heartbeat_interval_ms=1000, max_poll_interval_ms=60_000,
            max_partition_fetch_bytes=s.max_record_bytes + 65_536)

    async def run(self) -> None:
        if self.ready is not None:
            await self.ready()
        consumer = self._consumer()
        await consumer.start()
        consumer.subscribe(list(self.routes), listener=self._joined)
        log.info("critical lane started", extra={"group": self.group_id, "topics": len(self.routes)})
        # Each partition's batch runs on its own, its partition paused meanwhile, so an email code never waits for
        # a batch of SMS codes metered at one a second on another topic.
        in_flight: dict[TopicPartition, asyncio.Task[None]] = {}
        try:
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=self.settings.critical_fetch_wait_ms,
                                                     max_records=self.settings.critical_batch)
                except KafkaError as exc:  # the broker went away for a moment; the next poll reconnects
                    log.warning("critical lane fetch failed", extra={"error_class": type(exc).__name__})
                    await asyncio.sleep(0.5)
                    continue
                for tp, records in batches.items():
                    if not records:
                        continue
                    consumer.pause(tp)
                    task = asyncio.create_task(self._handle(consumer, tp, records), name=f"critical {tp}")
                    in_flight[tp] = task
                    task.add_done_callback(partial(self._done, consumer, in_flight, tp))
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

    @staticmethod
    def _done(consumer: AIOKafkaConsumer, in_flight: dict[TopicPartition, asyncio.Task[None]], tp: TopicPartition,
              task: asyncio.Task[None]) -> None:
        if in_flight.get(tp) is task:
            del in_flight[tp]
        if tp in consumer.assignment():  # a rebalance may have taken it meanwhile
            consumer.resume(tp)
