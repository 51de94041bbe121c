"""Publishes `DeliveryStatus` records: hashed recipient, latency from the event's time, a metric per record.

`recipient` has one rule on every record (`StatusEmitter.recipient`): the HMAC-SHA256, keyed by HERALD_SECRET, of
the address normalised as consent and suppression key it (consumers/state/preferences.py `address_key`), so a
message's statuses, its receipts, the replies' `from_hash` and the address's consent records all join. A status
of a whole event (no channel) names no address, and so carries none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from consumers.observe.metrics import Metrics
from consumers.pipeline.records import Publisher
from consumers.state.preferences import address_key
from consumers.state.sends import SendRecord
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent
from schemas.status import DeliveryStatus, Status


class Receipt(BaseModel):
    """What a provider said about one message, on its way from the worker that heard it to the worker that owns
    the message's send record (topic `receipts`, keyed by message id), which publishes its status enriched from
    the ledger. Internal: not a contract; records of the older form (`message_id` and `status` only) still read."""

    model_config = ConfigDict(extra="ignore")

    message_id: str
    status: Status
    channel: str | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    detail: str | None = None
    recipient: str | None = None  # the address's keyed hash, when the vendor named the address
    heard_at: datetime | None = None  # when the webhook reached Herald: the status's `at`
    reported_at: datetime | None = None  # the vendor's own time of the change


class StatusEmitter:
    """The only writer of `herald.status`. Knows how to describe a dispatch or an event without PII."""

    def __init__(self, publisher: Publisher, metrics: Metrics, secret: bytes,
                 clock: Callable[[], datetime]) -> None:
        self.publisher = publisher
        self.metrics = metrics
        self.secret = secret
        self.clock = clock

    def recipient(self, channel: str, address: str | None) -> str | None:
        """The `recipient` of a record about a message to `address` on `channel` (the module docstring's rule)."""
        return address_key(self.secret, channel, address) if address else None

    def _latency(self, since: datetime | None, now: datetime) -> int | None:
        return max(0, int((now - since).total_seconds() * 1000)) if since else None

    async def publish(self, status: DeliveryStatus) -> None:
        self.metrics.statuses.labels(status.channel or "none", status.status.value).inc()
        # Durable: analytics and support read this topic as the truth, so a status is never lost to a crash
        # between the commit of its record and the flush of the producer.
        await self.publisher.send("status", status.message_id.encode(), status.model_dump_json().encode(),
                                  durable=True)

    def describe(self, d: Dispatch, status: Status, *, at: datetime | None = None, provider: str | None = None,
                 locale: str | None = None, error: str | None = None, detail: str | None = None,
                 attempt: int | None = None, provider_message_id: str | None = None, segments: int | None = None,
                 reported_at: datetime | None = None) -> DeliveryStatus:
        """The record of a state change of the message `d` (not published)."""
        now = at or self.clock()
        return DeliveryStatus(
            message_id=d.message_id, event_id=d.event_id, event_type=d.event_type, tenant=d.tenant,
            channel=d.channel, provider=provider, provider_message_id=provider_message_id, status=status,
            attempt=d.attempt if attempt is None else attempt,
            recipient=self.recipient(d.channel, d.to.address_for(d.channel)),
            locale=locale, template=f"{d.event_type}/{d.channel}", segments=segments, at=now,
            reported_at=reported_at, latency_ms=self._latency(d.event_time, now), error=error, detail=detail,
            variant=d.variant,
        )

    async def for_dispatch(self, d: Dispatch, status: Status, *, provider: str | None = None,
                           locale: str | None = None, error: str | None = None, detail: str | None = None,
                           attempt: int | None = None, provider_message_id: str | None = None,
                           segments: int | None = None) -> DeliveryStatus:
        record = self.describe(d, status, provider=provider, locale=locale, error=error, detail=detail,
                               attempt=attempt, provider_message_id=provider_message_id, segments=segments)
        await self.publish(record)
        return record

    async def for_receipt(self, receipt: Receipt, sent: SendRecord | None = None) -> DeliveryStatus:
        """A state change a provider reported back (receipt, open, click, reply). With the message's send record
        (the worker that owns it) the status describes the message as its `sent` status did; without one (a
        message the ledger does not know, or forgot) it says what the receipt said."""
        at = receipt.heard_at or self.clock()
        if sent is not None:
            record = self.describe(sent.dispatch, receipt.status, at=at, provider=receipt.provider or sent.provider,
                                   provider_message_id=receipt.provider_message_id or sent.provider_message_id,
                                   detail=receipt.detail, reported_at=receipt.reported_at)
        else:
            record = DeliveryStatus(
                message_id=receipt.message_id, status=receipt.status, at=at, channel=receipt.channel,
                provider=receipt.provider, provider_message_id=receipt.provider_message_id,
                recipient=receipt.recipient, detail=receipt.detail, reported_at=receipt.reported_at)
        await self.publish(record)
        return record

    async def for_event(self, message_id: str, status: Status, *, event: CloudEvent | None = None,
                        error: str | None = None, detail: str | None = None,
                        known: Mapping[str, str] | None = None) -> DeliveryStatus:
        """A status of an event as a whole (no channel, so no `recipient`). `known` gives `event_id`,
        `event_type` and `tenant` read off an event that could not be parsed as a whole (one too large to read)."""
        now = self.clock()
        known = known or {}
        record = DeliveryStatus(
            message_id=message_id, status=status, at=now, error=error, detail=detail,
            event_id=event.id if event else known.get("event_id"),
            event_type=event.type if event else known.get("event_type"),
            tenant=event.tenant if event else known.get("tenant"),
            latency_ms=self._latency(event.time, now) if event else None,
        )
        await self.publish(record)
        return record
