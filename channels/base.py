"""The contract every provider meets: one small Protocol, one result type, one outbound message type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from channels.render import Rendered


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What a provider sends: a rendered message for one address, with Herald's ids for correlation."""

    message_id: str
    channel: str
    address: str
    rendered: Rendered
    idempotency_key: str
    display_name: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    """A provider accepted the message."""

    provider: str
    provider_message_id: str | None
    accepted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    detail: str | None = None


@runtime_checkable
class Sender(Protocol):
    """A provider for one channel. `send` raises `DeliveryError` on failure; it never returns False."""

    name: str
    channel: str

    async def start(self) -> None: ...

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def close(self) -> None: ...
