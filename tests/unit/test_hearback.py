"""Webhooks in: a verified receipt becomes a status, a reply becomes a CloudEvent; a bad signature changes nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import orjson
import pytest

from channels.providers._twilio import TwilioSettings
from channels.providers.sms import TwilioSmsProvider
from channels.signatures import twilio_signature
from channels.webhooks import InboundMessage, StatusUpdate, WebhookRequest, WebhookResult
from consumers.identity import recipient_hash
from consumers.inbound.hearback import REPLY_TYPE, HearBack
from consumers.observe.metrics import Metrics
from consumers.pipeline.outlets import Outlets
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import PreferenceLedger, consent
from schemas.catalog import Channel
from schemas.settings import Settings
from schemas.status import Status
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PUBLIC = "https://herald.example.com"
TOKEN = TwilioSettings().auth_token.get_secret_value()


def hearback() -> tuple[HearBack, RecordingPublisher, Metrics]:
    hb, publisher, metrics, _ = ledger_hearback(contacts={})
    return hb, publisher, metrics


def twilio_post(form: dict[str, str], query: str = "message_id=msg-1", token: str = TOKEN,
                tamper: bool = False) -> WebhookRequest:
    url = f"{PUBLIC}/webhooks/sms/twilio" + (f"?{query}" if query else "")
    signature = twilio_signature(token, url, form)
    body = urlencode({**form, **({"MessageStatus": "delivered"} if tamper else {})}).encode()
    query_map = dict(p.split("=", 1) for p in query.split("&")) if query else {}
    return WebhookRequest(method="POST", url=url, headers={"x-twilio-signature": signature}, query=query_map,
                          body=body)


async def test_hearback__signed_receipt_becomes_a_status_for_the_right_message() -> None:
    hb, publisher, metrics = hearback()
    answer = await hb.handle("sms", "twilio", twilio_post({"MessageSid": "SM1", "MessageStatus": "delivered"}))
    assert answer.status == 200
    [status] = publisher.statuses()
    assert (status.message_id, status.status, status.channel, status.provider) == (
        "msg-1", Status.DELIVERED, "sms", "twilio")
    assert metrics.webhooks.labels("sms", "twilio", "ok")._value.get() == 1


@pytest.mark.parametrize("request_", [
    twilio_post({"MessageSid": "SM1", "MessageStatus": "failed"}, token="wrong-token"),
    twilio_post({"MessageSid": "SM1", "MessageStatus": "failed"}, tamper=True),
    WebhookRequest(method="POST", url=f"{PUBLIC}/webhooks/sms/twilio", headers={}, query={},
                   body=b"MessageSid=SM1&MessageStatus=failed"),
], ids=["wrong_token", "tampered_body", "missing_signature"])
async def test_hearback__bad_signature_is_403_and_changes_nothing(request_: WebhookRequest) -> None:
    hb, publisher, metrics = hearback()
    answer = await hb.handle("sms", "twilio", request_)
    assert answer.status == 403
    assert publisher.records == []
    assert metrics.webhooks.labels("sms", "twilio", "forbidden")._value.get() == 1


async def test_hearback__unknown_vendor_status_is_counted_not_guessed() -> None:
    hb, publisher, metrics = hearback()
    await hb.handle("sms", "twilio", twilio_post({"MessageSid": "SM1", "MessageStatus": "teleported"}))
    assert publisher.records == []
    assert metrics.unmapped_statuses.labels("sms", "twilio")._value.get() == 1


async def test_hearback__inbound_text_is_published_to_replies() -> None:
    hb, publisher, _ = hearback()
    await hb.handle("sms", "twilio", twilio_post({"MessageSid": "SM9", "From": "+34600111222", "To": "+1500",
                                                  "Body": "SI"}, query=""))
    [reply] = publisher.json("replies")
    assert reply["type"] == REPLY_TYPE
    assert reply["data"]["text"] == "SI" and reply["data"]["from_hash"].startswith("sha256:")
    assert publisher.on("replies")[0].key == reply["data"]["from_hash"].encode()  # never the number
    assert publisher.statuses() == []  # no message to correlate: no `replied` status


async def test_hearback__unknown_provider_is_404() -> None:
    hb, publisher, _ = hearback()
    answer = await hb.handle("sms", "nobody", twilio_post({"MessageSid": "SM1", "MessageStatus": "sent"}))
    assert answer.status == 404 and publisher.records == []


def test_reply_event__is_a_valid_cloudevent_with_a_stable_id() -> None:
    from channels.webhooks import InboundMessage
    from consumers.inbound.hearback import reply_event

    reply = InboundMessage(channel="voice", sender="+34600111222", digits="1", message_id="msg-1",
                           recipient_id="user-42", provider_message_id="CA1")
    a, b = reply_event(reply, "twilio", NOW), reply_event(reply, "twilio", NOW)
    assert a["id"] == b["id"] and a["subject"] == "user-42"
    assert orjson.loads(orjson.dumps(a))["data"]["digits"] == "1"


def test_providers__production_refuses_to_fall_back_to_the_simulator() -> None:
    settings = Settings(env="production", secret="kH3v9Qx2LmPz7TbWc5RnYd8FjAu4GsEe1Zo6", providers="sms=twilio")
    with pytest.raises(ValueError, match="HERALD_TWILIO_BASE_URL"):
        TwilioSmsProvider.from_settings(settings)


# --- preferences: STOP/START/HELP, last inbound, suppression --------------------------------------------------------

SECRET = b"secret"  # the StatusEmitter's in `hearback()`: suppressed hashes must join `DeliveryStatus.recipient`
CONTACTS = {"+34600111222": "user-42", "ana@example.com": "user-42"}


@dataclass
class FakeReceiver:
    """A provider that trusts every request and says what the test scripted."""

    result: WebhookResult
    name: str = "fake"
    channel: str = "email"

    def verify_webhook(self, request: WebhookRequest) -> bool:
        return True

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult:
        return self.result


@dataclass(frozen=True)
class AddressedUpdate:
    """`StatusUpdate` with the `address` (and `recipient_id`) providers will fill."""

    message_id: str | None
    status: Status | None
    address: str | None = None
    recipient_id: str | None = None
    provider_message_id: str | None = None
    vendor_status: str = "bounce"
    detail: str | None = None
    at: datetime | None = None


def ledger_hearback(receivers: dict | None = None, *, contacts: dict[str, str] | None = None,
                    ) -> tuple[HearBack, RecordingPublisher, Metrics, PreferenceLedger]:
    publisher, metrics = RecordingPublisher(), Metrics()
    provider = TwilioSmsProvider(TwilioSettings(), Settings(public_url=PUBLIC, secret="x" * 16))
    prefs = PreferenceLedger(MemoryStore(), clock=lambda: NOW)
    book = CONTACTS if contacts is None else contacts
    hb = HearBack(receivers or {("sms", "twilio"): provider}, Outlets.build(publisher, metrics, SECRET, lambda: NOW),
                  lambda: NOW, ledger=prefs, contacts=book.get, replays=MemoryStore())
    return hb, publisher, metrics, prefs


def inbound_sms(text: str, sender: str = "+34600111222") -> WebhookRequest:
    # A vendor id of its own per message: the same id twice is a replay, applied once.
    form = {"MessageSid": f"SM{uuid.uuid4().hex}", "From": sender, "To": "+15005550006", "Body": text}
    return twilio_post(form, query="")


async def test_hearback__stop_opts_the_channel_out_publishes_the_reply() -> None:
    hb, publisher, metrics, prefs = ledger_hearback()
    answer = await hb.handle("sms", "twilio", inbound_sms("Stop."))
    assert answer.status == 200
    doc = prefs.get("user-42")
    assert doc is not None and doc.opted_out == [Channel.SMS] and doc.source == "reply"
    assert doc.last_inbound == {Channel.SMS: NOW}
    [reply] = publisher.json("replies")
    assert reply["data"]["keyword"] == "stop" and reply["data"]["recipient_id"] == "user-42"
    assert publisher.on("replies")[0].key == b"user-42"
    assert metrics.keywords.labels("sms", "stop", "ok")._value.get() == 1


async def test_hearback__start_after_stop_opts_the_channel_back_in() -> None:
    hb, publisher, _, prefs = ledger_hearback()
    await hb.handle("sms", "twilio", inbound_sms("STOP"))
    await hb.handle("sms", "twilio", inbound_sms("start"))
    assert prefs.get("user-42").opted_out == []  # type: ignore[union-attr]
    assert [r["data"]["keyword"] for r in publisher.json("replies")] == ["stop", "start"]


async def test_hearback__help_only_replies() -> None:
    hb, publisher, _, prefs = ledger_hearback()
    await hb.handle("sms", "twilio", inbound_sms("AYUDA"))
    doc = prefs.get("user-42")
    assert doc is not None and doc.opted_out == [] and doc.last_inbound == {Channel.SMS: NOW}
    assert publisher.json("replies")[0]["data"]["keyword"] == "help"


@pytest.mark.parametrize("text", ["SI", "stop the delivery please", "1"], ids=["answer", "sentence", "digit"])
async def test_hearback__ordinary_text_records_the_inbound_time_only(text: str) -> None:
    hb, publisher, _, prefs = ledger_hearback()
    await hb.handle("sms", "twilio", inbound_sms(text))
    doc = prefs.get("user-42")
    assert doc is not None and doc.opted_out == [] and doc.last_inbound == {Channel.SMS: NOW}
    assert publisher.json("replies")[0]["data"]["keyword"] is None


async def test_hearback__stop_from_an_unknown_number_is_published_acknowledged_and_counted() -> None:
    hb, publisher, metrics, prefs = ledger_hearback()
    await hb.handle("sms", "twilio", inbound_sms("STOP", sender="+34699999999"))
    assert prefs.store.data == {}  # type: ignore[attr-defined]
    assert publisher.on("replies")[0].key.startswith(b"sha256:")  # an unknown number is keyed by its hash
    assert metrics.keywords.labels("sms", "stop", "unknown_recipient")._value.get() == 1


async def test_hearback__whatsapp_stop_uses_the_vendors_recipient_id_and_opts_whatsapp_out() -> None:
    message = InboundMessage(channel="whatsapp", sender="+491701234567", text="STOPP", recipient_id="user-7",
                             received_at=NOW - timedelta(minutes=2))
    receiver = FakeReceiver(WebhookResult(inbound=[message]), name="meta", channel="whatsapp")
    hb, _, _, prefs = ledger_hearback({("whatsapp", "meta"): receiver}, contacts={})
    await hb.handle("whatsapp", "meta", twilio_post({}))
    doc = prefs.get("user-7")
    assert doc is not None and doc.opted_out == [Channel.WHATSAPP]
    assert doc.last_inbound == {Channel.WHATSAPP: NOW - timedelta(minutes=2)}


SUPPRESSION_CASES = [
    (AddressedUpdate("msg-1", Status.BOUNCED, address="ana@example.com"), {"bounced"}, None),
    (AddressedUpdate("msg-1", Status.COMPLAINED, address="ana@example.com"), {"complained"}, None),
    (AddressedUpdate(None, Status.BOUNCED, address="ana@example.com"), {"bounced"}, None),
    (AddressedUpdate("msg-1", Status.BOUNCED, address="Bob@Example.com", recipient_id="user-42"), {"bounced"},
     None),
    (AddressedUpdate("msg-1", Status.UNSUBSCRIBED, address="ana@example.com"), set(), []),
    (AddressedUpdate("msg-1", Status.DELIVERED, address="ana@example.com"), None, None),
    (AddressedUpdate("msg-1", Status.BOUNCED, address="nobody@example.com"), None, None),
    (AddressedUpdate("msg-1", Status.BOUNCED), None, None),
    (StatusUpdate("msg-1", "SG1", Status.BOUNCED, "bounce"), None, None),
]


@pytest.mark.parametrize(("update", "reasons", "promotional"), SUPPRESSION_CASES, ids=[
    "bounce_suppresses", "complaint_suppresses", "uncorrelated_bounce_suppresses", "vendor_recipient_id",
    "unsubscribe_withdraws_promotional_consent", "delivered_changes_nothing", "unknown_address_changes_nothing",
    "no_address_changes_nothing", "status_update_without_address_field"])
async def test_hearback__dead_addresses_are_suppressed_and_unsubscribes_withdraw_consent(
        update: object, reasons: set[str] | None, promotional: list[Channel] | None) -> None:
    receiver = FakeReceiver(WebhookResult(statuses=[update]), name="sendgrid")  # type: ignore[list-item]
    hb, publisher, _, prefs = ledger_hearback({("email", "sendgrid"): receiver})
    await prefs.set_promotional("user-42", "email", True, source="cli")
    answer = await hb.handle("email", "sendgrid", twilio_post({}))
    assert answer.status == 200
    doc = prefs.get("user-42")
    assert doc is not None
    if reasons is None:
        assert doc.suppressed == {} and doc.promotional_opt_in == [Channel.EMAIL] and doc.source == "cli"
        return
    address = getattr(update, "address", "")
    assert doc.suppressed == ({recipient_hash(SECRET, address): reasons.pop()} if reasons else {})
    assert doc.promotional_opt_in == (promotional if promotional is not None else [Channel.EMAIL])
    assert doc.source == "receipt"
    if update.message_id:  # type: ignore[attr-defined]
        assert publisher.statuses()[0].status == update.status  # type: ignore[attr-defined]


async def test_hearback__suppressed_hash_joins_the_status_records_recipient() -> None:
    receiver = FakeReceiver(WebhookResult(statuses=[AddressedUpdate("msg-1", Status.BOUNCED,
                                                                    address="ana@example.com")]))
    hb, _, _, prefs = ledger_hearback({("email", "sendgrid"): receiver})
    await hb.handle("email", "sendgrid", twilio_post({}))
    [address_hash] = prefs.get("user-42").suppressed  # type: ignore[union-attr]
    assert address_hash == recipient_hash(hb.statuses.secret, "ana@example.com")
    assert consent(prefs.get("user-42"), category="transactional", channel="email",
                   address_hash=address_hash) == "suppressed_address"
