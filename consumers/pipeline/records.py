"""A Kafka record as the stages see it, and the publishing side they write to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from consumers.topics import dispatch_topic
from schemas.dispatch import Dispatch


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, detached from Faust so stages can be tested without it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes] = field(default_factory=dict)
    timestamp: float | None = None


class Publisher(Protocol):
    """Sends a record to a topic named by its short name (`status`, `dispatch.email`, `deadletter`)."""

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Mapping[str, bytes] | None = None, *, durable: bool = False) -> None: ...


async def publish_dispatch(publisher: Publisher, d: Dispatch) -> None:
    """Publish a dispatch on its channel's lane (critical or normal), keyed by message id. Durable: the record
    that led to it is committed only once the broker has it."""
    topic = dispatch_topic(d.channel, critical=d.priority == "critical")
    await publisher.send(topic, d.message_id.encode(), d.model_dump_json().encode(), durable=True)


# When an agent handles records in batches, acknowledgements it must wait for are collected here and awaited
# once per batch; work that may only happen after them (state that says "done") waits in AFTER_ACKS, and what
# undoes a decision taken in memory, should the acknowledgements fail and the batch be handled again, in UNDO.
PENDING_ACKS: ContextVar[list[Awaitable[object]] | None] = ContextVar("herald_pending_acks", default=None)
AFTER_ACKS: ContextVar[list[Callable[[], Awaitable[None]]] | None] = ContextVar("herald_after_acks", default=None)
UNDO: ContextVar[list[Callable[[], None]] | None] = ContextVar("herald_undo", default=None)


async def once_durable(step: Callable[[], Awaitable[None]], undo: Callable[[], None] | None = None) -> None:
    """Run `step` once everything published so far is acknowledged: now, or at the end of the current batch.
    `undo` reverts what the caller decided in memory if the batch's acknowledgements fail instead."""
    later = AFTER_ACKS.get()
    if later is None:
        await step()
        return
    later.append(step)
    undos = UNDO.get()
    if undo is not None and undos is not None:
        undos.append(undo)


def header_map(raw: Mapping[Any, object] | Iterable[tuple[object, object]] | None) -> dict[str, bytes]:
    """Faust hands headers over as a mapping or a list of pairs; stages want a dict of bytes."""
    if not raw:
        return {}
    items = raw.items() if isinstance(raw, Mapping) else raw
    return {str(k): (v if isinstance(v, bytes) else str(v).encode()) for k, v in items}
