"""The internal contract between the router and the channel agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Recipient


class Dispatch(BaseModel):
    """One message to send on one channel; keyed by `message_id` on `herald.dispatch.<channel>[.critical]`."""

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(description="Deterministic id: same event and channel, same id.",
                            examples=["msg-3f2a9c"])
    event_id: str = Field(description="The event's id.", examples=["evt-81ac"])
    event_type: str = Field(description="Catalog type.", examples=["order.confirmed"])
    event_time: datetime = Field(description="When the event happened; latency is measured from it.")
    tenant: str | None = Field(default=None, description="Tenant id.")
    channel: str = Field(description="Channel to send on.", examples=["email"])
    category: str = Field(description="transactional or promotional.", examples=["transactional"])
    priority: str = Field(description="critical, high, normal or bulk.", examples=["high"])
    idempotency_key: str = Field(description="sha256(dedupe key | channel | recipient).")
    to: Recipient = Field(description="The recipient.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Template variables.")
    attempt: int = Field(default=1, ge=1, description="Send attempt number.")
    expires_at: datetime | None = Field(default=None, description="Not sent after this time.")
    first_failure_at: datetime | None = Field(default=None, description="When the first attempt failed.")
    fallback: list[str] = Field(default_factory=list, description="Channels to try next, in order, if this one "
                                "fails or stays without a receipt.")
    cancel_key: str | None = Field(default=None, description="What a later event may cancel, e.g. "
                                   "`appointment.reminder|APT-5521`.")
    # Left out when None: the model forbids unknown fields, so a worker of the version before variants refuses a
    # dispatch that names one; a dispatch of a type without variants stays readable to it (rolling upgrades).
    variant: str | None = Field(default=None, exclude_if=lambda v: v is None, description="The template variant "
                                "chosen for the message (catalog `variants`), kept by its retries and fallback "
                                "messages.", examples=["b"])
