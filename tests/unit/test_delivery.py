"""The delivery stage: render, send, and the status and dead letter for every outcome."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from channels.base import OutboundMessage, SendResult
from channels.errors import InvalidRecipient, ProviderUnavailable, RateLimited
from channels.rendering.render import BUNDLED_TEMPLATES, Renderer
from channels.webhooks import InboundMessage, StatusUpdate, WebhookRequest, WebhookResult
from consumers import hooks
from consumers.inbound.hearback import HearBack, HearBackHooks
from consumers.observe.metrics import Metrics
from consumers.pipeline.delivery import Backoff, DeliveryHooks, DeliveryStage
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import Record
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.status import Receipt
from consumers.state.conversations import Conversations, Question
from consumers.state.documents import Documents
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import PreferenceLedger, address_key
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
    payload = Catalog.load(BUNDLED_CATALOG).types["invoice.issued"].sample  # an invoice (schemas/documents.py)
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
    rig = stage(sender, hooks=DeliveryHooks(consent=lambda rid, cat, ch, addr, **_: "opted_out"))
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
    await hooks.route_receipts(rig.publisher)(Receipt(message_id="msg-1", status=receipt, channel="sms",
                                                      provider="twilio"))
    [routed] = rig.publisher.on("receipts")
    assert routed.key == b"msg-1"
    await hooks.apply_receipts(rig.stage.sends, rig.stage.outlets)(
        Record(topic="h.receipts", partition=0, offset=0, key=routed.key, value=routed.value))
    ledger = rig.stage.sends.get("msg-1")
    assert ledger is not None and (ledger.state == "delivered") is not falls_back
    assert [d["channel"] for d in rig.publisher.json("dispatch.voice.critical")] == (["voice"] if falls_back else [])


# --- receipts carry what the `sent` status said (status contract v1) ------------------------------------------------


@dataclass
class Heard:
    """A provider that trusts every webhook and reports what the test says."""

    result: WebhookResult
    name: str = "twilio"
    channel: str = "sms"

    def verify_webhook(self, request: WebhookRequest) -> bool:
        return True

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult:
        return self.result


@dataclass
class SmsSender(ScriptedSender):
    """Twilio as the delivery stage sees it: an SMS in two segments."""

    async def send(self, message: OutboundMessage) -> SendResult:
        result = await super().send(message)
        return dataclasses.replace(result, detail="GSM-7, 2 segments", segments=2)


async def hear(rig: Delivery, result: WebhookResult) -> None:
    """A webhook on any worker, then its receipts applied by the owner of their messages, as in a worker."""
    hb = HearBack({("sms", "twilio"): Heard(result)}, rig.stage.outlets, rig.clock,
                  ledger=PreferenceLedger(MemoryStore(), clock=rig.clock), contacts=lambda _address: None,
                  replays=MemoryStore(), hooks=HearBackHooks(on_receipt=hooks.route_receipts(rig.publisher)))
    statuses_before = len(rig.publisher.statuses())
    receipts_before = len(rig.publisher.on("receipts"))
    assert (await hb.handle("sms", "twilio", WebhookRequest("POST", "https://h.example/webhooks/sms/twilio", {},
                                                            {}, b""))).status == 200
    assert len(rig.publisher.statuses()) == statuses_before  # the hearing worker describes nothing itself
    apply = hooks.apply_receipts(rig.stage.sends, rig.stage.outlets)
    for routed in rig.publisher.on("receipts")[receipts_before:]:
        await apply(Record(topic="h.receipts", partition=0, offset=0, key=routed.key, value=routed.value))


def sent_sms_rig() -> Delivery:
    rig = stage(ScriptedSender())
    rig.stage.senders = {"sms": SmsSender(name="twilio", channel="sms")}
    return rig


async def test_receipts__carry_type_tenant_channel_provider_recipient_and_provider_id_from_the_ledger() -> None:
    rig = sent_sms_rig()
    to = Recipient(id="u1", phone="+34 600 11 12 22", locale="es-ES")  # as upstream wrote it, spaces and all
    await rig.stage.handle(record(otp(tenant="acme", to=to)))
    [sent] = rig.publisher.statuses()
    assert (sent.status, sent.provider_message_id, sent.segments, sent.detail) == (
        Status.SENT, "p-1", 2, "GSM-7, 2 segments")
    rig.clock.advance(seconds=3)
    vendor_time = NOW + timedelta(seconds=2)
    await hear(rig, WebhookResult(statuses=[StatusUpdate(
        message_id="msg-1", provider_message_id=None, status=Status.DELIVERED, vendor_status="delivered",
        at=vendor_time, address="+34600111222")]))
    delivered = rig.publisher.statuses()[-1]
    assert delivered.status is Status.DELIVERED
    assert (delivered.event_id, delivered.event_type, delivered.tenant, delivered.channel, delivered.provider) == (
        "evt-1", "otp.requested", "acme", "sms", "twilio")
    assert delivered.provider_message_id == "p-1"  # the vendor did not repeat it: the ledger knows it
    assert delivered.recipient == sent.recipient and delivered.recipient is not None
    assert (delivered.attempt, delivered.template, delivered.schema_version) == (1, "otp.requested/sms", "1")
    assert (delivered.at, delivered.reported_at, delivered.latency_ms) == (NOW + timedelta(seconds=3), vendor_time,
                                                                           4000)
    assert rig.stage.sends.get("msg-1").state == "delivered"  # type: ignore[union-attr]


async def test_receipts__a_reply_to_the_message_is_replied_with_the_same_fields_and_recipient() -> None:
    rig = sent_sms_rig()
    await rig.stage.handle(record(otp(tenant="acme")))
    [sent] = rig.publisher.statuses()
    await hear(rig, WebhookResult(inbound=[InboundMessage(channel="sms", sender="+34600111222", text="gracias",
                                                          message_id="msg-1", provider_message_id="SM-in")]))
    replied = rig.publisher.statuses()[-1]
    assert (replied.status, replied.event_type, replied.tenant, replied.channel, replied.provider) == (
        Status.REPLIED, "otp.requested", "acme", "sms", "twilio")
    assert replied.recipient == sent.recipient
    assert replied.provider_message_id == "p-1"  # Herald's message's id, not the inbound text's
    [reply] = rig.publisher.json("replies")
    assert reply["data"]["from_hash"] == sent.recipient  # herald.replies joins herald.status too


async def test_receipts__of_a_message_the_ledger_does_not_know_say_what_the_receipt_said() -> None:
    rig = sent_sms_rig()
    await hear(rig, WebhookResult(statuses=[StatusUpdate(
        message_id="msg-elsewhere", provider_message_id="SM9", status=Status.FAILED, vendor_status="undelivered",
        detail="30003", address="+34 600 11 12 22")]))
    [failed] = rig.publisher.statuses()
    assert (failed.message_id, failed.status, failed.channel, failed.provider, failed.provider_message_id,
            failed.detail, failed.event_type) == ("msg-elsewhere", Status.FAILED, "sms", "twilio", "SM9", "30003",
                                                  None)
    # The one rule without the ledger too: the vendor's address, normalised as consent keys it.
    assert failed.recipient == address_key(b"secret", "sms", "+34600111222")
    assert rig.publisher.on("dispatch.voice.critical") == []  # nothing to fall back from


async def test_receipts__a_record_of_the_older_form_still_applies() -> None:
    # Records routed by a worker of the previous release, still on the topic while the group upgrades.
    rig = sent_sms_rig()
    await rig.stage.handle(record(otp()))
    await hooks.apply_receipts(rig.stage.sends, rig.stage.outlets)(Record(
        topic="h.receipts", partition=0, offset=0, key=b"msg-1", value=b'{"message_id":"msg-1","status":"read"}'))
    read = rig.publisher.statuses()[-1]
    assert (read.status, read.event_type, read.channel, read.provider) == (Status.READ, "otp.requested", "sms",
                                                                           "twilio")


async def test_statuses__one_recipient_rule_for_every_record_of_a_message() -> None:
    # Channel records hash the normalised address (the consent records' key); event records name no address.
    rig = sent_sms_rig()
    await rig.stage.handle(record(otp(to=Recipient(id="u1", phone="+34 600 11 12 22"))))
    await rig.stage.handle(record(otp(message_id="msg-2", to=Recipient(id="u2", phone="+34600111222"))))
    first, second = rig.publisher.statuses()
    assert first.recipient == second.recipient == address_key(b"secret", "sms", "+34600111222")
    whole = await rig.stage.outlets.statuses.for_event("msg-evt", Status.DEDUPLICATED)
    assert whole.recipient is None


async def test_receipts__an_answer_to_an_open_question_is_replied_on_the_question_s_message() -> None:
    # The vendor did not say which message the text answers; the open question did (hooks.answer_replies).
    rig = sent_sms_rig()
    catalog = Catalog.load(BUNDLED_CATALOG)
    asked = dispatch(event_type="appointment.reminder", channel="sms", tenant="clinic",
                     to=Recipient(id="u1", phone="+34600111222", locale="es-ES"), payload={"appointment_id": "A1"})
    await rig.stage.sends.sent(asked, "twilio", "SM-1")
    conversations = Conversations(MemoryStore(), b"secret")
    await conversations.remember(Question.for_dispatch(asked, catalog.types["appointment.reminder"], NOW),
                                 "+34600111222")
    on_reply = hooks.answer_replies(conversations, catalog, rig.publisher, rig.stage.outlets.statuses, rig.clock)
    await on_reply(InboundMessage(channel="sms", sender="+34 600 111 222", text="SI"))
    [routed] = rig.publisher.on("receipts")
    await hooks.apply_receipts(rig.stage.sends, rig.stage.outlets)(
        Record(topic="h.receipts", partition=0, offset=0, key=routed.key, value=routed.value))
    [replied] = rig.publisher.statuses()
    assert (replied.message_id, replied.status, replied.event_type, replied.tenant, replied.channel,
            replied.provider, replied.provider_message_id) == (
        "msg-1", Status.REPLIED, "appointment.reminder", "clinic", "sms", "twilio", "SM-1")
    assert replied.recipient == address_key(b"secret", "sms", "+34600111222")
