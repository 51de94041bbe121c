"""The ingest stage: one event record in; dispatches, schedules, statuses and dead letters out."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson

from consumers.identity import message_id, record_message_id
from consumers.pipeline.conversions import Attribution
from consumers.pipeline.deadletter import scrub
from consumers.pipeline.digests import no_digests
from consumers.pipeline.outlets import DEFAULT_MAX_RECORD_BYTES, Outlets
from consumers.pipeline.records import Record, once_durable, publish_dispatch
from consumers.pipeline.router import Rejection, Router, RouteResult
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.sizes import record_size
from schemas.status import Status

log = logging.getLogger(__name__)


IDENTIFY_FACTOR = 16  # an oversized event up to this many times the limit is still read for its ids
ID_FIELDS = {"id": "event_id", "type": "event_type", "tenant": "tenant"}


def identify(record: Record, limit: int) -> dict[str, str]:
    """The id, type and tenant of an event too large to route, so its `rejected` status can be found by event:
    from `ce_*` headers, or from the JSON when it is not absurdly large. Nothing else of it is looked at."""
    if any(k.startswith("ce_") for k in record.headers):
        found: dict[str, object] = {ID_FIELDS[k[3:]]: v.decode(errors="replace") for k, v in record.headers.items()
                 if k.startswith("ce_") and k[3:] in ID_FIELDS}
    elif len(record.value or b"") <= limit * IDENTIFY_FACTOR:
        try:
            envelope = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            return {}
        if not isinstance(envelope, dict):
            return {}
        found = {name: envelope.get(field) for field, name in ID_FIELDS.items()}
    else:
        return {}
    return {k: v[:200] for k, v in found.items() if isinstance(v, str)}


def received_at(record: Record) -> datetime | None:
    """The record's broker timestamp, if it is a time at all (a producer may set any number)."""
    try:
        return datetime.fromtimestamp(record.timestamp, UTC) if record.timestamp else None
    except (OverflowError, OSError, ValueError):
        return None


class IngestStage:
    """Runs the router on a record and carries out its decision."""

    def __init__(self, router: Router, outlets: Outlets, scheduler: Scheduler, *,
                 max_event_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, goals: Attribution | None = None) -> None:
        self.router = router
        self.goals = goals  # conversion attribution: goal events convert, types with a goal are tracked
        self.max_event_bytes = max_event_bytes
        self.max_record_bytes = max_record_bytes
        self.publisher = outlets.publisher
        self.statuses = outlets.statuses
        self.dead_letters = outlets.dead_letters
        self.metrics = outlets.metrics
        self.scheduler = scheduler
        # Where events of a digest type go instead of out (consumers/pipeline/digests.py `install_digests`).
        self.digests: Callable[[RouteResult, int], Awaitable[None]] = no_digests

    async def handle(self, record: Record) -> None:
        size = len(record.value or b"")
        known: dict[str, str] = {}
        if size > self.max_event_bytes:  # refused before routing, templates or state see it
            result = RouteResult(rejection=Rejection(
                "event_too_large", f"event is {size} bytes; the limit is {self.max_event_bytes}"))
            known = identify(record, self.max_event_bytes)
        else:
            received = received_at(record)
            result = self.router.route(record.value, record.headers, received_at=received)
            if result.rejection is None and (too_big := self._oversized(result)):
                result.rejection = too_big
        event = result.event
        event_type = event.type if event and result.entry else "unknown"
        self.metrics.events.labels(event_type, result.outcome).inc()

        if result.rejection:
            mid = (message_id(event.tenant, event.dedupe_key, "event") if event
                   else record_message_id(record.topic, record.partition, record.offset))
            await self.statuses.for_event(mid, Status.REJECTED, event=event, error=result.rejection.reason,
                                          detail=scrub(result.rejection.detail), known=known)
            await self.dead_letters.send(record, reason=result.rejection.reason, detail=result.rejection.detail,
                                         stage="router", message_id=mid, event=event, known=known)
            return
        assert event is not None
        if result.cancels:
            await self.scheduler.cancel(result.cancels)
        if self.goals is not None:
            await self.goals.observe(result, record.partition, received_at(record))
        event_mid = message_id(event.tenant, event.dedupe_key, "event")
        for flag, status, detail in ((result.expired, Status.EXPIRED, "ttl"),
                                     (result.deduplicated, Status.DEDUPLICATED, "idempotency_key"),
                                     (bool(result.suppressed), Status.SUPPRESSED, result.suppressed)):
            if flag:
                await self.statuses.for_event(event_mid, status, event=event, detail=detail)
                return
        if result.digest:
            await self.digests(result, record.partition)
            return
        await self._carry_out(result, record.partition)

    def _oversized(self, result: RouteResult) -> Rejection | None:
        """A dispatch the producer would refuse (it carries the payload, and grows it): refused whole, before any
        of the event's messages goes out, rather than half sent."""
        for d in [*result.dispatches, *(d for _, d, _ in result.scheduled)]:
            size = record_size(d.message_id.encode(), d.model_dump_json().encode())
            if size > self.max_record_bytes:
                return Rejection("dispatch_too_large",
                                 f"its {d.channel} message is {size} bytes; the limit is {self.max_record_bytes}")
        return None

    async def _carry_out(self, result: RouteResult, partition: int) -> None:
        """Publish and schedule the event's messages, then record its dedupe key and cap count in `partition`
        (the event's: the recipient's state lives where the recipient's events do)."""
        for d in result.dispatches:
            # `accepted` is queued before the dispatch so it always precedes `sent` for the same key.
            await self.statuses.for_dispatch(d, Status.ACCEPTED, attempt=0)
            await publish_dispatch(self.publisher, d)
        for due, d, reason in result.scheduled:
            await self.scheduler.add(due, d, reason, partition=partition)
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
                    await self.router.dedupe.put(key, seen, partition=partition)
                finally:
                    pending.dedupe.discard(key)

            await once_durable(remember, undo=lambda: pending.dedupe.discard(key))
        if result.cap_key:
            cap, added = result.cap_key, len(result.dispatches) + len(result.scheduled)
            pending.caps[cap] += added

            def uncount() -> None:
                pending.caps[cap] -= added
                if pending.caps[cap] <= 0:
                    del pending.caps[cap]

            async def count() -> None:
                try:
                    caps = self.router.caps
                    await caps.put(cap, str(int(caps.get(cap) or b"0") + added).encode(), partition=partition)
                finally:
                    uncount()

            await once_durable(count, undo=uncount)
