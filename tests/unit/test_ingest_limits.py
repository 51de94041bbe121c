"""The ingest stage at its size limits: an event over HERALD_MAX_EVENT_BYTES is refused before the router sees it,
a dispatch over HERALD_MAX_RECORD_BYTES before any of the event's messages goes out; both get a `rejected` status
that can be found by event, and a dead letter that fits the producer."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from consumers.cli.publish import make_event
from consumers.identity import message_id, record_message_id
from consumers.observe.metrics import Metrics
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.ingest import IDENTIFY_FACTOR, IngestStage, identify
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import Record
from consumers.pipeline.router import Router, RouteResult
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.sizes import record_size
from consumers.pipeline.status import StatusEmitter
from consumers.state.kvstore import MemoryStore
from schemas.catalog import Catalog
from schemas.status import Status
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
CATALOG = Catalog.model_validate({"types": {
    "note.sent": {"category": "transactional", "priority": "high", "channels": ["email"], "ttl": "2d",
                  "quiet_hours": "ignore", "required": []}}})
ANA = {"id": "user-42", "email": "ana@example.com"}
EVENT_LIMIT = 2048  # even an event 16 times this is read for its ids and fits a dead letter whole
RECORD_LIMIT = 65_536


class SpyRouter(Router):
    """The real router, counting what it is asked to route."""

    def __init__(self) -> None:
        super().__init__(CATALOG, ("email",), clock=lambda: NOW, dedupe=MemoryStore(), caps=MemoryStore())
        self.routed: list[bytes | None] = []

    def route(self, value: bytes | None, headers: Mapping[str, bytes] | None = None, *,
              received_at: datetime | None = None) -> RouteResult:
        self.routed.append(value)
        return super().route(value, headers, received_at=received_at)


def stage(max_event_bytes: int = EVENT_LIMIT) -> tuple[IngestStage, SpyRouter, RecordingPublisher, Scheduler]:
    publisher, metrics, router = RecordingPublisher(), Metrics(), SpyRouter()
    statuses = StatusEmitter(publisher, metrics, b"secret", lambda: NOW)
    scheduler = Scheduler(MemoryStore(), publisher, statuses, clock=lambda: NOW)
    dead_letters = DeadLetters(publisher, metrics, statuses, max_record_bytes=RECORD_LIMIT)
    ingest = IngestStage(router, Outlets(publisher, statuses, dead_letters, metrics), scheduler,
                         max_event_bytes=max_event_bytes, max_record_bytes=RECORD_LIMIT)
    return ingest, router, publisher, scheduler


def event(note_bytes: int, **extensions: Any) -> dict[str, Any]:
    e = make_event("note.sent", ANA, {"note": "x" * note_bytes}, tenant="acme", **extensions)
    e["id"], e["time"] = "evt-big-1", NOW.isoformat()
    return e


def record(value: bytes, headers: dict[str, bytes] | None = None) -> Record:
    return Record(topic="herald.events", partition=3, offset=17, key=b"user-42", value=value, headers=headers or {})


def binary(e: dict[str, Any]) -> Record:
    """The same event in binary mode: attributes in `ce_*` headers, the data alone as the value."""
    headers = {f"ce_{k}": str(v).encode() for k, v in e.items() if k not in ("data", "subject")}
    return record(orjson.dumps(e["data"]), headers)


WHERE = record_message_id("herald.events", 3, 17)
KNOWN = {"event_id": "evt-big-1", "event_type": "note.sent", "tenant": "acme"}
NOTHING = {"event_id": None, "event_type": None, "tenant": None}
OVERSIZED = [
    ("structured_json", record(orjson.dumps(event(2 * EVENT_LIMIT))), KNOWN),
    ("binary_mode_headers", binary(event(2 * EVENT_LIMIT)), KNOWN),
    ("not_json", record(b"\xff" * (EVENT_LIMIT + 1)), NOTHING),
    ("json_not_an_object", record(orjson.dumps(["x" * EVENT_LIMIT])), NOTHING),
    ("too_large_to_read_for_ids", record(orjson.dumps(event(IDENTIFY_FACTOR * EVENT_LIMIT))), NOTHING),
]


@pytest.mark.parametrize(("rec", "ids"), [c[1:] for c in OVERSIZED], ids=[c[0] for c in OVERSIZED])
async def test_ingest__an_oversized_event_is_rejected_unrouted_with_the_ids_it_carries(
        rec: Record, ids: dict[str, str | None]) -> None:
    ingest, router, publisher, scheduler = stage()
    await ingest.handle(rec)
    assert router.routed == []  # refused before the router, templates or state see it
    rejected, dead = publisher.statuses()
    for status, kind in ((rejected, Status.REJECTED), (dead, Status.DEAD_LETTERED)):
        assert (status.status, status.error, status.message_id) == (kind, "event_too_large", WHERE)
        assert {"event_id": status.event_id, "event_type": status.event_type, "tenant": status.tenant} == ids
        assert status.recipient is None
    assert rejected.detail == f"event is {len(rec.value or b'')} bytes; the limit is {EVENT_LIMIT}"
    [letter] = publisher.on("deadletter")
    assert (letter.headers["herald-error"], letter.headers["herald-message-id"], letter.headers["herald-stage"]) == (
        b"event_too_large", WHERE.encode(), b"router")
    assert letter.value == rec.value and "herald-truncated" not in letter.headers  # small enough to keep whole
    assert [r.topic for r in publisher.records] == ["status", "deadletter", "status"]
    assert scheduler.entries() == []
    assert ingest.metrics.events.labels("unknown", "rejected")._value.get() == 1


@pytest.mark.parametrize(("margin", "routed"), [(0, True), (-1, False)], ids=["at_the_limit", "one_byte_over"])
async def test_ingest__the_event_limit_is_exact(margin: int, routed: bool) -> None:
    value = orjson.dumps(event(100))
    ingest, router, publisher, _ = stage(max_event_bytes=len(value) + margin)
    await ingest.handle(record(value))
    assert router.routed == ([value] if routed else [])
    assert publisher.statuses()[0].status is (Status.ACCEPTED if routed else Status.REJECTED)


def test_identify__only_ce_headers_name_the_event() -> None:
    rec = binary(event(10))
    spoofed = record(rec.value or b"", {**rec.headers, "xx_id": b"not-the-event", "my_type": b"nor-its-type"})
    assert identify(spoofed, EVENT_LIMIT) == KNOWN


def test_identify__ids_are_cut_to_200_characters() -> None:
    e = {**event(10), "id": "e" * 500, "tenant": 7}  # a tenant that is not a string is left out
    assert identify(record(orjson.dumps(e)), EVENT_LIMIT) == {"event_id": "e" * 200, "event_type": "note.sent"}


def oversized_dispatch_event(**extensions: Any) -> Record:
    # Small enough to be read (under the event limit), too large to be sent on as a dispatch.
    return record(orjson.dumps(event(RECORD_LIMIT + 100, **extensions)))


@pytest.mark.parametrize("extensions", [{}, {"sendat": (NOW + timedelta(hours=2)).isoformat()}],
                         ids=["sent_now", "scheduled"])
async def test_ingest__a_dispatch_over_the_record_limit_is_rejected_before_anything_goes_out(
        extensions: dict[str, str]) -> None:
    ingest, router, publisher, scheduler = stage(max_event_bytes=1_048_576)
    rec = oversized_dispatch_event(**extensions)
    await ingest.handle(rec)
    assert len(router.routed) == 1
    assert [s.status for s in publisher.statuses()] == [Status.REJECTED, Status.DEAD_LETTERED]
    assert publisher.on("dispatch.email") == [] and scheduler.entries() == []
    rejected = publisher.statuses()[0]
    assert (rejected.error, rejected.event_id, rejected.event_type, rejected.tenant) == (
        "dispatch_too_large", "evt-big-1", "note.sent", "acme")
    assert rejected.message_id == message_id("acme", "herald/cli|evt-big-1", "event")
    assert rejected.detail is not None and rejected.detail.startswith("its email message is ")
    assert rejected.detail.endswith(f" bytes; the limit is {RECORD_LIMIT}")
    # Not remembered as seen: the same event made smaller later is not a duplicate.
    assert not list(router.dedupe.list_keys()) and not router.pending.dedupe
    # The dead letter is the event, cut to fit the producer, with the size and digest of the original.
    [letter] = publisher.on("deadletter")
    assert letter.headers["herald-error"] == b"dispatch_too_large"
    assert letter.headers["herald-truncated"] == b"true"
    assert letter.headers["herald-original-size"] == str(len(rec.value or b"")).encode()
    assert (rec.value or b"").startswith(letter.value)
    assert record_size(letter.key, letter.value, letter.headers) <= RECORD_LIMIT


async def test_ingest__a_dispatch_just_under_the_record_limit_goes_out() -> None:
    ingest, _, publisher, _ = stage(max_event_bytes=1_048_576)
    await ingest.handle(record(orjson.dumps(event(RECORD_LIMIT // 2))))
    assert [s.status for s in publisher.statuses()] == [Status.ACCEPTED]
    [dispatch] = publisher.on("dispatch.email")
    assert record_size(dispatch.key, dispatch.value) <= RECORD_LIMIT


@pytest.mark.parametrize("event_type", ["ana@example.com", "call +34 600 111 222", "x" * 100, "x" * 300])
async def test_ingest__a_rejection_detail_never_echoes_an_address_or_a_number(event_type: str) -> None:
    """Issue 11: `rejected` details could echo payload values (here: what a producer put in `type`)."""
    from consumers.app import BUNDLED_CATALOG

    publisher = RecordingPublisher()
    router = Router(Catalog.load(BUNDLED_CATALOG), ["email"])
    statuses = StatusEmitter(publisher, Metrics(), b"s", lambda: datetime.now(UTC))
    scheduler = Scheduler(MemoryStore(), publisher, statuses, clock=lambda: datetime.now(UTC))
    ingest = IngestStage(router, Outlets(publisher, statuses, DeadLetters(publisher, Metrics(), statuses), Metrics()),
                         scheduler)
    event = make_event(event_type, {"id": "u", "email": "u@example.org"}, {})
    await ingest.handle(Record(topic="t.events", partition=0, offset=1, key=b"u", value=orjson.dumps(event)))
    [rejected] = [s for s in publisher.statuses() if s.status is Status.REJECTED]
    assert rejected.error in {"unknown_type", "invalid_envelope"}  # a 300-character type fails the envelope
    assert "example.com" not in (rejected.detail or "") and "600" not in (rejected.detail or "")
    assert "x" * 100 not in (rejected.detail or "")
