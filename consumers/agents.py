"""Agents: plain async functions over a stream, registered by the app factory. One job each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from faust import StreamT

from consumers.deadletter import DeadLetters
from consumers.records import AFTER_ACKS, PENDING_ACKS, Record, header_map

log = logging.getLogger(__name__)

Handler = Callable[[Record], Awaitable[None]]


def to_record(event: object) -> Record:
    """A Faust `Event` as a `Record`."""
    message = event.message  # type: ignore[attr-defined]
    return Record(topic=message.topic, partition=message.partition, offset=message.offset,
                  key=message.key, value=message.value, headers=header_map(message.headers),
                  timestamp=message.timestamp)


async def _guarded(handler: Handler, dead_letters: DeadLetters, stage: str, record: Record) -> None:
    try:
        await handler(record)
    except Exception as exc:
        log.exception("%s failed on %s[%d]@%d", stage, record.topic, record.partition, record.offset)
        # Dispatch records are keyed by message id, so the message gets its `dead_lettered` status.
        message_id = record.key.decode() if record.key and record.key.startswith(b"msg-") else None
        await dead_letters.send(record, reason="internal_error", detail=type(exc).__name__, stage=stage,
                                error_class=type(exc).__name__, message_id=message_id)


BATCH_SIZE = 200
BATCH_WITHIN = 0.01  # seconds a lone record waits for company: the price of batching on an idle lane


def batched_agent(handler: Handler, dead_letters: DeadLetters, stage: str) -> Callable[[StreamT], Awaitable[None]]:
    """Like `guarded_agent`, in order, a batch at a time: what the handlers must not lose is acknowledged once
    per batch (before Faust may commit the batch's offsets) instead of once per record, and what records that
    it is done (`once_durable` steps, such as a dedupe key) runs only after those acknowledgements."""

    async def agent(stream: StreamT) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN):
            acks: list[Awaitable[object]] = []
            later: list[Callable[[], Awaitable[None]]] = []
            tokens = PENDING_ACKS.set(acks), AFTER_ACKS.set(later)
            try:
                for event in events:
                    await _guarded(handler, dead_letters, stage, to_record(event))
            finally:
                PENDING_ACKS.reset(tokens[0])
                AFTER_ACKS.reset(tokens[1])
            if acks:
                await asyncio.gather(*acks)
            for step in later:
                await step()

    agent.__name__ = agent.__qualname__ = stage
    return agent


def guarded_agent(handler: Handler, dead_letters: DeadLetters, stage: str) -> Callable[[StreamT], Awaitable[None]]:
    """Wrap a stage so that an unexpected exception dead-letters its record and the agent goes on.

    A stage reports expected failures itself; anything reaching here is a bug, recorded with its class.
    """

    async def agent(stream: StreamT) -> None:
        async for event in stream.events():
            await _guarded(handler, dead_letters, stage, to_record(event))

    agent.__name__ = agent.__qualname__ = stage
    return agent
