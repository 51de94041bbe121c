"""A Kafka record as the stages see it, and the publishing side they write to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


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


def header_map(raw: object) -> dict[str, bytes]:
    """Faust hands headers over as a mapping or a list of pairs; stages want a dict of bytes."""
    if not raw:
        return {}
    items = raw.items() if isinstance(raw, Mapping) else raw
    return {str(k): (v if isinstance(v, bytes) else str(v).encode()) for k, v in items}  # type: ignore[union-attr]
