"""The outbound contract on `herald.status`: one record per state change of a message."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    """Every state a message can be in."""

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"
    DEDUPLICATED = "deduplicated"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SENT = "sent"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    OPENED = "opened"
    CLICKED = "clicked"
    REPLIED = "replied"
    UNSUBSCRIBED = "unsubscribed"
    DEAD_LETTERED = "dead_lettered"


FINAL_STATUSES: frozenset[Status] = frozenset({
    Status.CANCELLED, Status.SUPPRESSED, Status.DEDUPLICATED, Status.REJECTED, Status.EXPIRED,
    Status.DELIVERED, Status.READ, Status.FAILED, Status.BOUNCED, Status.COMPLAINED, Status.DEAD_LETTERED,
})


class DeliveryStatus(BaseModel):
    """A state change of one message. Never carries a body, a code or a clear address."""

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(description="Herald's message id (the record key).", examples=["msg-3f2a9c"])
    event_id: str | None = Field(default=None, description="The event's id, when it could be read.",
                                 examples=["evt-81ac"])
    event_type: str | None = Field(default=None, description="Catalog type.", examples=["order.confirmed"])
    tenant: str | None = Field(default=None, description="Tenant id.", examples=["acme"])
    channel: str | None = Field(default=None, description="Channel.", examples=["email"])
    provider: str | None = Field(default=None, description="Provider that handled it.", examples=["smtp"])
    status: Status = Field(description="The new state.", examples=["sent"])
    attempt: int = Field(default=0, ge=0, description="Send attempt number (0 before any send).", examples=[1])
    recipient: str | None = Field(default=None, description="HMAC-SHA256 of the address, keyed by HERALD_SECRET.",
                                  examples=["sha256:9f86d0…"])
    locale: str | None = Field(default=None, description="Locale the message was rendered in.", examples=["es"])
    template: str | None = Field(default=None, description="Template used.", examples=["order.confirmed/email"])
    at: datetime = Field(description="When the state changed (UTC).", examples=["2026-11-24T10:00:00.120Z"])
    latency_ms: int | None = Field(default=None, description="Milliseconds since the event's time.",
                                   examples=[120])
    error: str | None = Field(default=None, description="Error class, when it failed.",
                              examples=["invalid_recipient"])
    detail: str | None = Field(default=None, description="Reason or provider code; never personal data.",
                               examples=["consent"])
