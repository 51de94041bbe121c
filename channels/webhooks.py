"""What providers hear back: a framework-neutral inbound request, and what a provider makes of it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from schemas.settings import Settings
from schemas.status import Status


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """An HTTP request as the provider sent it. `url` is the full public URL (Twilio signs it)."""

    method: str
    url: str
    headers: Mapping[str, str]  # keys lower-case
    query: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def form(self) -> dict[str, str]:
        """The body as `application/x-www-form-urlencoded` fields (last value wins)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A delivery receipt. `status` is None when the vendor's word is not in the provider's STATUS_MAP."""

    message_id: str | None
    provider_message_id: str | None
    status: Status | None
    vendor_status: str
    detail: str | None = None
    at: datetime | None = None
    address: str | None = None  # the recipient's address as the vendor names it (E.164 with '+', email)
    recipient_id: str | None = None  # when the vendor echoes Herald's recipient id


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A person wrote or pressed keys: SMS/WhatsApp text, or voice keypad digits."""

    channel: str
    sender: str
    text: str | None = None
    digits: str | None = None
    message_id: str | None = None  # Herald's message it answers, when the vendor tells us
    recipient_id: str | None = None
    provider_message_id: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What to answer the provider (TwiML for a voice gather, a challenge for Meta's handshake…)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"


@dataclass(slots=True)
class WebhookResult:
    statuses: list[StatusUpdate] = field(default_factory=list)
    inbound: list[InboundMessage] = field(default_factory=list)
    response: WebhookResponse = field(default_factory=WebhookResponse)


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def callback_url(settings: Settings, channel: str, vendor: str, message: Any = None, **extra: str) -> str:
    """Herald's webhook URL for a provider, with the message id in the query so a receipt finds its message."""
    params = {"message_id": message.message_id, **extra} if message is not None else dict(extra)
    url = f"{settings.public_url.rstrip('/')}/webhooks/{channel}/{vendor}"
    return f"{url}?{urlencode(params)}" if params else url
