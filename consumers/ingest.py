"""The ingest stage: one event record in; dispatches, schedules, statuses and dead letters out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from consumers.deadletter import DeadLetters
from consumers.identity import message_id, record_message_id
from consumers.kvstore import KeyValueStore, MemoryStore
from consumers.metrics import Metrics
from consumers.records import Publisher, Record, once_durable
from consumers.router import Router, RouteResult
from consumers.scheduler import Scheduler
from consumers.status import StatusEmitter
from consumers.topics import dispatch_topic
from schemas.status import Status

log = logging.getLogger(__name__)


class IngestStage:
    """Runs the router on a record and carries out its decision."""

    def __init__(self, router: Router, publisher: Publisher, statuses: StatusEmitter,
                 dead_letters: DeadLetters, metrics: Metrics, scheduler: Scheduler, *,
                 dedupe: KeyValueStore | None = None, caps: KeyValueStore | None = None) -> None:
        self.router = router
        self.publisher = publisher
        self.statuses = statuses
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.scheduler = scheduler
        self.dedupe = dedupe or router.dedupe
        self.caps = caps or router.caps or MemoryStore()

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
            await self.dead_letters.send(record, reason=result.rejection.reason, detail=result.rejection.detail,
                                         stage="router", message_id=mid, event=event)
            return
        assert event is not None
        if result.cancels:
            await self.scheduler.cancel(result.cancels)
        event_mid = message_id(event.tenant, event.dedupe_key, "event")
        for flag, status, detail in ((result.expired, Status.EXPIRED, "ttl"),
                                     (result.deduplicated, Status.DEDUPLICATED, "idempotency_key"),
                                     (bool(result.suppressed), Status.SUPPRESSED, result.suppressed)):
            if flag:
                await self.statuses.for_event(event_mid, status, event=event, detail=detail)
                return
        await self._carry_out(result)

    async def _carry_out(self, result: RouteResult) -> None:
        for d in result.dispatches:
            # `accepted` is queued before the dispatch so it always precedes `sent` for the same key.
            await self.statuses.for_dispatch(d, Status.ACCEPTED, attempt=0)
            topic = dispatch_topic(d.channel, critical=d.priority == "critical")
            await self.publisher.send(topic, d.message_id.encode(), d.model_dump_json().encode(), durable=True)
        for due, d, reason in result.scheduled:
            await self.scheduler.add(due, d, reason)
            await self.statuses.for_dispatch(d, Status.SCHEDULED, attempt=0, detail=f"{reason} {due.isoformat()}")
        # State is recorded after the messages are out: a crash in between replays the event, and the
        # send ledger keeps the replay from sending twice.
        # Only once the dispatches are acknowledged: a dedupe key recorded for a dispatch that a crash then lost
        # would make the replayed event look like a duplicate, and the message would never go.
        # Until then the router counts them as pending, so the rest of the batch sees them.
        pending = self.router.pending
        if result.dedupe_key:
            key, seen = result.dedupe_key, self.router.clock().isoformat().encode()
            pending.dedupe.add(key)

            async def remember() -> None:
                try:
                    await self.dedupe.put(key, seen)
                finally:
                    pending.dedupe.discard(key)

            await once_durable(remember)
        if result.cap_key:
            cap, added = result.cap_key, len(result.dispatches) + len(result.scheduled)
            pending.caps[cap] += added

            async def count() -> None:
                try:
                    await self.caps.put(cap, str(int(self.caps.get(cap) or b"0") + added).encode())
                finally:
                    pending.caps[cap] -= added
                    if pending.caps[cap] <= 0:
                        del pending.caps[cap]

            await once_durable(count)
