"""`herald dlq list|replay`: read the dead-letter topic and send chosen records back where they came from. The
reading, choosing and republishing live in `consumers.pipeline.deadletter_replay` (the console replays too); this
module adds the terminal's table and the producer's lifetime.

A replay republishes each time it is asked: `herald dlq replay 0/17` run twice sends two copies (the router then
deduplicates an event it already accepted, by its idempotency key or id, within HERALD_DEDUPE_WINDOW)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from rich.table import Table

from consumers.cli.publish import start_or_close
from consumers.pipeline.deadletter_replay import (
    DeadLetter,
    Replay,
    dead_letter_from,
    parse_offsets,
    plan_replay,
    read_dead_letters,
    republish,
)
from consumers.topics import kafka_client_kwargs
from schemas.settings import Settings

__all__ = ["DeadLetter", "Replay", "cut", "dead_letter_from", "dead_letter_table", "dead_letters", "parse_offsets",
           "plan_replay", "replay"]


async def dead_letters(settings: Settings) -> list[DeadLetter]:
    """Every dead letter, partition by partition in offset order."""
    tail = await read_dead_letters(settings)
    return sorted(tail.letters, key=lambda d: (d.partition, d.offset))


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


async def replay(settings: Settings, *, offsets: set[str], reason: str | None, everything: bool) -> Replay:
    """Republish the chosen dead letters to their source topics, marked with `herald-replayed-from`; what was
    refused, and why, is in the result."""
    plan = plan_replay(await dead_letters(settings), offsets=offsets, reason=reason, everything=everything)
    if not plan.send:
        return plan
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings))
    await start_or_close(producer)
    try:
        await republish(producer, plan.send)
    finally:
        await producer.stop()
    return plan
