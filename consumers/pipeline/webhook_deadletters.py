"""Dead letters of outbound status webhooks (`herald.webhooks.deadletter`, written by the status outbox): read back
with why each was given up, and turned back into outbox entries to replay them.

A replay puts the status back in `herald.state.status_outbox` under its `webhook-id` and in the partition of the
status record it copies, exactly where the status agent puts a new one: the worker that owns that partition finds
it at its next reading of the outbox (at most `SCAN_EVERY` seconds) and delivers it like any other, with its
retries, its pause and, if the endpoint still refuses it, a new dead letter. The receiver sees the same
`webhook-id` as before and can drop a copy it already has.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from aiokafka import ConsumerRecord
from pydantic import BaseModel, Field, computed_field

from schemas.subscriptions import OutboxEntry

OUTBOX_TOPIC = "state.status_outbox"


class WebhookDeadLetter(BaseModel):
    """One record of `herald.webhooks.deadletter`: the status, whose it was, and why it was given up."""

    partition: int
    offset: int
    at: datetime = Field(description="When it was dead-lettered.")
    tenant: str
    url_host: str = Field(description="The endpoint's host name (never its path or query, which may hold secrets).")
    reason: str = Field(description="timeout, connection, rejected, gone, backlog_full, unregistered…")
    detail: str
    attempts: int
    webhook_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    first_failure: datetime | None = None
    message_id: str | None = None
    body: str = Field(description="The status record's value, byte for byte.", repr=False)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def where(self) -> str:
        """PARTITION/OFFSET in the dead-letter topic: how `herald dlq webhooks replay` names it."""
        return f"{self.partition}/{self.offset}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> str | None:
        """The status the record reports (`sent`, `delivered`…), when its body says."""
        try:
            value = orjson.loads(self.body).get("status")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def outbox_entry(self, now: datetime) -> OutboxEntry:
        """The outbox entry that delivers this status again: a fresh retry window and attempt count from `now`."""
        return OutboxEntry(tenant=self.tenant, body=self.body, message_id=self.message_id, topic=self.source_topic,
                           partition=self.source_partition, offset=self.source_offset, created_at=now)


def webhook_dead_letter(record: ConsumerRecord) -> WebhookDeadLetter | None:
    """The dead letter a record holds; None for a record without the outbox's headers (a status record the agent
    itself failed on comes with `herald.deadletter`'s headers instead, and is not the outbox's to replay)."""
    headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
    try:
        first = headers.get("herald-first-failure")
        return WebhookDeadLetter(
            partition=record.partition, offset=record.offset, at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            tenant=headers["herald-tenant"], url_host=headers.get("herald-url-host", ""),
            reason=headers["herald-error"], detail=headers.get("herald-error-detail", ""),
            attempts=int(headers.get("herald-attempts", "0")), webhook_id=headers["herald-webhook-id"],
            source_topic=headers["herald-source-topic"], source_partition=int(headers["herald-source-partition"]),
            source_offset=int(headers["herald-source-offset"]),
            first_failure=datetime.fromisoformat(first) if first else None,
            message_id=record.key.decode(errors="replace") if record.key else None,
            body=(record.value or b"").decode(errors="replace"))
    except (KeyError, ValueError):
        return None
