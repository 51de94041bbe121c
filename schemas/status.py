"""The outbound contract on `herald.status`: one record per state change of a message (contract v1)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# The contract's major version: it changes only when a field is removed, renamed or changes meaning. Adding a field
# (or a status word) is not a change of version: consumers must ignore what they do not know.
SCHEMA_VERSION = "1"
SCHEMA_ID = f"urn:herald:schema:DeliveryStatus:v{SCHEMA_VERSION}"


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
    CONVERTED = "converted"  # its type's goal event followed (catalog `conversion`); added within v1
    DIGESTED = "digested"  # an event collected into a digest (detail `digest:<id>`): the digest's message sends it


# Nothing more will be sent for the message. Engagement (`read` after `delivered`, `opened`, `clicked`, `replied`,
# `unsubscribed`) may still follow a final status.
FINAL_STATUSES: frozenset[Status] = frozenset({
    Status.CANCELLED, Status.SUPPRESSED, Status.DEDUPLICATED, Status.REJECTED, Status.EXPIRED,
    Status.DELIVERED, Status.READ, Status.FAILED, Status.BOUNCED, Status.COMPLAINED, Status.DEAD_LETTERED,
    Status.DIGESTED,
})


class DeliveryStatus(BaseModel):
    """A state change of one message. Never carries a body, a code or a clear address.

    Contract v1 (`schema_version` "1"): new fields may be added within v1, so readers ignore fields they do not
    know, and so does this model (records written by a newer Herald still parse; records written before v1 lack
    the v1 fields and parse with their defaults). `recipient` follows one rule on every record: the keyed hash of
    the normalised address the message went to (see the field).
    """

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "$id": SCHEMA_ID, "$schema": "https://json-schema.org/draft/2020-12/schema"})

    schema_version: str = Field(default=SCHEMA_VERSION, description="Major version of this contract. Fields are "
                                "added without changing it: ignore unknown fields.", examples=["1"])
    message_id: str = Field(description="Herald's message id (the record key).", examples=["msg-3f2a9c"])
    event_id: str | None = Field(default=None, description="The event's id, when it could be read.",
                                 examples=["evt-81ac"])
    event_type: str | None = Field(default=None, description="Catalog type.", examples=["order.confirmed"])
    tenant: str | None = Field(default=None, description="Tenant id.", examples=["acme"])
    channel: str | None = Field(default=None, description="Channel; none on a status of a whole event "
                                "(rejected, expired, deduplicated… before any channel was chosen).",
                                examples=["email"])
    provider: str | None = Field(default=None, description="Provider that handled it.", examples=["smtp"])
    provider_message_id: str | None = Field(default=None, description="The provider's id of the message, once "
                                            "a provider accepted it (Twilio SID, SendGrid message id, wamid).",
                                            examples=["SM3f2a9c"])
    status: Status = Field(description="The new state.", examples=["sent"])
    attempt: int = Field(default=0, ge=0, description="Send attempt number (0 before any send).", examples=[1])
    recipient: str | None = Field(
        default=None, description="`sha256:` + HMAC-SHA256, keyed by HERALD_SECRET, of the normalised address the "
        "message goes to (E.164 for phone channels, lower case otherwise): the key of the address's consent and "
        "suppression records. None on a status of a whole event (an event names one address per channel).",
        examples=["sha256:9f86d0…"])
    locale: str | None = Field(default=None, description="Locale the message was rendered in.", examples=["es"])
    template: str | None = Field(default=None, description="Template used.", examples=["order.confirmed/email"])
    segments: int | None = Field(default=None, ge=1, description="SMS parts the message was sent (and billed) "
                                 "in; on `sent` SMS records.", examples=[2])
    at: datetime = Field(description="When Herald recorded the change (UTC).",
                         examples=["2026-11-24T10:00:00.120Z"])
    reported_at: datetime | None = Field(default=None, description="When the provider says the change happened, "
                                         "by its clock (receipts that carry a time).",
                                         examples=["2026-11-24T10:00:03Z"])
    latency_ms: int | None = Field(default=None, description="Milliseconds since the event's time.",
                                   examples=[120])
    error: str | None = Field(default=None, description="Error class, when it failed.",
                              examples=["invalid_recipient"])
    detail: str | None = Field(default=None, description="Reason or provider code; never personal data.",
                               examples=["consent"])
    variant: str | None = Field(default=None, description="The template variant the message was given (catalog "
                                "`variants`), on every record of its message; none for a type without variants. "
                                "Added within v1.", examples=["b"])
