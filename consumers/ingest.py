"""The ingest stage: one event record in; dispatches, statuses and dead letters out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from consumers.deadletter import DeadLetters
from consumers.identity import message_id, record_message_id
from consumers.metrics import Metrics
from consumers.records import Publisher, Record
from consumers.router import Router
from consumers.status import StatusEmitter
from consumers.topics import dispatch_topic
from schemas.status import Status

log = logging.getLogger(__name__)


class IngestStage:
    """Runs the router on a record and publishes its decision."""

    def __init__(self, router: Router, publisher: Publisher, statuses: StatusEmitter,
                 dead_letters: DeadLetters, metrics: Metrics) -> None:
        self.router = router
        self.publisher = publisher
        self.statuses = statuses
        self.dead_letters = dead_letters
        self.metrics = metrics

    async def handle(self, record: Record) -> None:
        received = datetime.fromtimestamp(record.timestamp, UTC) if record.timestamp else None
        result = self.router.route(record.value, record.headers, received_at=received)
        event = result.event
        event_type = event.type if event and result.entry else "unknown"
        self.metrics.events.labels(event_type, result.outcome).inc()

        if result.rejection:
            mid = (message_id(event.tenant, event.dedupe_key, "event") if event
                   else record_message_id(record.topic, record.partition, record.offset))
            await self.statuses.for_event(mid, Status.REJECTED, event=event, error=result.rejection.reason,
                                          detail=result.rejection.detail)
            await self.dead_letters.send(record, reason=result.rejection.reason,
                                         detail=result.rejection.detail, stage="router")
            return
        assert event is not None
        if result.expired:
            await self.statuses.for_event(message_id(event.tenant, event.dedupe_key, "event"), Status.EXPIRED,
                                          event=event, detail="ttl")
            return
        for d in result.dispatches:
            # `accepted` is queued before the dispatch so it always precedes `sent` for the same key.
            await self.statuses.for_dispatch(d, Status.ACCEPTED, attempt=0)
            topic = dispatch_topic(d.channel, critical=d.priority == "critical")
            await self.publisher.send(topic, d.message_id.encode(), d.model_dump_json().encode())
