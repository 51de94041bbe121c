"""Publishes `DeliveryStatus` records: hashed recipient, latency from the event's time, a metric per record."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from consumers.identity import recipient_hash
from consumers.observe.metrics import Metrics
from consumers.pipeline.records import Publisher
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent
from schemas.status import DeliveryStatus, Status


class StatusEmitter:
    """The only writer of `herald.status`. Knows how to describe a dispatch or an event without PII."""

    def __init__(self, publisher: Publisher, metrics: Metrics, secret: bytes,
                 clock: Callable[[], datetime]) -> None:
        self.publisher = publisher
        self.metrics = metrics
        self.secret = secret
        self.clock = clock

    def _latency(self, since: datetime | None, now: datetime) -> int | None:
        return max(0, int((now - since).total_seconds() * 1000)) if since else None

    async def publish(self, status: DeliveryStatus) -> None:
        self.metrics.statuses.labels(status.channel or "none", status.status.value).inc()
        # Durable: analytics and support read this topic as the truth, so a status is never lost to a crash
        # between the commit of its record and the flush of the producer.
        await self.publisher.send("status", status.message_id.encode(), status.model_dump_json().encode(),
                                  durable=True)

    async def for_dispatch(self, d: Dispatch, status: Status, *, provider: str | None = None,
                           locale: str | None = None, error: str | None = None, detail: str | None = None,
                           attempt: int | None = None) -> DeliveryStatus:
        now = self.clock()
        address = d.to.address_for(d.channel)
        record = DeliveryStatus(
            message_id=d.message_id, event_id=d.event_id, event_type=d.event_type, tenant=d.tenant,
            channel=d.channel, provider=provider, status=status,
            attempt=d.attempt if attempt is None else attempt,
            recipient=recipient_hash(self.secret, address) if address else None,
            locale=locale, template=f"{d.event_type}/{d.channel}", at=now,
            latency_ms=self._latency(d.event_time, now), error=error, detail=detail,
        )
        await self.publish(record)
        return record

    async def for_receipt(self, message_id: str, status: Status, *, channel: str, provider: str,
                          detail: str | None = None) -> DeliveryStatus:
        """A state change a provider reported back (receipt, open, click, reply)."""
        record = DeliveryStatus(message_id=message_id, status=status, at=self.clock(), channel=channel,
                                provider=provider, detail=detail)
        await self.publish(record)
        return record

    async def for_event(self, message_id: str, status: Status, *, event: CloudEvent | None = None,
                        error: str | None = None, detail: str | None = None,
                        known: Mapping[str, str] | None = None) -> DeliveryStatus:
        """A status of an event as a whole. `known` gives `event_id`, `event_type` and `tenant` read off an event
        that could not be parsed as a whole (one too large to read)."""
        now = self.clock()
        known = known or {}
        record = DeliveryStatus(
            message_id=message_id, status=status, at=now, error=error, detail=detail,
            event_id=event.id if event else known.get("event_id"),
            event_type=event.type if event else known.get("event_type"),
            tenant=event.tenant if event else known.get("tenant"),
            recipient=recipient_hash(self.secret, event.data.to.id) if event else None,
            latency_ms=self._latency(event.time, now) if event else None,
        )
        await self.publish(record)
        return record
