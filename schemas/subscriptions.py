"""Outbound status webhooks: a tenant's registration of an HTTPS endpoint for its statuses (the HTTP API's request
and answer, and the record kept in `herald.state.status_webhooks`), and a status waiting for delivery there (the
record kept in `herald.state.status_outbox`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.status import Status

MAX_URL = 2048
MAX_DESCRIPTION = 500
MAX_EVENT_TYPES = 200


class StatusWebhookRequest(BaseModel):
    """Body of `PUT /v1/webhooks/status`: where a tenant's statuses go, and which of them."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=MAX_URL, description="The receiver: `https://` (plain `http://`, "
                     "private addresses and any port only with HERALD_WEBHOOK_ALLOW_PRIVATE, for development).",
                     examples=["https://hooks.acme.example/herald/status"])
    statuses: list[Status] = Field(default_factory=list, max_length=len(Status), description="Only statuses of "
                                   "these kinds; empty or absent: every status.", examples=[["sent", "failed"]])
    event_types: list[str] = Field(default_factory=list, max_length=MAX_EVENT_TYPES, description="Only statuses "
                                   "of messages of these catalog types; empty or absent: every type.",
                                   examples=[["order.confirmed"]])
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION, description="A note for people.",
                                    examples=["analytics ingest"])


class StatusWebhookView(BaseModel):
    """A registration as `GET /v1/webhooks/status` shows it: never a secret."""

    url: str
    statuses: list[Status]
    event_types: list[str]
    description: str | None
    created_at: datetime
    updated_at: datetime
    secret_created_at: datetime = Field(description="When the current signing secret was made (creation or the "
                                        "last rotation).")
    previous_secret_expires_at: datetime | None = Field(description="Until when the secret before the last "
                                                        "rotation still signs too; null when none does.")


class SealedSecret(BaseModel):
    """A signing secret as kept: encrypted with a key derived from HERALD_SECRET, bound to its tenant."""

    model_config = ConfigDict(extra="ignore")

    sealed: str
    created_at: datetime
    expires_at: datetime | None = Field(default=None, description="None: the current secret.")


class StatusWebhook(BaseModel):
    """A tenant's registration as kept in `herald.state.status_webhooks` (key: the tenant)."""

    model_config = ConfigDict(extra="ignore")

    tenant: str
    url: str
    statuses: list[Status] = Field(default_factory=list)
    event_types: list[str] = Field(default_factory=list)
    description: str | None = None
    created_at: datetime
    updated_at: datetime
    secrets: list[SealedSecret] = Field(min_length=1, description="The current secret first, then older ones "
                                        "still signing until they expire.")

    def wants(self, status: object, event_type: object) -> bool:
        """Whether a status of this kind, for a message of this type, goes to the endpoint."""
        if self.statuses and status not in {s.value for s in self.statuses}:
            return False
        return not self.event_types or event_type in self.event_types

    def view(self, now: datetime) -> StatusWebhookView:
        """The registration without its secrets."""
        previous = [s.expires_at for s in self.secrets[1:] if s.expires_at is not None and s.expires_at > now]
        return StatusWebhookView(url=self.url, statuses=self.statuses, event_types=self.event_types,
                                 description=self.description, created_at=self.created_at,
                                 updated_at=self.updated_at, secret_created_at=self.secrets[0].created_at,
                                 previous_secret_expires_at=max(previous, default=None))


class OutboxEntry(BaseModel):
    """A status waiting for delivery to its tenant's endpoint, in `herald.state.status_outbox` (key: its
    `webhook-id`, in the partition of the status record it copies)."""

    model_config = ConfigDict(extra="ignore")

    tenant: str
    body: str = Field(description="The status record's value, exactly as published on herald.status.")
    message_id: str | None = Field(default=None, description="The status record's key.")
    topic: str
    partition: int
    offset: int
    published_at: datetime | None = Field(default=None, description="The status record's timestamp.")
    created_at: datetime = Field(description="When Herald took the status for delivery: the retry window starts.")
    attempts: int = Field(default=0, ge=0, description="Failed attempts so far.")
    due_at: datetime | None = Field(default=None, description="The next attempt's time; None: at once.")
    first_failure_at: datetime | None = None
    last_error: str | None = None
