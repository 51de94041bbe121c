"""Faust agents of the normal lane: plain async functions over a stream, registered by the app factory.

Faust acknowledges an event when the agent moves past it, even when the agent is cancelled or dies on it, and
commits acknowledged offsets. So these agents never raise out of a record (`consumers.pipeline.outcomes` gives every
record an outcome), and when the worker stops mid-record they mark the unfinished events as settled without
acknowledging them: their offsets stay uncommitted and the next owner of the partition handles them again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from faust import Stream, StreamT
from faust.types import EventT

from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.outcomes import Handler, guarded, handle_batch
from consumers.pipeline.records import Record, header_map


def to_record(event: EventT[Any]) -> Record:
    """A Faust `Event` as a `Record`."""
    message = event.message
    return Record(topic=message.topic, partition=message.partition, offset=message.offset,
                  key=message.key, value=message.value, headers=header_map(message.headers),
                  timestamp=message.timestamp)


def hold_back(events: Iterable[EventT[Any]]) -> None:
    """Keep Faust from acknowledging these events on its way out: `Message.ack` does nothing for a message
    already marked acked, and the consumer never learns its offset, so no commit passes it."""
    for event in events:
        event.message.acked = True


BATCH_SIZE = 200
BATCH_WITHIN = 0.01  # seconds a lone record waits for company: the price of batching on an idle lane


def batched_agent(handler: Handler, dead_letters: DeadLetters,
                  stage: str) -> Callable[[StreamT[Any]], Awaitable[None]]:
    """In order, a batch at a time: what the handlers must not lose is acknowledged once per batch (before Faust
    may commit the batch's offsets) instead of once per record, and what records that it is done
    (`once_durable` steps, such as a dedupe key) runs only after those acknowledgements."""

    async def agent(stream: StreamT[Any]) -> None:
        # Faust hands an agent a `Stream`; the `StreamT` its agent type names does not declare `take_events`.
        async for events in cast("Stream[Any]", stream).take_events(BATCH_SIZE, within=BATCH_WITHIN):
            try:
                await handle_batch([to_record(e) for e in events], handler, stage=stage, dead_letters=dead_letters)
            except BaseException:  # cancelled: the worker is stopping in the middle of the batch
                hold_back(events)
                raise

    agent.__name__ = agent.__qualname__ = stage
    return agent


def guarded_agent(handler: Handler, dead_letters: DeadLetters,
                  stage: str) -> Callable[[StreamT[Any]], Awaitable[None]]:
    """One record at a time; an unexpected exception dead-letters its record and the agent goes on."""

    async def agent(stream: StreamT[Any]) -> None:
        async for event in stream.events():
            try:
                await guarded(handler, dead_letters, stage, to_record(event))
            except BaseException:
                hold_back([event])
                raise

    agent.__name__ = agent.__qualname__ = stage
    return agent
