"""Agents: plain async functions over a stream, registered by the app factory. One job each."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from faust import StreamT

from consumers.deadletter import DeadLetters
from consumers.records import Record, header_map

log = logging.getLogger(__name__)

Handler = Callable[[Record], Awaitable[None]]


def to_record(event: object) -> Record:
    """A Faust `Event` as a `Record`."""
    message = event.message  # type: ignore[attr-defined]
    return Record(topic=message.topic, partition=message.partition, offset=message.offset,
                  key=message.key, value=message.value, headers=header_map(message.headers),
                  timestamp=message.timestamp)


def guarded_agent(handler: Handler, dead_letters: DeadLetters, stage: str) -> Callable[[StreamT], Awaitable[None]]:
    """Wrap a stage so that an unexpected exception dead-letters its record and the agent goes on.

    A stage reports expected failures itself; anything reaching here is a bug, recorded with its class.
    """

    async def agent(stream: StreamT) -> None:
        async for event in stream.events():
            record = to_record(event)
            try:
                await handler(record)
            except Exception as exc:
                log.exception("%s failed on %s[%d]@%d", stage, record.topic, record.partition, record.offset)
                # Dispatch records are keyed by message id, so the message gets its `dead_lettered` status.
                message_id = record.key.decode() if record.key and record.key.startswith(b"msg-") else None
                await dead_letters.send(record, reason="internal_error", detail=type(exc).__name__, stage=stage,
                                        error_class=type(exc).__name__, message_id=message_id)

    agent.__name__ = agent.__qualname__ = stage
    return agent
