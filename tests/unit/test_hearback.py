"""Webhooks in: a verified receipt becomes a status, a reply becomes a CloudEvent; a bad signature changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import orjson
import pytest

from channels.signatures import twilio_signature
from channels.sms import TwilioSettings, TwilioSmsProvider
from channels.webhooks import WebhookRequest
from consumers.hearback import REPLY_TYPE, HearBack
from consumers.metrics import Metrics
from consumers.status import StatusEmitter
from schemas.settings import Settings
from schemas.status import Status
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PUBLIC = "https://herald.example.com"
TOKEN = TwilioSettings().auth_token.get_secret_value()


def hearback() -> tuple[HearBack, RecordingPublisher, Metrics]:
    publisher, metrics = RecordingPublisher(), Metrics()
    provider = TwilioSmsProvider(TwilioSettings(), Settings(public_url=PUBLIC, secret="x" * 16))
    statuses = StatusEmitter(publisher, metrics, b"secret", lambda: NOW)
    return HearBack({("sms", "twilio"): provider}, statuses, publisher, metrics, lambda: NOW), publisher, metrics


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
    assert reply["data"]["text"] == "SI" and reply["data"]["from"] == "+34600111222"
    assert publisher.on("replies")[0].key == b"+34600111222"
    assert publisher.statuses() == []  # no message to correlate: no `replied` status


async def test_hearback__unknown_provider_is_404() -> None:
    hb, publisher, _ = hearback()
    answer = await hb.handle("sms", "nobody", twilio_post({"MessageSid": "SM1", "MessageStatus": "sent"}))
    assert answer.status == 404 and publisher.records == []


def test_reply_event__is_a_valid_cloudevent_with_a_stable_id() -> None:
    from channels.webhooks import InboundMessage
    from consumers.hearback import reply_event

    reply = InboundMessage(channel="voice", sender="+34600111222", digits="1", message_id="msg-1",
                           recipient_id="user-42", provider_message_id="CA1")
    a, b = reply_event(reply, "twilio", NOW), reply_event(reply, "twilio", NOW)
    assert a["id"] == b["id"] and a["subject"] == "user-42"
    assert orjson.loads(orjson.dumps(a))["data"]["digits"] == "1"


def test_providers__production_refuses_to_fall_back_to_the_simulator() -> None:
    settings = Settings(env="production", secret="s" * 32, providers="sms=twilio")
    with pytest.raises(ValueError, match="HERALD_TWILIO_BASE_URL"):
        TwilioSmsProvider.from_settings(settings)
