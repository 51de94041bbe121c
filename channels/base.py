"""The contract every provider meets: one small Protocol, one result type, one outbound message type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from channels.rendering.render import Rendered
from channels.webhooks import WebhookRequest, WebhookResult


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message (email) or served behind a signed link (SMS)."""

    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What a provider sends: a rendered message for one address, with Herald's ids for correlation.

    `metadata` carries what a provider may echo back through the vendor (always `message_id`, and
    `recipient_id`), so a webhook finds its message without a lookup table.
    """

    message_id: str
    channel: str
    address: str
    rendered: Rendered
    idempotency_key: str
    display_name: str | None = None
    locale: str = "en"
    event_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)  # catalog hints, e.g. a voice keypad menu


@dataclass(frozen=True, slots=True)
class SendResult:
    """A provider accepted the message."""

    provider: str
    provider_message_id: str | None
    accepted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    detail: str | None = None
    segments: int | None = None  # SMS: the parts it is sent (and billed) in


@runtime_checkable
class Sender(Protocol):
    """A provider for one channel. `send` raises `DeliveryError` on failure; it never returns False.

    Optionally, `rate_limit_metering()` declares how its vendor meters sends (`channels.resilience.ratelimit.Metered`).
    """

    name: str
    channel: str

    async def start(self) -> None: ...

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def close(self) -> None: ...


@runtime_checkable
class WebhookReceiver(Protocol):
    """A provider that calls Herald back (receipts, inbound messages, keypad digits).

    `verify_webhook` checks the vendor's signature; `parse_webhook` runs only on verified requests and maps
    vendor words through the provider's `STATUS_MAP` (unknown words become `None`, never a guess).
    """

    name: str
    channel: str
    STATUS_MAP: ClassVar[Mapping[str, Any]]

    def verify_webhook(self, request: WebhookRequest) -> bool: ...

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult: ...
