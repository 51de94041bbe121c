"""Issue 11, webhooks: bodies are read whole (413 past the limit), malformed input is 400/403 and never 500 before
any change, signed timestamps are checked, and a replayed delivery changes nothing and is counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from channels.signatures import standard_webhook_signature, unix_seconds, verify_standard_webhook
from channels.webhooks import InboundMessage, StatusUpdate, WebhookRequest, WebhookResult
from consumers.app import load_catalog, retention_rules
from consumers.identity import recipient_hash
from consumers.inbound.hearback import HearBackHooks, replay_key
from consumers.inbound.unsubscribe import unsubscribe_link
from consumers.pipeline.status import Receipt
from consumers.state.conversations import Conversations
from consumers.state.kvstore import MemoryStore
from consumers.state.retention import Janitor
from consumers.state.stores import State
from consumers.topics import STATE_TOPICS
from schemas.settings import Settings
from schemas.status import Status
from tests.unit.webhook_rig import (
    NOW,
    PUBLIC,
    SECRET,
    Rig,
    make_rig,
    meta_body,
    meta_envelope,
    meta_post,
    meta_status,
    raw_http,
    request_head,
    sendgrid_event,
    sendgrid_headers,
    sendgrid_post,
    serve,
    twilio_sms,
    vonage_dlr,
    vonage_params,
)

pytestmark = pytest.mark.unit

KB = 1024


@pytest.fixture
def rig() -> Rig:
    return make_rig()


@pytest.fixture
async def server(rig: Rig) -> AsyncIterator[TestServer]:
    server = await serve(rig)
    yield server
    await server.close()


def big_meta_body(size: int = 31 * KB) -> tuple[bytes, int]:
    """A validly shaped Meta status webhook of about `size` bytes (real batches carry conversation and pricing)."""
    statuses: list[dict[str, Any]] = []
    while len(meta_body(meta_envelope(statuses))) < size:
        i = len(statuses)
        statuses.append(meta_status(f"wamid.HBgLMzQ2MDAxMTEyMjIVAgARGBI{i:010d}", "delivered", f"msg-{i}",
                                    conversation={"id": f"{i:032x}", "origin": {"type": "utility"}},
                                    pricing={"billable": True, "pricing_model": "PMP", "category": "utility",
                                             "type": "regular"}))
    return meta_body(meta_envelope(statuses)), len(statuses)


# --- bodies: read whole, however they arrive; 413 past the limit -------------------------------------------------


async def test_webhooks__body_in_8_kb_pieces_is_read_whole(rig: Rig, server: TestServer) -> None:
    body, count = big_meta_body()
    assert 30 * KB < len(body) < 33 * KB

    async def pieces() -> AsyncIterator[bytes]:  # chunked transfer, each piece on its own
        for start in range(0, len(body), 8 * KB):
            yield body[start:start + 8 * KB]
            await asyncio.sleep(0.02)

    signed = meta_post(body)
    async with httpx.AsyncClient() as client:
        answer = await client.post(str(server.make_url("/webhooks/whatsapp/meta")), content=pieces(),
                                   headers=dict(signed.headers))
    assert answer.status_code == 200, answer.text
    assert sorted(s.message_id for s in rig.publisher.statuses()) == sorted(f"msg-{i}" for i in range(count))


async def test_webhooks__content_length_body_in_8_kb_pieces_is_read_whole(rig: Rig, server: TestServer) -> None:
    body, count = big_meta_body()
    signed = meta_post(body)
    head = request_head("POST", b"/webhooks/whatsapp/meta", {
        b"Content-Type": b"application/json", b"Content-Length": str(len(body)).encode(),
        b"X-Hub-Signature-256": signed.headers["x-hub-signature-256"].encode()})
    status, _ = await raw_http(server.port, head, body, pieces=8 * KB, pause=0.02)  # type: ignore[arg-type]
    assert status == 200
    assert len(rig.publisher.statuses()) == count


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_webhooks__body_over_the_limit_is_413_and_changes_nothing(rig: Rig, server: TestServer,
                                                                       framing: str) -> None:
    body = b"[" + b" " * (2 * KB * KB) + b"]"  # 2 MiB: over the 1 MiB default
    headers = {b"Content-Type": b"application/json",
               b"X-Hub-Signature-256": meta_post(body).headers["x-hub-signature-256"].encode()}
    if framing == "content-length":
        headers[b"Content-Length"] = str(len(body)).encode()
        wire = body
    else:
        headers[b"Transfer-Encoding"] = b"chunked"
        wire = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 64 * KB]), body[i:i + 64 * KB])
                        for i in range(0, len(body), 64 * KB)) + b"0\r\n\r\n"
    status, _ = await raw_http(server.port, request_head("POST", b"/webhooks/whatsapp/meta", headers), wire,  # type: ignore[arg-type]
                               pieces=64 * KB)
    assert status == 413
    assert rig.state() == (0, {}, {}, 0)
    assert rig.counted("whatsapp", "meta", "too_large") == 1


async def test_webhooks__limit_is_configurable() -> None:
    rig = make_rig(webhook_max_bytes=4 * KB)
    server = await serve(rig)
    try:
        body = meta_body(meta_envelope([meta_status("wamid.A", opaque="x" * 5 * KB)]))
        async with httpx.AsyncClient() as client:
            answer = await client.post(str(server.make_url("/webhooks/whatsapp/meta")), content=body,
                                       headers=dict(meta_post(body).headers))
        assert answer.status_code == 413 and rig.publisher.records == []
    finally:
        await server.close()
    assert Settings(_env_file=None).webhook_max_bytes == 1_048_576  # type: ignore[call-arg]


def test_settings__webhook_limit_and_tolerance_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_WEBHOOK_MAX_BYTES", "65536")
    monkeypatch.setenv("HERALD_WEBHOOK_TOLERANCE", "60")
    settings = Settings()
    assert (settings.webhook_max_bytes, settings.webhook_tolerance) == (65536, 60)
    monkeypatch.delenv("HERALD_WEBHOOK_MAX_BYTES")
    monkeypatch.delenv("HERALD_WEBHOOK_TOLERANCE")
    assert (Settings().webhook_max_bytes, Settings().webhook_tolerance) == (1_048_576, 300)


async def test_unsubscribe__post_body_over_16_kb_is_413_and_changes_nothing(rig: Rig, server: TestServer) -> None:
    link = unsubscribe_link(SECRET, PUBLIC, "user-42")
    target = link.removeprefix(PUBLIC).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 8 * KB
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient() as client:
        answer = await client.post(str(server.make_url("")) + target.decode(), content=pieces())
    assert answer.status_code == 413
    assert rig.state() == (0, {}, {}, 0)


# --- malformed input: 400/403, never 500, nothing changed ---------------------------------------------------------

NOT_UTF8_HEADERS = [
    ("/webhooks/whatsapp/meta", {b"X-Hub-Signature-256": b"sha256=\xe9\xff" + b"0" * 60}),
    ("/webhooks/sms/twilio?message_id=msg-1", {b"X-Twilio-Signature": b"\xe9\xe9\xe9=",
                                               b"I-Twilio-Idempotency-Token": b"\xff"}),
    ("/webhooks/email/sendgrid", {b"X-Twilio-Email-Event-Webhook-Signature": b"\xe9",
                                  b"X-Twilio-Email-Event-Webhook-Timestamp": b"17\xb2"}),
    ("/webhooks/sms/vonage", {b"Content-Type": b"application/json\xe9"}),
]


@pytest.mark.parametrize(("path", "headers"), NOT_UTF8_HEADERS, ids=["meta", "twilio", "sendgrid", "vonage"])
async def test_webhooks__header_byte_that_is_not_utf8_is_403(rig: Rig, server: TestServer, path: str,
                                                             headers: dict[bytes, bytes]) -> None:
    body = b'{"object": "whatsapp_business_account"}' if "twilio" not in path else b"MessageStatus=failed"
    head = request_head("POST", path.encode(), {**headers, b"Content-Length": str(len(body)).encode()})
    status, _ = await raw_http(server.port, head, body)  # type: ignore[arg-type]
    assert status == 403
    assert rig.state() == (0, {}, {}, 0)


async def test_webhooks__vonage_timestamp_in_unicode_digits_is_403(rig: Rig, server: TestServer) -> None:
    params = vonage_params({"messageId": "0B1", "status": "delivered", "client-ref": "msg-1"})
    for timestamp in ("%C2%B2", "%D9%A1%D9%A7%D9%A6%D9%A4"):  # `²`, Arabic-Indic digits: isdigit() but not [0-9]
        query = "&".join(f"{k}={v}" for k, v in params.items() if k != "timestamp") + f"&timestamp={timestamp}"
        status, _ = await raw_http(server.port, request_head("GET", f"/webhooks/sms/vonage?{query}".encode(), {}))  # type: ignore[arg-type]
        assert status == 403
    assert rig.state() == (0, {}, {}, 0)


@pytest.mark.parametrize("path", ["/webhooks/sms/vonage", "/webhooks/whatsapp/meta", "/webhooks/email/sendgrid"])
async def test_webhooks__json_nested_20000_deep_is_refused_not_500(rig: Rig, server: TestServer, path: str) -> None:
    body = b'{"a":' * 20_000 + b"1" + b"}" * 20_000
    async with httpx.AsyncClient() as client:
        answer = await client.post(str(server.make_url(path)), content=body,
                                   headers={"Content-Type": "application/json"})
    assert answer.status_code in (400, 403)
    assert rig.state() == (0, {}, {}, 0)


async def test_webhooks__validly_signed_json_nested_too_deep_is_400(rig: Rig) -> None:
    body = b"[" * 20_000 + b"]" * 20_000
    answer = await rig.hearback.handle("whatsapp", "meta", meta_post(body))
    assert answer.status in (200, 400)  # Meta's "not JSON, nothing subscribed to"; never a 500
    assert rig.publisher.records == []


@pytest.mark.parametrize("query", ["e=4102444800&s=%C3%A9", "e=%C2%B2&s=abc", "e=%D9%A1%D9%A7&s=abc",
                                   "e=99999999999999999999999999&s=abc", "e=&s=", "s=%ED%A0%80"],
                         ids=["s-e-acute", "e-superscript-two", "e-arabic-indic", "e-huge", "empty", "s-surrogate"])
async def test_documents__bad_link_parameters_are_403(rig: Rig, server: TestServer, query: str) -> None:
    status, _ = await raw_http(server.port, request_head("GET", f"/documents/msg-1.pdf?{query}".encode(), {}))  # type: ignore[arg-type]
    assert status == 403


@pytest.mark.parametrize("query", ["c=email&s=%C3%A9", "c=%C3%A9&s=x", "s=%ED%A0%80", "c=email&s=%C2%B2"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unsubscribe__bad_link_parameters_are_403(rig: Rig, server: TestServer, query: str,
                                                        method: str) -> None:
    head = request_head(method, f"/unsubscribe/user-42?{query}".encode(), {b"Content-Length": b"0"})
    status, _ = await raw_http(server.port, head)  # type: ignore[arg-type]
    assert status == 403
    assert rig.state() == (0, {}, {}, 0)


OBJECT_WHERE_TEXT_BELONGS = [
    ("biz_opaque_callback_data", meta_envelope([meta_status("wamid.A", opaque={"message_id": "msg-1"})])),
    ("status-id", meta_envelope([{**meta_status("wamid.A"), "id": {"x": 1}}])),
    ("status-word", meta_envelope([{**meta_status("wamid.A"), "status": ["delivered"]}])),
    ("message-id", meta_envelope(messages=[{"from": "34600111222", "id": ["wamid.B"], "type": "text",
                                            "text": {"body": "SI"}}])),
    ("message-from", meta_envelope(messages=[{"from": {"wa_id": "1"}, "id": "wamid.B", "type": "text",
                                              "text": {"body": "SI"}}])),
]


@pytest.mark.parametrize("envelope", [c[1] for c in OBJECT_WHERE_TEXT_BELONGS],
                         ids=[c[0] for c in OBJECT_WHERE_TEXT_BELONGS])
async def test_meta__validly_signed_object_where_text_belongs_is_400_and_publishes_nothing(
        rig: Rig, server: TestServer, envelope: dict[str, Any]) -> None:
    body = meta_body(envelope)
    async with httpx.AsyncClient() as client:
        answer = await client.post(str(server.make_url("/webhooks/whatsapp/meta")), content=body,
                                   headers=dict(meta_post(body).headers))
    assert answer.status_code == 400
    assert rig.state() == (0, {}, {}, 0)
    assert rig.counted("whatsapp", "meta", "bad_request") == 1


async def test_meta__interactive_reply_that_is_not_an_object_is_no_text(rig: Rig) -> None:
    body = meta_body(meta_envelope(messages=[{"from": "34600111222", "id": "wamid.B", "type": "interactive",
                                              "interactive": ["button_reply"]}]))
    answer = await rig.hearback.handle("whatsapp", "meta", meta_post(body))
    assert answer.status == 200
    [reply] = rig.publisher.json("replies")
    assert reply["data"]["text"] is None


def test_status_update__refuses_a_non_text_field() -> None:
    with pytest.raises(TypeError, match="message_id"):
        StatusUpdate(message_id={"a": 1}, provider_message_id=None, status=None, vendor_status="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sender"):
        InboundMessage(channel="sms", sender=7)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["1764000000", "0"])
def test_unix_seconds__reads_ascii_digits(value: str) -> None:
    assert unix_seconds(value) == int(value)


@pytest.mark.parametrize("value", [None, "", "²", "17640000²", "١٧٦٤", "-1", "+1", " 1", "1.5", "9" * 13,
                                   "\uff11\uff12"])
def test_unix_seconds__refuses_everything_else(value: str | None) -> None:
    assert unix_seconds(value) is None


def test_standard_webhooks__unicode_digit_timestamp_is_refused_not_raised() -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b"{}"
    headers = {"webhook-id": "msg-1", "webhook-timestamp": "²",
               "webhook-signature": standard_webhook_signature(secret, "msg-1", 2, body)}
    assert verify_standard_webhook(secret, headers, body, now=2) is False
    good = {**headers, "webhook-timestamp": "2", "webhook-signature": "v1,é " + headers["webhook-signature"]}
    assert verify_standard_webhook(secret, good, body, now=2) is True


# --- the backstop: unexpected exceptions ---------------------------------------------------------------------------


class Exploding:
    name = "twilio"
    channel = "sms"
    STATUS_MAP: dict[str, Any] = {}

    def __init__(self, where: str) -> None:
        self.where = where

    def verify_webhook(self, request: WebhookRequest) -> bool:
        if self.where == "verify":
            raise RuntimeError("a bug in a verifier")
        return True

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult:
        if self.where == "parse":
            raise RecursionError("a bug in a parser")
        return WebhookResult(statuses=[StatusUpdate("msg-1", "SM1", Status.DELIVERED, "delivered",
                                                    delivery_id="SM1|delivered")])


@pytest.mark.parametrize("where", ["verify", "parse"])
async def test_hearback__unexpected_exception_before_any_change_is_400_malformed(rig: Rig, where: str) -> None:
    rig.receivers[("sms", "twilio")] = Exploding(where)  # type: ignore[assignment]
    answer = await rig.hearback.handle("sms", "twilio", twilio_sms({"MessageStatus": "delivered"}))
    assert answer.status == 400
    assert rig.state() == (0, {}, {}, 0)
    assert rig.counted("sms", "twilio", "malformed") == 1


async def test_hearback__failure_after_verification_is_500_and_the_retry_applies_only_the_rest(rig: Rig) -> None:
    events = [sendgrid_event("delivered", f"ev-{i}", herald_message_id=f"msg-{i}") for i in range(3)]
    calls = 0

    async def flaky(receipt: Receipt) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("the receipts topic's broker is away")
        rig.receipts.append((receipt.message_id, receipt.status.value))
        await rig.hearback.statuses.for_receipt(receipt)

    rig.hearback.hooks = HearBackHooks(on_receipt=flaky)
    first = await rig.hearback.handle("email", "sendgrid", sendgrid_post(events))
    assert first.status == 500 and rig.counted("email", "sendgrid", "error") == 1
    again = await rig.hearback.handle("email", "sendgrid", sendgrid_post(events))  # SendGrid retries the batch
    assert again.status == 200
    # msg-0 was applied and remembered before the failure: the retry applies msg-1 (again) and msg-2, not msg-0.
    assert [s.message_id for s in rig.publisher.statuses()] == ["msg-0", "msg-1", "msg-2"]
    assert rig.receipts == [("msg-0", "delivered"), ("msg-1", "delivered"), ("msg-2", "delivered")]
    assert rig.replayed("email", "sendgrid") == 1


# --- signed timestamps: tolerance on Herald's clock --------------------------------------------------------------


async def test_sendgrid__complaint_signed_in_2001_is_403_and_suppresses_nothing(rig: Rig) -> None:
    old = NOW.replace(year=2001)
    complaint = [sendgrid_event("spamreport", "ev-2001", timestamp=int(old.timestamp()))]
    answer = await rig.hearback.handle("email", "sendgrid", sendgrid_post(complaint, at=old))
    assert answer.status == 403
    assert rig.state() == (0, {}, {}, 0)
    assert rig.counted("email", "sendgrid", "forbidden") == 1


@pytest.mark.parametrize("skew", [-300, -30, 0, 30, 300])
async def test_sendgrid__complaint_within_tolerance_suppresses_the_address(rig: Rig, skew: int) -> None:
    complaint = [sendgrid_event("spamreport", "ev-now")]
    answer = await rig.hearback.handle("email", "sendgrid", sendgrid_post(complaint, at=NOW + timedelta(seconds=skew)))
    assert answer.status == 200
    assert [s.status for s in rig.publisher.statuses()] == [Status.COMPLAINED]
    doc = rig.ledger.get("user-42")
    assert doc is not None and doc.suppressed == {recipient_hash(SECRET, "ana@example.com"): "complained"}


@pytest.mark.parametrize("skew", [-301, 301])
async def test_sendgrid__timestamp_beyond_tolerance_either_way_is_403(rig: Rig, skew: int) -> None:
    answer = await rig.hearback.handle("email", "sendgrid", sendgrid_post(
        [sendgrid_event("delivered", "ev-1")], at=NOW + timedelta(seconds=skew)))
    assert answer.status == 403 and rig.publisher.records == []


async def test_tolerance__is_the_setting_and_reads_herald_clock() -> None:
    rig = make_rig(webhook_tolerance=60)
    late = rig.hearback.handle("sms", "vonage", vonage_dlr(at=NOW - timedelta(seconds=61)))
    assert (await late).status == 403
    rig.clock.advance(seconds=-30)  # simulated time: the receipt is now 31 s old
    assert (await rig.hearback.handle("sms", "vonage", vonage_dlr(at=NOW - timedelta(seconds=61)))).status == 200


# --- replays -------------------------------------------------------------------------------------------------------

def twilio_delivered(token: str = "idem-1") -> WebhookRequest:
    return twilio_sms({"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+34600111222"}, token=token)


async def test_replay__twilio_webhook_delivered_twice_publishes_one_status(rig: Rig) -> None:
    assert (await rig.hearback.handle("sms", "twilio", twilio_delivered())).status == 200
    assert (await rig.hearback.handle("sms", "twilio", twilio_delivered())).status == 200
    assert len(rig.publisher.statuses()) == 1 and rig.receipts == [("msg-1", "delivered")]
    assert rig.replayed("sms", "twilio") == 1 and rig.counted("sms", "twilio", "replay") == 1


async def test_replay__twilio_same_message_and_status_under_another_token_is_a_replay(rig: Rig) -> None:
    await rig.hearback.handle("sms", "twilio", twilio_delivered("idem-1"))
    await rig.hearback.handle("sms", "twilio", twilio_delivered("idem-2"))  # the token is not signed
    assert len(rig.publisher.statuses()) == 1 and rig.replayed("sms", "twilio") == 1


async def test_replay__twilio_inbound_stop_twice_publishes_one_reply(rig: Rig) -> None:
    stop = twilio_sms({"MessageSid": "SM9", "From": "+34600111222", "To": "+15005550006", "Body": "STOP"},
                      query={})
    await rig.hearback.handle("sms", "twilio", stop)
    await rig.hearback.handle("sms", "twilio", stop)
    assert len(rig.publisher.on("replies")) == 1 and rig.replayed("sms", "twilio") == 1


async def test_replay__voice_keypad_retry_answers_the_same_twiml_and_publishes_once(rig: Rig) -> None:
    gather = twilio_sms({"CallSid": "CA1", "CallStatus": "in-progress", "Digits": "1", "To": "+34600111222"},
                        query={"message_id": "msg-1", "kind": "gather", "k": "1c", "l": "en-US"},
                        path="/webhooks/voice/twilio", token="idem-g")
    first = await rig.hearback.handle("voice", "twilio", gather)
    second = await rig.hearback.handle("voice", "twilio", gather)
    assert first.body == second.body and b"<Hangup" in second.body
    assert len(rig.publisher.on("replies")) == 1 and rig.replayed("voice", "twilio") == 1
    pressed_again = twilio_sms({"CallSid": "CA1", "CallStatus": "in-progress", "Digits": "1", "To": "+34600111222"},
                               query={"message_id": "msg-1", "kind": "gather", "k": "1c", "l": "en-US"},
                               path="/webhooks/voice/twilio", token="idem-g2")
    await rig.hearback.handle("voice", "twilio", pressed_again)  # a person pressing again is not a replay
    assert len(rig.publisher.on("replies")) == 2


async def test_replay__vonage_nonce_delivered_twice_publishes_one_status(rig: Rig) -> None:
    await rig.hearback.handle("sms", "vonage", vonage_dlr(nonce="n-1"))
    await rig.hearback.handle("sms", "vonage", vonage_dlr(nonce="n-1"))
    await rig.hearback.handle("sms", "vonage", vonage_dlr(nonce="n-2"))  # re-signed retry: same messageId+status
    assert len(rig.publisher.statuses()) == 1 and rig.replayed("sms", "vonage") == 2
    await rig.hearback.handle("sms", "vonage", vonage_dlr(message="0B00000099999999", nonce="n-3"))  # next part
    assert len(rig.publisher.statuses()) == 2


async def test_replay__meta_status_delivered_twice_publishes_one_status(rig: Rig) -> None:
    once = meta_post(meta_body(meta_envelope([meta_status("wamid.A", "delivered")])))
    await rig.hearback.handle("whatsapp", "meta", once)
    await rig.hearback.handle("whatsapp", "meta", once)
    assert len(rig.publisher.statuses()) == 1 and rig.replayed("whatsapp", "meta") == 1
    read = meta_post(meta_body(meta_envelope([meta_status("wamid.A", "delivered"), meta_status("wamid.A", "read")])))
    await rig.hearback.handle("whatsapp", "meta", read)  # one old, one new: only the new one
    assert [s.status for s in rig.publisher.statuses()] == [Status.DELIVERED, Status.READ]
    assert rig.replayed("whatsapp", "meta") == 2


async def test_replay__meta_inbound_message_twice_publishes_one_reply(rig: Rig) -> None:
    message = {"from": "34600111222", "id": "wamid.IN", "timestamp": "1764000000", "type": "text",
               "text": {"body": "Hola"}}
    once = meta_post(meta_body(meta_envelope(messages=[message])))
    await rig.hearback.handle("whatsapp", "meta", once)
    await rig.hearback.handle("whatsapp", "meta", once)
    assert len(rig.publisher.on("replies")) == 1


async def test_replay__sendgrid_batch_drops_only_its_replayed_events(rig: Rig) -> None:
    await rig.hearback.handle("email", "sendgrid", sendgrid_post([sendgrid_event("delivered", "ev-1")]))
    batch = [sendgrid_event("delivered", "ev-1"), sendgrid_event("open", "ev-2"), sendgrid_event("click", "ev-3")]
    assert (await rig.hearback.handle("email", "sendgrid", sendgrid_post(batch))).status == 200
    assert [s.status for s in rig.publisher.statuses()] == [Status.DELIVERED, Status.OPENED, Status.CLICKED]
    assert rig.replayed("email", "sendgrid") == 1 and rig.counted("email", "sendgrid", "ok") == 2


@pytest.mark.parametrize(("channel", "vendor", "make"), [
    ("sms", "twilio", twilio_delivered),
    ("sms", "vonage", vonage_dlr),
    ("whatsapp", "meta", lambda: meta_post(meta_body(meta_envelope([meta_status("wamid.A")])))),
    ("email", "sendgrid", lambda: sendgrid_post([sendgrid_event("bounce", "ev-9", type="bounce")])),
], ids=["twilio", "vonage", "meta", "sendgrid"])
async def test_replay__survives_a_new_hearback_on_the_same_store(rig: Rig, channel: str, vendor: str,
                                                                 make: Any) -> None:
    assert (await rig.hearback.handle(channel, vendor, make())).status == 200
    restarted = rig.rebuilt()
    assert (await restarted.handle(channel, vendor, make())).status == 200
    assert len(rig.publisher.statuses()) == 1 and rig.replayed(channel, vendor) == 1


async def test_replay__concurrent_deliveries_of_one_id_apply_once(rig: Rig) -> None:
    real_send = rig.publisher.send

    async def slow_send(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0.02)  # a durable write takes a while: the second delivery arrives meanwhile
        await real_send(*args, **kwargs)

    rig.publisher.send = slow_send  # type: ignore[method-assign]
    answers = await asyncio.gather(*(rig.hearback.handle("sms", "twilio", twilio_delivered()) for _ in range(3)))
    assert [a.status for a in answers] == [200, 200, 200]
    assert len(rig.publisher.statuses()) == 1 and rig.replayed("sms", "twilio") == 2
    assert rig.hearback._inflight == {}


async def test_replay__ids_are_hashed_and_expire_with_the_janitor(rig: Rig) -> None:
    await rig.hearback.handle("whatsapp", "meta", meta_post(meta_body(meta_envelope([meta_status("wamid.A")]))))
    key = replay_key("whatsapp", "meta", "item", "wamid.A|delivered")
    assert list(rig.replays.data) == [key] and b"wamid" not in key.encode()
    state = State.in_memory()
    state.webhooks = rig.replays
    rules = [r for r in retention_rules(state, rig.settings, load_catalog(rig.settings),
                                        Conversations(MemoryStore(), SECRET)) if r.name == "state.webhooks"]
    window = rig.settings.dedupe_window
    assert len(rules) == 1
    for at, left in ((NOW + window - timedelta(seconds=1), 1), (NOW + window, 0)):
        await Janitor(rules, clock=lambda at=at: at, owns=lambda _k: True).sweep()
        assert len(rig.replays.data) == left
    # Once forgotten, the same delivery is applied again (it is older than any vendor retries for).
    rig.clock.advance(days=window.days)
    await rig.hearback.handle("whatsapp", "meta", meta_post(meta_body(meta_envelope([meta_status("wamid.A")]))))
    assert len(rig.publisher.statuses()) == 2


async def test_replay__remembered_id_older_than_the_window_is_applied_again(rig: Rig) -> None:
    await rig.hearback.handle("sms", "twilio", twilio_delivered())
    rig.clock.advance(days=rig.settings.dedupe_window.days, seconds=1)  # the janitor has not swept yet
    await rig.hearback.handle("sms", "twilio", twilio_delivered())
    assert len(rig.publisher.statuses()) == 2


async def test_replay__a_webhook_without_any_id_is_applied_every_time(rig: Rig) -> None:
    untagged = twilio_sms({"MessageStatus": "delivered"}, token=None)
    await rig.hearback.handle("sms", "twilio", untagged)
    await rig.hearback.handle("sms", "twilio", untagged)
    assert len(rig.publisher.statuses()) == 2 and rig.replays.data == {}


def test_state__webhooks_store_is_a_compacted_state_topic() -> None:
    assert "state.webhooks" in STATE_TOPICS
    assert "webhooks" in {f for f in State.__dataclass_fields__}


async def test_web__replay_through_the_view_answers_200(rig: Rig, server: TestServer) -> None:
    events = [sendgrid_event("spamreport", "ev-1")]
    body = json.dumps(events).encode()
    async with httpx.AsyncClient() as client:
        for _ in range(2):
            answer = await client.post(str(server.make_url("/webhooks/email/sendgrid")), content=body,
                                       headers=sendgrid_headers(body))
            assert answer.status_code == 200
    assert len(rig.publisher.statuses()) == 1 and rig.replayed("email", "sendgrid") == 1
