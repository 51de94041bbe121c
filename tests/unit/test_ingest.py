"""The ingest stage within a batch: what it records only after the batch's acknowledgements still counts at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson
import pytest

from consumers.cli.publish import make_event
from consumers.observe.metrics import Metrics
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.ingest import IngestStage
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import AFTER_ACKS, Record
from consumers.pipeline.router import Router
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.status import StatusEmitter
from consumers.state.kvstore import MemoryStore
from schemas.catalog import Catalog
from schemas.status import Status
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
CATALOG = Catalog.model_validate({"frequency_caps": {"promotional": {"count": 2, "per": "1d"}}, "types": {
    "offer.loyalty": {"category": "promotional", "priority": "bulk", "channels": ["email"], "ttl": "2d",
                      "quiet_hours": "ignore", "required": []}}})
ANA = {"id": "user-42", "email": "ana@example.com"}


def stage() -> tuple[IngestStage, RecordingPublisher, MemoryStore, MemoryStore]:
    publisher, metrics, dedupe, caps = RecordingPublisher(), Metrics(), MemoryStore(), MemoryStore()
    statuses = StatusEmitter(publisher, metrics, b"secret", lambda: NOW)
    router = Router(CATALOG, ("email",), clock=lambda: NOW, dedupe=dedupe, caps=caps)
    scheduler = Scheduler(MemoryStore(), publisher, statuses, clock=lambda: NOW)
    return (IngestStage(router, Outlets(publisher, statuses, DeadLetters(publisher, metrics, statuses), metrics),
                        scheduler),
            publisher, dedupe, caps)


def record(offset: int, **extensions: str) -> Record:
    event = make_event("offer.loyalty", ANA, {}, **extensions)
    event["time"] = NOW.isoformat()
    return Record(topic="herald.events", partition=0, offset=offset, key=b"user-42", value=orjson.dumps(event),
                  headers={}, timestamp=None)


async def in_one_batch(ingest: IngestStage, records: list[Record]) -> None:
    """As `batched_agent` runs a batch: records in order, the deferred steps after the acknowledgements."""
    later: list[Callable[[], Awaitable[None]]] = []
    token = AFTER_ACKS.set(later)
    try:
        for r in records:
            await ingest.handle(r)
    finally:
        AFTER_ACKS.reset(token)
    for step in later:
        await step()


async def test_batch__a_frequency_cap_holds_within_one_batch() -> None:
    ingest, publisher, _, caps = stage()
    await in_one_batch(ingest, [record(i) for i in range(5)])
    assert len(publisher.on("dispatch.email")) == 2
    assert [s.detail for s in publisher.statuses() if s.status is Status.SUPPRESSED] == ["frequency_cap"] * 3
    assert [caps.get(k) for k in caps.list_keys()] == [b"2"]
    assert not ingest.router.pending.caps  # released once recorded


async def test_batch__the_same_idempotency_key_twice_in_one_batch_is_one_message() -> None:
    ingest, publisher, dedupe, _ = stage()
    await in_one_batch(ingest, [record(0, idempotencykey="promo-1"), record(1, idempotencykey="promo-1")])
    assert len(publisher.on("dispatch.email")) == 1
    assert [s.status for s in publisher.statuses()] == [Status.ACCEPTED, Status.DEDUPLICATED]
    assert len(list(dedupe.list_keys())) == 1 and not ingest.router.pending.dedupe
