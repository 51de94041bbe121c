"""`herald dlq list|replay`: read the dead-letter topic and send chosen records back where they came from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel
from rich.table import Table

from consumers.cli.publish import read_topic, start_or_close
from consumers.topics import kafka_client_kwargs
from schemas.settings import Settings


class DeadLetter(BaseModel):
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
        attempts=h.get("herald-attempts", "0"), message_id=h.get("herald-message-id"), key=key, value=value or b"",
        truncated=h.get("herald-truncated") == "true" or "herald-key-size" in h,
        original_size=int(size) if size.isdigit() else None)


async def dead_letters(settings: Settings) -> list[DeadLetter]:
    found = []
    async for record in read_topic(settings, "deadletter"):
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or [])}
        found.append(dead_letter_from(record.partition, record.offset, record.timestamp, record.key, record.value,
                                      headers))
    return found


def parse_offsets(values: Iterable[str]) -> set[str]:
    """`0/17 1/4` as dead-letter positions (`DeadLetter.where`); a `ValueError` names a malformed one."""
    wanted = set()
    for value in values:
        partition, sep, offset = value.strip().partition("/")
        if not (sep and partition.isdigit() and offset.isdigit()):
            raise ValueError(f"{value!r} is not PARTITION/OFFSET, such as 0/17 (the first column of `dlq list`)")
        wanted.add(f"{int(partition)}/{int(offset)}")
    return wanted


def cut(d: DeadLetter) -> str:
    """How a dead letter was stored: empty when whole, else what it was cut from."""
    if not d.truncated:
        return ""
    return f"from {d.original_size:,} B" if d.original_size is not None else "key"


def dead_letter_table(letters: list[DeadLetter]) -> Table:
    table = Table(title=f"{len(letters)} dead letters", header_style="bold")
    for column in ("offset", "at", "stage", "reason", "class", "tries", "source", "truncated", "detail"):
        table.add_column(column)
    for d in letters:
        table.add_row(d.where, d.at.strftime("%m-%d %H:%M:%S"), d.stage, d.reason, d.error_class,
                      d.attempts, f"{d.source_topic}@{d.source_offset}", cut(d), d.detail[:60])
    return table


@dataclass
class Replay:
    """The dead letters chosen for replay: those to send back, and those refused with why."""

    send: list[DeadLetter] = field(default_factory=list)
    refused: list[tuple[DeadLetter, str]] = field(default_factory=list)


def plan_replay(letters: Iterable[DeadLetter], *, offsets: set[str], reason: str | None, everything: bool
                ) -> Replay:
    """Choose by offset, reason or all. A dead letter stored truncated is refused: its bytes are not the
    original's, and replaying them would make a different, broken record."""
    plan = Replay()
    for d in letters:
        if not (everything or d.where in offsets or (reason is not None and d.reason == reason)):
            continue
        if d.truncated:
            was = f"from {d.original_size:,} bytes" if d.original_size is not None else "(its key)"
            plan.refused.append((d, f"stored truncated {was}: not the original record, so not replayed"))
        elif not d.source_topic:
            plan.refused.append((d, "no source topic"))
        else:
            plan.send.append(d)
    return plan


async def replay(settings: Settings, *, offsets: set[str], reason: str | None, everything: bool) -> Replay:
    """Republish the chosen dead letters to their source topics, marked with `herald-replayed-from`; what was
    refused, and why, is in the result."""
    plan = plan_replay(await dead_letters(settings), offsets=offsets, reason=reason, everything=everything)
    if not plan.send:
        return plan
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings))
    await start_or_close(producer)
    try:
        for d in plan.send:
            await producer.send_and_wait(d.source_topic, d.value, key=d.key,
                                         headers=[("herald-replayed-from", d.where.encode())])
    finally:
        await producer.stop()
    return plan
