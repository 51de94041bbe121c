"""The inbound contract: CloudEvents 1.0 envelopes (structured JSON or binary mode) and the recipient."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl, field_validator

# Binary-mode CloudEvents put the attributes in `ce_*` headers and `data` in the record value.
BINARY_PREFIX = "ce_"


class Recipient(BaseModel):
    """Who a message is for. Only `id` is required; each channel needs its own address."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=200, description="Stable id of the person.", examples=["user-42"])
    email: EmailStr | None = Field(default=None, description="Email address.", examples=["ana@example.com"])
    phone: str | None = Field(
        default=None, max_length=32, description="Phone number, E.164 preferred.", examples=["+34600111222"]
    )
    locale: str = Field(
        default="en", max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$",
        description="BCP 47 language tag.", examples=["es-ES"],
    )
    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone.", examples=["Europe/Madrid"])
    name: str | None = Field(default=None, max_length=200, description="Display name.", examples=["Ana"])
    push_token: str | None = Field(default=None, max_length=4096, description="Device token for push.")
    webhook_url: HttpUrl | None = Field(default=None, description="Business customer's endpoint (webhook channel).",
                                        examples=["https://hooks.acme.example/herald"])

    def address_for(self, channel: str) -> str | None:
        """The address on a channel (`email`, `sms`, `voice`, `whatsapp`, `push`), or None."""
        match channel:
            case "email":
                return str(self.email) if self.email else None
            case "sms" | "voice" | "whatsapp":
                return self.phone
            case "push":
                return self.push_token
            case "webhook":
                return str(self.webhook_url) if self.webhook_url else None
            case _:
                return None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("name")
    @classmethod
    def _single_line_name(cls, value: str | None) -> str | None:
        # A display name ends up in a header: newlines would be an injection attempt.
        if value is not None and any(c in value for c in "\r\n\0"):
            raise ValueError("name must be a single line")
        return value


class EventData(BaseModel):
    """`data` of a Herald event: who it is for and what the templates need."""

    model_config = ConfigDict(extra="forbid")

    to: Recipient = Field(description="The recipient.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Template variables.",
                                    examples=[{"order_id": "1001", "total": "59.90", "currency": "EUR"}])


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope with Herald's optional extension attributes."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = Field(description="CloudEvents spec version.", examples=["1.0"])
    id: str = Field(min_length=1, max_length=200, description="Event id, unique per source.", examples=["evt-81ac"])
    source: str = Field(min_length=1, max_length=500, description="Producer of the event.",
                        examples=["shop/checkout"])
    type: str = Field(min_length=1, max_length=200, description="Catalog event type.", examples=["order.confirmed"])
    time: datetime | None = Field(default=None, description="When it happened (RFC 3339).",
                                  examples=["2026-11-24T10:00:00Z"])
    subject: str | None = Field(default=None, max_length=200, description="Usually the recipient id.")
    datacontenttype: str | None = Field(default=None, description="Media type of data.")
    dataschema: str | None = Field(default=None, description="Schema URI of data.")
    priority: Literal["critical", "high", "normal", "bulk"] | None = Field(
        default=None, description="Overrides the catalog priority.")
    idempotencykey: str | None = Field(default=None, max_length=200, description="Dedupe key.",
                                       examples=["order-1001-confirmed"])
    sendat: datetime | None = Field(default=None, description="Do not send before this time.")
    tenant: str | None = Field(default=None, max_length=100, description="Tenant id.", examples=["acme"])
    channels: list[str] | None = Field(default=None, description="Restricts the catalog's channels.")
    data: EventData = Field(description="Recipient and payload.")

    @field_validator("time", "sendat")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @property
    def dedupe_key(self) -> str:
        """The idempotency key, or the event id when the publisher gave none."""
        return self.idempotencykey or f"{self.source}|{self.id}"

    @classmethod
    def from_record(cls, value: bytes | None, headers: Mapping[str, bytes] | None = None) -> CloudEvent:
        """Parse a Kafka record in structured mode, or in binary mode when `ce_*` headers are present."""
        headers = headers or {}
        attrs = {k[len(BINARY_PREFIX):]: v.decode() for k, v in headers.items() if k.startswith(BINARY_PREFIX)}
        if "specversion" in attrs:
            data = orjson.loads(value) if value else None
            return cls.model_validate({**attrs, "data": data})
        if not value:
            raise ValueError("empty record")
        return cls.model_validate_json(value)
