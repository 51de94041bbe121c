"""What providers hear back: a framework-neutral inbound request, and what a provider makes of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from schemas.settings import Settings
from schemas.status import Status


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """An HTTP request as the provider sent it. `url` is the full public URL (Twilio signs it).

    `received_at` is when Herald received it, on Herald's clock (`HearBack` sets it): providers check a vendor's
    signed timestamp against it, so tests run on simulated time. Unset, a provider reads its own clock.
    """

    method: str
    url: str
    headers: Mapping[str, str]  # keys lower-case
    query: Mapping[str, str]
    body: bytes
    received_at: datetime | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def form(self) -> dict[str, str]:
        """The body as `application/x-www-form-urlencoded` fields (last value wins)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def json(self) -> Any:
        """The body as JSON (an empty body is None). Raises ValueError for anything that is not strict JSON,
        including what Python's own parser lets through or crashes on: nesting deeper than 1024 (the stdlib
        raises RecursionError), lone surrogates (`"\\ud800"`, which no later `.encode()` survives), NaN."""
        return orjson.loads(self.body or b"null")


def _check_text(owner: object, *names: str) -> None:
    """Vendor fields that must be text or absent: a JSON object where a string belongs is refused while parsing
    (before any state changes), not found later when it is published."""
    for name in names:
        value = getattr(owner, name)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{type(owner).__name__}.{name} must be text, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A delivery receipt. `status` is None when the vendor's word is not in the provider's STATUS_MAP.

    `delivery_id` is the vendor's id of this one receipt (SendGrid's `sg_event_id`, Meta's wamid + status, Vonage's
    messageId + status): a receipt whose id was already applied is a replay and changes nothing.
    """

    message_id: str | None
    provider_message_id: str | None
    status: Status | None
    vendor_status: str
    detail: str | None = None
    at: datetime | None = None
    address: str | None = None  # the recipient's address as the vendor names it (E.164 with '+', email)
    recipient_id: str | None = None  # when the vendor echoes Herald's recipient id
    delivery_id: str | None = None

    def __post_init__(self) -> None:
        _check_text(self, "message_id", "provider_message_id", "vendor_status", "detail", "address", "recipient_id",
                    "delivery_id")


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A person wrote or pressed keys: SMS/WhatsApp text, or voice keypad digits. `delivery_id` as for
    `StatusUpdate` (the vendor's id of the inbound message)."""

    channel: str
    sender: str
    text: str | None = None
    digits: str | None = None
    message_id: str | None = None  # Herald's message it answers, when the vendor tells us
    recipient_id: str | None = None
    provider_message_id: str | None = None
    received_at: datetime | None = None
    delivery_id: str | None = None

    def __post_init__(self) -> None:
        _check_text(self, "channel", "sender", "text", "digits", "message_id", "recipient_id", "provider_message_id",
                    "delivery_id")


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What to answer the provider (TwiML for a voice gather, a challenge for Meta's handshake…)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"


@dataclass(slots=True)
class WebhookResult:
    """What a verified webhook says. `delivery_id` is the vendor's id of the whole request (Twilio's
    `I-Twilio-Idempotency-Token`, Vonage's signed `nonce`): a request whose id was seen is a replay."""

    statuses: list[StatusUpdate] = field(default_factory=list)
    inbound: list[InboundMessage] = field(default_factory=list)
    response: WebhookResponse = field(default_factory=WebhookResponse)
    delivery_id: str | None = None


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def callback_url(settings: Settings, channel: str, vendor: str, message: Any = None, **extra: str) -> str:
    """Herald's webhook URL for a provider, with the message id in the query so a receipt finds its message."""
    params = {"message_id": message.message_id, **extra} if message is not None else dict(extra)
    url = f"{settings.public_url.rstrip('/')}/webhooks/{channel}/{vendor}"
    return f"{url}?{urlencode(params)}" if params else url
