"""Issue 5 rules, each with its status and reason, on simulated time and in-memory state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from consumers.app import BUNDLED_CATALOG
from consumers.cli.publish import make_event
from consumers.observe.metrics import Metrics
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.fallback import next_dispatch
from consumers.pipeline.ingest import IngestStage
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.policy import next_send_time
from consumers.pipeline.records import Record
from consumers.pipeline.router import Router
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.status import StatusEmitter
from consumers.state.kvstore import MemoryStore
from schemas.catalog import Catalog
from schemas.status import Status
from tests.fakes import FakeClock, RecordingPublisher

pytestmark = pytest.mark.unit

CATALOG = Catalog.load(BUNDLED_CATALOG)
ANA = {"id": "user-ana", "email": "ana@example.com", "phone": "+34600111222", "locale": "es-ES",
       "timezone": "Europe/Madrid", "name": "Ana"}


def event(event_type: str, to: dict[str, Any] | None = None, at: datetime | None = None,
          **payload: Any) -> bytes:
    e = make_event(event_type, to or ANA, {**CATALOG.types[event_type].sample, **payload}, source="test")
    if at is not None:
        e["time"] = at.isoformat()
    return orjson.dumps(e)


def pipeline(now: datetime, channels: tuple[str, ...] = ("email", "sms", "voice", "whatsapp"),
             consent: Any = None) -> tuple[IngestStage, RecordingPublisher, FakeClock[datetime], Scheduler]:
    clock, publisher, metrics = FakeClock(now), RecordingPublisher(), Metrics()
    statuses = StatusEmitter(publisher, metrics, b"secret", clock)
    scheduler = Scheduler(MemoryStore(), publisher, statuses, clock=clock)
    kwargs = {"consent": consent} if consent else {}
    router = Router(CATALOG, channels, clock=clock, dedupe=MemoryStore(), caps=MemoryStore(), **kwargs)
    return IngestStage(router, Outlets(publisher, statuses, DeadLetters(publisher, metrics, statuses), metrics),
                       scheduler), \
        publisher, clock, scheduler


def record(value: bytes, offset: int = 0) -> Record:
    return Record(topic="t.events", partition=0, offset=offset, key=b"user-ana", value=value)


# --- quiet hours --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("now", "zone", "expected"), [
    ("2026-11-24T21:30:00+00:00", "Europe/Madrid", "2026-11-25T07:00:00+00:00"),  # 22:30 CET -> 08:00 CET
    ("2026-03-28T21:30:00+00:00", "Europe/Madrid", "2026-03-29T06:00:00+00:00"),  # across DST: 08:00 CEST
    ("2026-10-24T20:30:00+00:00", "Europe/Madrid", "2026-10-25T07:00:00+00:00"),  # back to CET overnight
    ("2026-11-24T10:00:00+00:00", "Europe/Madrid", None),  # 11:00: inside the window
    ("2026-11-24T05:00:00+00:00", "America/New_York", None),  # 00:00 New York -> see next case
], ids=["evening", "spring_forward", "fall_back", "inside", "midnight_elsewhere_is_quiet_too"])
def test_quiet_hours__next_send_time_is_08_00_local(now: str, zone: str, expected: str | None) -> None:
    got = next_send_time(datetime.fromisoformat(now), zone, "08:00-21:00")
    if now.startswith("2026-11-24T05"):
        assert got == datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # 08:00 EST
    else:
        assert got == (datetime.fromisoformat(expected) if expected else None)


async def test_quiet_hours__22_30_local_is_scheduled_for_08_00_and_released_then() -> None:
    night = datetime(2026, 3, 28, 21, 30, tzinfo=UTC)  # 22:30 in Madrid, the night clocks go forward
    stage, publisher, clock, scheduler = pipeline(night)
    await stage.handle(record(event("order.confirmed", at=night)))
    [status] = publisher.statuses()
    assert status.status is Status.SCHEDULED and status.detail.startswith("quiet_hours 2026-03-29T06:00:00")
    assert publisher.on("dispatch.email") == []
    clock.now = datetime(2026, 3, 29, 5, 59, tzinfo=UTC)
    assert await scheduler.release_due() == 0
    clock.now = datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # 08:00 CEST
    assert await scheduler.release_due() == 1
    assert len(publisher.on("dispatch.email")) == 1


async def test_quiet_hours__critical_types_ignore_them() -> None:
    night = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    stage, publisher, _, _ = pipeline(night)
    await stage.handle(record(event("otp.requested", at=night)))
    assert [s.status for s in publisher.statuses()] == [Status.ACCEPTED]
    assert len(publisher.on("dispatch.sms.critical")) == 1


# --- consent, caps, expiry, dedupe --------------------------------------------------------------------------

NOON = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)


async def test_consent__promotional_without_opt_in_is_suppressed() -> None:
    def consent(rid: str, category: str, channel: str, address: str, **_: object) -> str | None:
        return "consent" if category == "promotional" else None

    stage, publisher, _, _ = pipeline(NOON, consent=consent)
    await stage.handle(record(event("offer.loyalty", at=NOON)))
    await stage.handle(record(event("order.confirmed", at=NOON)))
    assert [(s.status, s.detail) for s in publisher.statuses()] == [
        (Status.SUPPRESSED, "consent"), (Status.ACCEPTED, None)]


async def test_consent__opted_out_channel_is_skipped_for_the_next_one() -> None:
    def consent(rid: str, category: str, channel: str, address: str, **_: object) -> str | None:
        return "opted_out" if channel == "sms" else None

    stage, publisher, _, _ = pipeline(NOON, consent=consent)
    await stage.handle(record(event("otp.requested", at=NOON)))
    assert publisher.on("dispatch.sms.critical") == []
    [dispatch] = publisher.json("dispatch.voice.critical")
    assert dispatch["fallback"] == ["email"]


async def test_frequency_cap__fourth_promotional_message_of_the_day_is_suppressed() -> None:
    stage, publisher, _, _ = pipeline(NOON)
    for i in range(4):
        await stage.handle(record(event("offer.loyalty", at=NOON, offer_title=f"offer {i}"), offset=i))
    assert [s.status for s in publisher.statuses()] == [Status.ACCEPTED] * 3 + [Status.SUPPRESSED]
    assert publisher.statuses()[-1].detail == "frequency_cap"


async def test_expiry__an_otp_older_than_10_minutes_is_expired_at_the_door() -> None:
    stage, publisher, _, _ = pipeline(NOON)
    await stage.handle(record(event("otp.requested", at=NOON - timedelta(minutes=11))))
    assert [(s.status, s.detail) for s in publisher.statuses()] == [(Status.EXPIRED, "ttl")]


async def test_dedupe__the_same_idempotency_key_twice_is_deduplicated() -> None:
    stage, publisher, clock, _ = pipeline(NOON)
    first = make_event("order.confirmed", ANA, CATALOG.types["order.confirmed"].sample, idempotencykey="o-1")
    again = {**first, "id": "evt-other"}
    await stage.handle(record(orjson.dumps(first)))
    await stage.handle(record(orjson.dumps(again), offset=1))
    clock.now = NOON + timedelta(days=8)  # past the 7-day window it is new again
    await stage.handle(record(orjson.dumps({**first, "time": clock.now.isoformat()}), offset=2))
    assert [s.status for s in publisher.statuses()] == [Status.ACCEPTED, Status.DEDUPLICATED, Status.ACCEPTED]


# --- reminders and cancellation -----------------------------------------------------------------------------

async def test_reminders__7_days_and_24_hours_before_and_cancelled_by_a_later_event() -> None:
    stage, publisher, clock, scheduler = pipeline(NOON)
    appointment = NOON + timedelta(days=10)
    await stage.handle(record(event("appointment.reminder", at=NOON, appointment_at=appointment.isoformat())))
    scheduled = publisher.statuses()
    assert [s.status for s in scheduled] == [Status.SCHEDULED, Status.SCHEDULED]
    assert len({s.message_id for s in scheduled}) == 2
    assert len(scheduler.entries()) == 2
    clock.now = appointment - timedelta(days=7)
    assert await scheduler.release_due() == 1  # the 7-day reminder goes
    await stage.handle(record(event("appointment.cancelled", at=clock.now), offset=1))
    assert [s.status for s in publisher.statuses()][-1] is Status.CANCELLED
    clock.now = appointment
    assert await scheduler.release_due() == 0  # the 24-hour reminder never goes
    assert len(publisher.on("dispatch.whatsapp")) == 1


# --- fallback -----------------------------------------------------------------------------------------------

def test_fallback__sms_then_voice_then_email_with_ids_of_their_own() -> None:
    router = Router(CATALOG, ("sms", "voice", "email"), clock=lambda: NOON)
    [sms] = router.route(event("otp.requested", at=NOON)).dispatches
    voice = next_dispatch(sms)
    assert voice is not None and voice.channel == "voice" and voice.fallback == ["email"]
    email = next_dispatch(voice)
    assert email is not None and email.channel == "email" and email.fallback == []
    assert next_dispatch(email) is None
    assert len({sms.message_id, voice.message_id, email.message_id}) == 3
    assert next_dispatch(sms) == voice  # deterministic: a repeated fallback is the same message
