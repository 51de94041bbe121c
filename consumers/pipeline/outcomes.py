"""Every record gets an outcome before its offset may be committed: handled, or dead-lettered with a status.

Shared by both lanes (the Faust agents of the normal lane, the critical lane's own consumer). Nothing here
raises but cancellation: a record whose handler fails is dead-lettered, a dead letter that cannot be written is
tried again until it is, and a batch whose writes the broker did not acknowledge is handled again, so the
caller never commits past a record that has no durable outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence

from consumers.identity import record_message_id
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.records import AFTER_ACKS, PENDING_ACKS, UNDO, Record

log = logging.getLogger(__name__)

Handler = Callable[[Record], Awaitable[None]]

RETRY_FIRST = 0.1  # seconds before the first retry of a failed write; doubles up to RETRY_CAP
RETRY_CAP = 5.0


def message_id_of(record: Record) -> str:
    """The id a record's statuses go under: a dispatch's own message id, else one derived from where the
    record sits (stable across redeliveries)."""
    if record.key and record.key.startswith(b"msg-") and len(record.key) < 64:
        return record.key.decode(errors="replace")
    return record_message_id(record.topic, record.partition, record.offset)


async def guarded(handler: Handler, dead_letters: DeadLetters, stage: str, record: Record) -> None:
    """Run `handler`; an exception it raises is a bug, and the record is dead-lettered with its class and a
    `dead_lettered` status. Returns only once the record has an outcome."""
    try:
        await handler(record)
    except Exception as exc:
        log.exception("%s failed on %s[%d]@%d", stage, record.topic, record.partition, record.offset)
        await _dead_letter(dead_letters, stage, record, exc)


async def _dead_letter(dead_letters: DeadLetters, stage: str, record: Record, exc: Exception) -> None:
    delay = RETRY_FIRST
    while True:
        try:
            await dead_letters.send(record, reason="internal_error", detail=type(exc).__name__, stage=stage,
                                    error_class=type(exc).__name__, message_id=message_id_of(record))
            return
        except Exception as failure:
            # The record has no outcome yet, so its offset must not be committed: the partition waits (lag and
            # this metric show it) rather than lose it.
            dead_letters.metrics.dead_letter_failures.labels(stage).inc()
            log.error("dead letter not written; trying again", extra={
                "stage": stage, "topic": record.topic, "partition": record.partition, "offset": record.offset,
                "error_class": type(failure).__name__})
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP)


class Batch:
    """What the records of one batch published and must see acknowledged, what waits for that, and what undoes
    in-memory decisions if it fails (see `consumers.pipeline.records.once_durable`)."""

    def __init__(self) -> None:
        self.acks: list[Awaitable[object]] = []
        self.after: list[Callable[[], Awaitable[None]]] = []
        self.undo: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        tokens = PENDING_ACKS.set(self.acks), AFTER_ACKS.set(self.after), UNDO.set(self.undo)
        try:
            yield
        finally:
            PENDING_ACKS.reset(tokens[0])
            AFTER_ACKS.reset(tokens[1])
            UNDO.reset(tokens[2])


async def handle_batch(records: Sequence[Record], handle: Handler, *, stage: str, dead_letters: DeadLetters,
                       concurrently: bool = False) -> None:
    """Handle `records` (in order, or `concurrently`) until every one has an outcome the broker acknowledged,
    then run what waited for the acknowledgements. Raises nothing but cancellation."""
    delay = RETRY_FIRST
    while True:
        batch = Batch()
        with batch.collecting():
            if concurrently:
                await asyncio.gather(*(guarded(handle, dead_letters, stage, r) for r in records))
            else:
                for record in records:
                    await guarded(handle, dead_letters, stage, record)
        results = await asyncio.gather(*batch.acks, return_exceptions=True)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is None:
            break
        # A write the broker refused or never confirmed: the batch is handled again from its first record
        # (sends are idempotent through the send ledger; a status may repeat, a message may not be lost).
        for undo in reversed(batch.undo):
            undo()
        dead_letters.metrics.batch_retries.labels(stage).inc()
        log.error("batch writes not acknowledged; handling the batch again",
                  extra={"stage": stage, "records": len(records), "error_class": type(failed).__name__})
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_CAP)
    for step in batch.after:
        try:
            await step()
        except Exception:  # state that says "done" (a dedupe key): the send ledger still stops a duplicate
            log.exception("post-acknowledgement step failed", extra={"stage": stage})
