"""`herald dlq list|replay`: read the dead-letter topic and send chosen records back where they came from."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel
from rich.table import Table

from consumers.publish import read_topic
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


async def dead_letters(settings: Settings) -> list[DeadLetter]:
    found = []
    async for record in read_topic(settings, "deadletter"):
        h = {k: v.decode(errors="replace") for k, v in (record.headers or [])}
        found.append(DeadLetter(
            partition=record.partition, offset=record.offset, at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            reason=h.get("herald-error", "?"), error_class=h.get("herald-error-class", "?"),
            detail=h.get("herald-error-detail", ""), stage=h.get("herald-stage", "?"),
            source_topic=h.get("herald-source-topic", ""), source_offset=h.get("herald-source-offset", ""),
            attempts=h.get("herald-attempts", "0"), message_id=h.get("herald-message-id"), key=record.key,
            value=record.value or b""))
    return found


def dead_letter_table(letters: list[DeadLetter]) -> Table:
    table = Table(title=f"{len(letters)} dead letters", header_style="bold")
    for column in ("offset", "at", "stage", "reason", "class", "tries", "source", "detail"):
        table.add_column(column)
    for d in letters:
        table.add_row(f"{d.partition}/{d.offset}", d.at.strftime("%m-%d %H:%M:%S"), d.stage, d.reason, d.error_class,
                      d.attempts, f"{d.source_topic}@{d.source_offset}", d.detail[:60])
    return table


async def replay(settings: Settings, *, offsets: set[str], reason: str | None, everything: bool) -> int:
    """Republish the chosen dead letters to their source topics, marked with `herald-replayed-from`."""
    chosen = [d for d in await dead_letters(settings)
              if everything or f"{d.partition}/{d.offset}" in offsets or (reason is not None and d.reason == reason)]
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings))
    await producer.start()
    try:
        for d in chosen:
            if not d.source_topic:
                continue
            await producer.send_and_wait(d.source_topic, d.value, key=d.key,
                                         headers=[("herald-replayed-from", f"{d.partition}/{d.offset}".encode())])
    finally:
        await producer.stop()
    return len(chosen)
