"""The delivery stage: render, send, and the status and dead letter for every outcome."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from channels.errors import InvalidRecipient, ProviderUnavailable, RateLimited
from channels.rendering.render import BUNDLED_TEMPLATES, Renderer
from consumers import hooks
from consumers.observe.metrics import Metrics
from consumers.pipeline.delivery import Backoff, DeliveryHooks, DeliveryStage
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import Record
from consumers.pipeline.scheduler import Scheduler
from consumers.state.documents import Documents
from consumers.state.kvstore import MemoryStore
from consumers.state.sends import SendLedger
from schemas.catalog import Catalog
from schemas.dispatch import Dispatch
from schemas.events import Recipient
from schemas.status import Status
from tests.fakes import FakeClock, RecordingPublisher, ScriptedSender

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


BUNDLED_CATALOG = BUNDLED_TEMPLATES / "catalog.yaml"


def dispatch(**overrides: object) -> Dispatch:
    values: dict[str, object] = dict(
        message_id="msg-1", event_id="evt-1", event_type="order.confirmed", event_time=NOW - timedelta(seconds=1),
        channel="email", category="transactional", priority="high", idempotency_key="k",
        to=Recipient(id="u1", email="ana@example.com", locale="es-ES", name="Ana"),
        payload={"order_id": "1001", "total": "59.90", "currency": "EUR", "items": []},
        expires_at=NOW + timedelta(days=1))
    values.update(overrides)
    return Dispatch(**values)  # type: ignore[arg-type]


def record(d: Dispatch | bytes) -> Record:
    value = d if isinstance(d, bytes) else d.model_dump_json().encode()
    return Record(topic="h.dispatch.email", partition=0, offset=7, key=b"msg-1", value=value)


@dataclass
class Delivery:
    """A delivery stage on in-memory state, with the scheduler it hands retries and leases to."""

    stage: DeliveryStage
    publisher: RecordingPublisher
    metrics: Metrics
    scheduler: Scheduler
    clock: FakeClock[datetime]

    def scheduled(self) -> list[tuple[datetime, Dispatch, str]]:
        return [(entry.due_at, entry.dispatch, entry.reason) for _, entry in self.scheduler.entries()]

    async def run_scheduled(self) -> None:
        """Let time pass until nothing is scheduled, handing every released dispatch back to the stage."""
        while due := self.scheduled():
            self.clock.now = max(self.clock.now, min(at for at, _, _ in due))
            before = len(self.publisher.on("dispatch.email"))
            await self.scheduler.release_due()
            for sent in self.publisher.on("dispatch.email")[before:]:
                await self.stage.handle(record(sent.value))


def stage(sender: ScriptedSender, templates: Path | None = None, *, hooks: DeliveryHooks | None = None) -> Delivery:
    publisher, metrics, clock = RecordingPublisher(), Metrics(), FakeClock(NOW)
    outlets = Outlets.build(publisher, metrics, b"secret", clock)
    renderer = Renderer(templates)
    globals_ = {"brand": "Shop", "document_url": None}
    scheduler = Scheduler(MemoryStore(), publisher, outlets.statuses, clock=clock)
    s = DeliveryStage(renderer, {"email": sender, "sms": ScriptedSender(name="sms", channel="sms")},
                      Catalog.load(BUNDLED_CATALOG), outlets, sends=SendLedger(MemoryStore(), clock),
                      documents=Documents(MemoryStore(), renderer, b"secret", "https://herald.example.com",
                                          template_globals=globals_, clock=clock),
                      scheduler=scheduler, clock=clock, template_globals=globals_, hooks=hooks or DeliveryHooks(),
                      backoff=Backoff(base=0.0))
    return Delivery(s, publisher, metrics, scheduler, clock)


async def test_deliver__sends_once_and_publishes_sent_in_the_recipients_language() -> None:
    sender = ScriptedSender()
    rig = stage(sender)
    s, publisher, metrics = rig.stage, rig.publisher, rig.metrics
    await s.handle(record(dispatch()))
    [message] = sender.sent
    assert message.address == "ana@example.com" and message.rendered.locale == "es"
    [status] = publisher.statuses()
    assert (status.status, status.provider, status.attempt, status.locale) == (Status.SENT, "fake", 1, "es")
    assert status.latency_ms == 1000
    assert status.recipient and "ana" not in status.recipient
    assert metrics.sends.labels("email", "fake", "sent")._value.get() == 1


async def test_deliver__missing_template_variable_is_rejected_and_dead_lettered() -> None:
    sender = ScriptedSender()
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    await s.handle(record(dispatch(payload={"order_id": "1"})))
    assert sender.sent == []
    status, dead = publisher.statuses()
    assert (status.status, status.error) == (Status.REJECTED, "template_variable")
    assert (dead.status, dead.error) == (Status.DEAD_LETTERED, "template_variable")
    [letter] = publisher.on("deadletter")
    assert letter.headers["herald-error"] == b"template_variable"
    assert letter.headers["herald-source-offset"] == b"7"
    assert letter.value == record(dispatch(payload={"order_id": "1"})).value


async def test_deliver__permanent_error_fails_at_once_with_the_provider_code() -> None:
    sender = ScriptedSender(script=[InvalidRecipient("no such user", code="550")])
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    await s.handle(record(dispatch()))
    assert [x.status for x in publisher.statuses()] == [Status.FAILED, Status.DEAD_LETTERED]
    assert publisher.statuses()[0].detail == "550"
    assert len(publisher.on("deadletter")) == 1


async def test_deliver__transient_errors_are_retried_with_attempt_numbers() -> None:
    sender = ScriptedSender(script=[ProviderUnavailable("timeout"), RateLimited("slow down", retry_after=0.01)])
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    await s.handle(record(dispatch()))
    await rig.run_scheduled()
    assert [(x.status, x.attempt) for x in publisher.statuses()] == [
        (Status.RETRYING, 1), (Status.RETRYING, 2), (Status.SENT, 3)]
    assert len(sender.sent) == 1


async def test_deliver__transient_errors_past_the_attempts_fail_and_dead_letter() -> None:
    sender = ScriptedSender(script=[ProviderUnavailable("down")] * 3)
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    await s.handle(record(dispatch()))
    await rig.run_scheduled()
    assert [x.status for x in publisher.statuses()] == [Status.RETRYING, Status.RETRYING, Status.FAILED,
                                                        Status.DEAD_LETTERED]
    headers = publisher.on("deadletter")[0].headers
    assert (headers["herald-attempts"], headers["herald-error-class"]) == (b"3", b"ProviderUnavailable")
    assert headers["herald-first-failure"] == NOW.isoformat().encode()
    assert publisher.on("deadletter")[0].headers["herald-error"] == b"provider_unavailable"


async def test_deliver__expired_dispatch_is_not_sent() -> None:
    sender = ScriptedSender()
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    await s.handle(record(dispatch(expires_at=NOW - timedelta(seconds=1))))
    assert sender.sent == []
    assert [x.status for x in publisher.statuses()] == [Status.EXPIRED]


async def test_deliver__unreadable_dispatch_is_dead_lettered() -> None:
    rig = stage(ScriptedSender())
    s, publisher = rig.stage, rig.publisher
    await s.handle(record(b'{"message_id": 1}'))
    assert [x.status for x in publisher.statuses()] == [Status.REJECTED, Status.DEAD_LETTERED]
    assert publisher.on("deadletter")[0].headers["herald-error"] == b"invalid_dispatch"


async def test_deliver__invoice_email_carries_its_pdf_in_the_recipients_language() -> None:
    sender = ScriptedSender()
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    payload = {"invoice_number": "INV-1", "amount": "249.00", "currency": "EUR", "issued_at": "2026-11-24",
               "due_date": "2026-12-24", "invoice_url": "https://billing.example.com/i/INV-1"}
    await s.handle(record(dispatch(event_type="invoice.issued", payload=payload)))
    [message] = sender.sent
    [pdf] = message.attachments
    assert (pdf.filename, pdf.content_type) == ("invoice.pdf", "application/pdf")
    assert pdf.content.startswith(b"%PDF")
    assert [x.status for x in publisher.statuses()] == [Status.SENT]


async def test_deliver__invalid_inline_attachment_fails_without_sending() -> None:
    sender = ScriptedSender()
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    payload = {"order_id": "1001", "total": "59.90", "currency": "EUR", "items": [],
               "attachments": [{"filename": "x.pdf", "content_type": "application/pdf", "content_base64": "%%%"}]}
    await s.handle(record(dispatch(payload=payload)))
    assert sender.sent == []
    assert [x.status for x in publisher.statuses()] == [Status.FAILED, Status.DEAD_LETTERED]
    assert publisher.on("deadletter")[0].headers["herald-error"] == b"rejected"


async def test_deliver__a_redelivered_dispatch_is_not_sent_twice() -> None:
    sender = ScriptedSender()
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    await s.handle(record(dispatch()))
    await s.handle(record(dispatch()))  # the same record again: crash before commit, rebalance…
    assert len(sender.sent) == 1
    assert [x.status for x in publisher.statuses()] == [Status.SENT, Status.DEDUPLICATED]


async def test_deliver__stop_that_arrived_while_queued_stops_the_message() -> None:
    sender = ScriptedSender()
    rig = stage(sender, hooks=DeliveryHooks(consent=lambda rid, cat, ch, addr: "opted_out"))
    s, publisher = rig.stage, rig.publisher
    await s.handle(record(dispatch()))
    assert sender.sent == []
    assert [(x.status, x.detail) for x in publisher.statuses()] == [(Status.SUPPRESSED, "opted_out")]


async def test_deliver__retriable_error_goes_to_the_scheduler_with_backoff_and_retry_after() -> None:
    sender = ScriptedSender(script=[RateLimited("slow down", retry_after=2.0)])
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    await s.handle(record(dispatch()))
    [(due, again, reason)] = rig.scheduled()
    assert reason == "retry" and again.attempt == 2 and due >= NOW + timedelta(seconds=2)
    assert [(x.status, x.attempt) for x in publisher.statuses()] == [(Status.RETRYING, 1)]
    await s.handle(record(again))
    assert [(x.status, x.attempt) for x in publisher.statuses()][-1] == (Status.SENT, 2)


async def test_deliver__permanent_failure_falls_back_to_the_next_channel() -> None:
    sender = ScriptedSender(script=[InvalidRecipient("no such user", code="550")])
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    d = dispatch(fallback=["sms"], to=Recipient(id="u1", email="ana@example.com", phone="+34600111222",
                                                locale="es-ES"))
    await s.handle(record(d))
    [nxt] = publisher.json("dispatch.sms")
    assert nxt["channel"] == "sms" and nxt["fallback"] == []
    assert [(x.status, x.channel) for x in publisher.statuses()] == [
        (Status.FAILED, "email"), (Status.DEAD_LETTERED, "email"), (Status.ACCEPTED, "sms")]


async def test_deliver__an_attempt_another_worker_holds_waits_for_its_lease() -> None:
    sender = ScriptedSender()
    rig = stage(sender)
    s = rig.stage
    await s.sends.pending(dispatch())  # another worker started this attempt just now
    await s.handle(record(dispatch()))
    assert sender.sent == []
    [(due, again, reason)] = rig.scheduled()
    assert reason == "lease" and due == NOW + timedelta(seconds=60) and again.attempt == 1


async def test_deliver__two_copies_in_flight_in_one_worker_are_sent_once() -> None:
    # The first copy is suspended building its attachment (before its `pending` record exists) when a replayed
    # copy arrives: the second must wait for a lease, not send alongside.
    sender = ScriptedSender()
    rig = stage(sender)
    s, publisher = rig.stage, rig.publisher
    payload = {"order_id": "1001", "total": "59.90", "currency": "EUR", "items": [],
               "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content_base64": "aGVsbG8="}]}
    await asyncio.gather(s.handle(record(dispatch(payload=payload))), s.handle(record(dispatch(payload=payload))))
    assert len(sender.sent) == 1
    [(due, _, reason)] = rig.scheduled()
    assert (reason, due) == ("lease", NOW + s.sends.lease)
    assert [x.status for x in publisher.statuses()] == [Status.SENT]
    await s.handle(record(dispatch(payload=payload)))  # when the lease ends: already sent
    assert len(sender.sent) == 1 and publisher.statuses()[-1].status is Status.DEDUPLICATED


def otp(**overrides: object) -> Dispatch:
    to = Recipient(id="u1", email="ana@example.com", phone="+34600111222", locale="es-ES")
    return dispatch(**{"event_type": "otp.requested", "channel": "sms", "priority": "critical", "to": to,
                       "payload": {"code": "482913", "expires_minutes": 10}, "fallback": ["voice", "email"],
                       **overrides})


@pytest.mark.parametrize("receipt", [None, Status.DELIVERED], ids=["silence", "delivered"])
async def test_deliver__no_receipt_within_the_types_wait_sends_the_next_channel(receipt: Status | None) -> None:
    # otp.requested waits 2 minutes for a delivery receipt (receipt_wait in the catalog), then falls back.
    rig = stage(ScriptedSender())
    rig.scheduler.on_receipt_check = hooks.receipt_check(rig.stage.sends, rig.stage.outlets)
    await rig.stage.handle(record(otp()))
    [(due, _, reason)] = rig.scheduled()
    assert (due, reason) == (NOW + timedelta(minutes=2), "receipt_wait")
    if receipt is not None:
        await hooks.receipt_outcomes(rig.stage.sends, rig.stage.outlets)("msg-1", receipt)
    rig.clock.advance(minutes=2)
    await rig.scheduler.release_due()
    assert rig.scheduled() == []
    nxt = rig.publisher.json("dispatch.voice.critical")
    if receipt is None:
        assert [d["channel"] for d in nxt] == ["voice"] and nxt[0]["fallback"] == ["email"]
        assert rig.publisher.statuses()[-1].detail == "fallback: sms no receipt"
    else:
        assert nxt == []
    assert rig.publisher.on("dispatch.sms.critical") == []  # the sent message itself is never published again


@pytest.mark.parametrize(("receipt", "falls_back"), [(Status.DELIVERED, False), (Status.FAILED, True)])
async def test_receipts__heard_anywhere_reach_the_ledger_through_the_receipts_topic(receipt: Status,
                                                                                    falls_back: bool) -> None:
    # A webhook on any worker publishes the receipt keyed by message id; the owner of that partition applies it.
    rig = stage(ScriptedSender(name="sms", channel="sms"))
    rig.stage.senders = {"sms": ScriptedSender(name="twilio", channel="sms")}
    await rig.stage.handle(record(otp()))
    await hooks.route_receipts(rig.publisher)("msg-1", receipt)
    [routed] = rig.publisher.on("receipts")
    assert routed.key == b"msg-1"
    await hooks.apply_receipts(rig.stage.sends, rig.stage.outlets)(
        Record(topic="h.receipts", partition=0, offset=0, key=routed.key, value=routed.value))
    ledger = rig.stage.sends.get("msg-1")
    assert ledger is not None and (ledger.state == "delivered") is not falls_back
    assert [d["channel"] for d in rig.publisher.json("dispatch.voice.critical")] == (["voice"] if falls_back else [])
