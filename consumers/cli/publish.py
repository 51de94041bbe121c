"""Client side of Herald's topics: publish events, read statuses and dead letters (used by the CLI and tests)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from consumers.topics import event_lane, kafka_client_kwargs, reading_consumer, records_to_end
from schemas.catalog import Catalog
from schemas.settings import Settings
from schemas.status import DeliveryStatus


def make_event(event_type: str, to: Mapping[str, Any], payload: Mapping[str, Any], *,
               source: str = "herald/cli", **extensions: Any) -> dict[str, Any]:
    """A structured-mode CloudEvent as a dict, ready to be JSON-encoded."""
    event = {"specversion": "1.0", "id": f"evt-{uuid.uuid4().hex[:12]}", "source": source, "type": event_type,
             "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "subject": to.get("id"),
             "datacontenttype": "application/json", "data": {"to": dict(to), "payload": dict(payload)}}
    event.update({k: v for k, v in extensions.items() if v is not None})
    return event


def ingest_topic(settings: Settings, catalog: Catalog | None, event_type: str) -> str:
    """The lane an upstream service should use for a type: critical types on the critical lane."""
    return settings.topic(event_lane(catalog, event_type))


async def start_or_close(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    """Start an aiokafka client; when it cannot (Kafka unreachable), stop it before raising, so that its
    half-open connections are closed now rather than reported as `Unclosed …` when it is collected."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise


class TopicPublisher:
    """A `consumers.pipeline.records.Publisher` over a plain aiokafka producer, for tools outside a worker
    (`herald forget` publishes its `cancelled` statuses through it). Every send is awaited: a tool has no batch to
    wait for."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = AIOKafkaProducer(**kafka_client_kwargs(settings))

    async def __aenter__(self) -> TopicPublisher:
        await start_or_close(self.producer)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Mapping[str, bytes] | None = None, *, durable: bool = False) -> None:
        await self.producer.send_and_wait(self.settings.topic(topic), value, key=key,
                                          headers=list((headers or {}).items()) or None)


class EventProducer:
    """A thin aiokafka producer for CloudEvents, keyed by recipient id."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.producer = AIOKafkaProducer(**kafka_client_kwargs(settings), linger_ms=5)

    async def __aenter__(self) -> EventProducer:
        await start_or_close(self.producer)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def publish(self, event: Mapping[str, Any], *, topic: str | None = None, wait: bool = False) -> None:
        topic = topic or ingest_topic(self.settings, self.catalog, str(event.get("type", "")))
        key = str(event.get("data", {}).get("to", {}).get("id", "")).encode() or None
        future = await self.producer.send(topic, orjson.dumps(event), key=key)
        if wait:
            await future

    async def publish_raw(self, value: bytes, *, key: bytes | None = None, topic: str | None = None,
                          headers: list[tuple[str, bytes]] | None = None) -> None:
        await self.producer.send_and_wait(topic or self.settings.topic("events"), value, key=key, headers=headers)

    async def flush(self) -> None:
        await self.producer.flush()


async def read_topic(settings: Settings, short: str, *, follow: bool = False,
                     idle_timeout: float = 1.0) -> AsyncIterator[ConsumerRecord]:
    """Every record of a topic from the beginning, without joining a group; stops at the end unless `follow`."""
    consumer = reading_consumer(settings)
    await start_or_close(consumer)
    try:
        topic = settings.topic(short)
        await consumer.topics()  # fetches metadata so partitions_for_topic knows the topic
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        if not parts:
            return
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        if not follow:
            async for record in records_to_end(consumer, parts, await consumer.end_offsets(parts), idle_timeout):
                yield record
            return
        while True:
            for records in (await consumer.getmany(timeout_ms=int(idle_timeout * 1000))).values():
                for record in records:
                    yield record
    finally:
        await consumer.stop()


async def read_batches(settings: Settings, short: str, *, follow: bool = False,
                       idle_timeout: float = 1.0) -> AsyncIterator[list[ConsumerRecord]]:
    """A topic from the beginning, without joining a group, in batches: first one list of every record up to the
    end the topic had when reading started (so that a reader can sort it), then, with `follow`, each new batch as
    it arrives. A `LookupError` when the topic does not exist."""
    consumer = AIOKafkaConsumer(**kafka_client_kwargs(settings), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await start_or_close(consumer)
    try:
        topic = settings.topic(short)
        await consumer.topics()  # fetches metadata so partitions_for_topic knows the topic
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} does not exist (HERALD_KAFKA_BOOTSTRAP, HERALD_TOPIC_PREFIX)")
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        backlog: list[ConsumerRecord] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=int(idle_timeout * 1000))
            backlog.extend(record for records in batch.values() for record in records)
        yield backlog
        while follow:
            batch = await consumer.getmany(timeout_ms=int(idle_timeout * 1000))
            if arrived := [record for records in batch.values() for record in records]:
                yield arrived
    finally:
        await consumer.stop()


def parse_status(record: ConsumerRecord) -> DeliveryStatus:
    return DeliveryStatus.model_validate_json(record.value)
