"""Reading `herald.deadletter` back and sending chosen records where they came from: what `herald dlq` and the
console's dead-letter page share (the record format is written by `consumers.pipeline.deadletter`).

A dead letter is named by its position in the dead-letter topic, `PARTITION/OFFSET`. A replay republishes the
stored key and bytes to the record's source topic with the header `herald-replayed-from: P/O`. A dead letter
stored truncated (too large for the producer) is refused, as is one without a source topic, and one the caller
already replayed (`plan_replay(replayed=…)`): its bytes are not the original's, there is nowhere to send it, or it
went back once already.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import BaseModel, Field

from consumers.topics import reading_consumer, records_to_end
from schemas.settings import Settings

REPLAYED_FROM = "herald-replayed-from"  # header of a replayed record: the dead letter's PARTITION/OFFSET


class DeadLetter(BaseModel):
    """One record of the dead-letter topic, with its headers read into fields."""

    partition: int
    offset: int
    at: datetime
    reason: str
    error_class: str
    detail: str
    stage: str
    source_topic: str
    source_offset: str
    attempts: str
    message_id: str | None
    key: bytes | None
    value: bytes
    truncated: bool = False  # stored cut to fit the producer (value or key): not the original bytes
    original_size: int | None = None  # of the value, when it was cut
    source_partition: str = ""
    # Every header as stored (the console shows them); left out of `herald dlq list --json`, whose fields say it all.
    headers: dict[str, str] = Field(default_factory=dict, exclude=True)

    @property
    def where(self) -> str:
        return f"{self.partition}/{self.offset}"


def dead_letter_from(partition: int, offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None,
                     headers: Mapping[str, str]) -> DeadLetter:
    """A dead letter from its record and its decoded headers (see `consumers.pipeline.deadletter`)."""
    h = headers
    size = h.get("herald-original-size", "")
    return DeadLetter(
        partition=partition, offset=offset, at=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
        reason=h.get("herald-error", "?"), error_class=h.get("herald-error-class", "?"),
        detail=h.get("herald-error-detail", ""), stage=h.get("herald-stage", "?"),
        source_topic=h.get("herald-source-topic", ""), source_offset=h.get("herald-source-offset", ""),
        source_partition=h.get("herald-source-partition", ""),
        attempts=h.get("herald-attempts", "0"), message_id=h.get("herald-message-id"), key=key, value=value or b"",
        truncated=h.get("herald-truncated") == "true" or "herald-key-size" in h,
        original_size=int(size) if size.isdigit() else None, headers=dict(h))


def from_record(record: ConsumerRecord) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or [])}
    return dead_letter_from(record.partition, record.offset, record.timestamp, record.key, record.value, headers)


def parse_offsets(values: Iterable[str]) -> set[str]:
    """`0/17 1/4` as dead-letter positions (`DeadLetter.where`); a `ValueError` names a malformed one."""
    wanted = set()
    for value in values:
        partition, sep, offset = value.strip().partition("/")
        if not (sep and partition.isdigit() and offset.isdigit()):
            raise ValueError(f"{value!r} is not PARTITION/OFFSET, such as 0/17 (the first column of `dlq list`)")
        wanted.add(f"{int(partition)}/{int(offset)}")
    return wanted


@dataclass
class Replay:
    """The dead letters chosen for replay: those to send back, and those refused with why."""

    send: list[DeadLetter] = field(default_factory=list)
    refused: list[tuple[DeadLetter, str]] = field(default_factory=list)


def plan_replay(letters: Iterable[DeadLetter], *, offsets: set[str], reason: str | None, everything: bool,
                replayed: Mapping[str, str] | None = None) -> Replay:
    """Choose by offset, reason or all. A dead letter stored truncated is refused: its bytes are not the
    original's, and replaying them would make a different, broken record. One in `replayed` (position -> what
    became of it) is refused too: it went back once already, and a second copy is not what anyone asked for."""
    plan = Replay()
    for d in letters:
        if not (everything or d.where in offsets or (reason is not None and d.reason == reason)):
            continue
        if d.truncated:
            was = f"from {d.original_size:,} bytes" if d.original_size is not None else "(its key)"
            plan.refused.append((d, f"stored truncated {was}: not the original record, so not replayed"))
        elif not d.source_topic:
            plan.refused.append((d, "no source topic"))
        elif replayed is not None and d.where in replayed:
            plan.refused.append((d, f"already replayed ({replayed[d.where]})"))
        else:
            plan.send.append(d)
    return plan


# --- reading ----------------------------------------------------------------------------------------------------


@dataclass
class DeadLetterTail:
    """The newest dead letters (newest first), and how many records the topic holds in all."""

    letters: list[DeadLetter]
    total: int

    @property
    def more(self) -> int:
        """How many older records were not read."""
        return max(0, self.total - len(self.letters))


async def _started(consumer: AIOKafkaConsumer) -> None:
    """Start a consumer; when it cannot (Kafka unreachable), stop it before raising, so its half-open
    connections are closed now rather than reported as `Unclosed …` when it is collected."""
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise


async def read_dead_letters(settings: Settings, *, newest: int | None = None, idle_timeout: float = 1.0
                            ) -> DeadLetterTail:
    """The dead-letter topic without joining a group: every record, or (with `newest`) at most that many, the
    newest by time. Reads each partition from `newest` records before its end, so the cost is bounded."""
    consumer = reading_consumer(settings)
    await _started(consumer)
    try:
        topic = settings.topic("deadletter")
        await consumer.topics()  # fetches metadata so partitions_for_topic knows the topic
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        if not parts:
            return DeadLetterTail([], 0)
        consumer.assign(parts)
        first, end = await consumer.beginning_offsets(parts), await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, first[tp] if newest is None else max(first[tp], end[tp] - newest))
        records = [r async for r in records_to_end(consumer, parts, end, idle_timeout)]
    finally:
        await consumer.stop()
    last = {tp: end[tp] for tp in parts}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        last[tp] = max(last[tp], r.offset + 1)
    found = sorted((from_record(r) for r in records), key=lambda d: (d.at, d.partition, d.offset), reverse=True)
    total = sum(max(0, last[tp] - first[tp]) for tp in parts)
    return DeadLetterTail(found[:newest] if newest is not None else found, max(total, len(found)))


async def read_dead_letter(settings: Settings, partition: int, offset: int, *, idle_timeout: float = 2.0
                           ) -> DeadLetter | None:
    """The dead letter at `partition`/`offset`; None when the topic has no such record (any more)."""
    consumer = reading_consumer(settings)
    await _started(consumer)
    try:
        topic = settings.topic("deadletter")
        await consumer.topics()
        if partition not in (consumer.partitions_for_topic(topic) or set()):
            return None
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        if offset < (await consumer.beginning_offsets([tp]))[tp]:
            return None
        consumer.seek(tp, offset)
        # Not bounded by the end offset (see `records_to_end`): the first record at or past `offset`, or an empty poll.
        while records := (await consumer.getmany(tp, timeout_ms=int(idle_timeout * 1000))).get(tp, []):
            for record in records:
                if record.offset == offset:
                    return from_record(record)
                if record.offset > offset:  # a gap (a transaction marker, a compacted record): none there
                    return None
        return None
    finally:
        await consumer.stop()


# --- sending back -----------------------------------------------------------------------------------------------


class Producer(Protocol):
    """What `republish` needs of an aiokafka producer."""

    def send_and_wait(self, topic: str, value: bytes, *, key: bytes | None,
                      headers: list[tuple[str, bytes]]) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class Replayed:
    """Where a dead letter went back to: its source topic and, when the broker said, the new record's position."""

    where: str  # the dead letter's PARTITION/OFFSET
    topic: str
    partition: int | None = None
    offset: int | None = None

    @property
    def to(self) -> str:
        if self.partition is None:
            return self.topic
        return f"{self.topic} (partition {self.partition}, offset {self.offset})"


async def republish(producer: Producer, letters: Sequence[DeadLetter], sent: list[Replayed] | None = None
                    ) -> list[Replayed]:
    """Send each dead letter's key and bytes to its source topic, marked with `herald-replayed-from`, one at a
    time and awaited (a replay is a handful of records, and each one's outcome is reported). Each one sent is
    appended to `sent` as it goes, so a caller knows how far a replay got when a send raises."""
    done = sent if sent is not None else []
    for d in letters:
        meta = await producer.send_and_wait(d.source_topic, d.value, key=d.key,
                                            headers=[(REPLAYED_FROM, d.where.encode())])
        done.append(Replayed(d.where, d.source_topic, getattr(meta, "partition", None), getattr(meta, "offset", None)))
    return done
