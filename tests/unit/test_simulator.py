"""The provider simulator: vendor request validation and shapes, fault injection, signed callbacks that Herald's
own providers verify and parse, and one round trip per provider class."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.base import OutboundMessage
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.providers._twilio import TwilioSettings
from channels.providers.push import FcmPushProvider, FcmSettings
from channels.providers.sendgrid import SendgridEmailProvider, SendgridSettings
from channels.providers.sms import TwilioSmsProvider, VonageSettings, VonageSmsProvider
from channels.providers.voice import TwilioVoiceProvider
from channels.providers.webhook import StandardWebhookProvider, WebhookSettings
from channels.providers.whatsapp import MetaSettings, MetaWhatsappProvider
from channels.rendering.render import Rendered
from channels.signatures import standard_webhook_signature
from channels.webhooks import WebhookRequest, WebhookResponse, lower_keys
from consumers.dev.simulator import SimConfig, SimServer
from consumers.dev.simulator.behaviour import Behaviour
from schemas.settings import Settings
from schemas.status import Status

pytestmark = pytest.mark.unit

PERSON = "+34600111222"
UNROUTABLE = "+34600110000"
TWILIO = TwilioSettings()
VONAGE = VonageSettings()
META = MetaSettings()
FCM = FcmSettings()
SENDGRID = SendgridSettings()
TWILIO_AUTH = (TWILIO.account_sid, TWILIO.auth_token.get_secret_value())
MESSAGES_PATH = f"/twilio/2010-04-01/Accounts/{TWILIO.account_sid}/Messages.json"
CALLS_PATH = f"/twilio/2010-04-01/Accounts/{TWILIO.account_sid}/Calls.json"
META_PATH = f"/meta/{META.api_version}/{META.phone_number_id}/messages"
FCM_PATH = f"/fcm/v1/projects/{FCM.project_id}/messages:send"


# --- a stand-in for Herald's webhook endpoints ------------------------------------------------------------------


class FakeHerald:
    """Records every webhook as the `WebhookRequest` Herald's web layer would build, answers 200 (or `responder`)."""

    def __init__(self) -> None:
        self.requests: list[WebhookRequest] = []
        self.status = 200
        self.responder: Callable[[WebhookRequest], WebhookResponse | None] | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        captured = WebhookRequest(method=request.method, url=self.url + request.raw_path,
                                  headers=lower_keys(request.headers), query=dict(request.query),
                                  body=await request.read())
        self.requests.append(captured)
        if self.responder is not None and (answer := self.responder(captured)) is not None:
            return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)
        return web.Response(status=self.status)

    def on(self, path: str) -> list[WebhookRequest]:
        return [r for r in self.requests if urlsplit(r.url).path == path]


@pytest.fixture
async def herald() -> AsyncIterator[FakeHerald]:
    fake = FakeHerald()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


@pytest.fixture
async def sim(herald: FakeHerald) -> AsyncIterator[SimServer]:
    config = SimConfig(callback_delay_ms=0, callback_backoff_ms=5, seed=7)
    async with SimServer(Settings(public_url=herald.url), config) as server:
        yield server


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url) as c:
        yield c


@pytest.fixture
def herald_settings(sim: SimServer, herald: FakeHerald) -> Settings:
    """What Herald's providers run with: vendors at the simulator, callbacks to the fake Herald."""
    return Settings(sim_url=sim.url, public_url=herald.url, secret="test-secret-for-simulator")


async def configure(client: httpx.AsyncClient, **patch: Any) -> dict[str, Any]:
    response = await client.post("/_sim/config", json=patch)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def statuses(provider: Any, requests: list[WebhookRequest]) -> list[str]:
    """The vendor words of the receipts, after checking each one's signature like Herald does."""
    words = []
    for request in requests:
        assert provider.verify_webhook(request), request.url
        words.extend(update.vendor_status for update in provider.parse_webhook(request).statuses)
    return words


def wire_words(requests: list[WebhookRequest]) -> list[str]:
    """The vendor words of the receipts as the simulator sent them, before any provider reads them. Herald publishes
    its own `sent` when the API accepts a message, so the vendors' "sent" is on the wire but no StatusUpdate."""
    words = []
    for request in requests:
        if urlsplit(request.url).path.startswith("/webhooks/whatsapp/"):
            words.extend(item["status"] for entry in request.json()["entry"] for change in entry["changes"]
                         for item in change["value"].get("statuses", []))
        elif "MessageStatus" in request.form():
            words.append(request.form()["MessageStatus"])
    return words


def outbound(channel: str, address: str, parts: dict[str, str], **kwargs: Any) -> OutboundMessage:
    return OutboundMessage(message_id="msg-5e1", channel=channel, address=address, idempotency_key="idem-5e1",
                           rendered=Rendered(template=f"order.confirmed/{channel}", locale="es", parts=parts),
                           **kwargs)


# --- Twilio SMS -------------------------------------------------------------------------------------------------


async def send_twilio_sms(client: httpx.AsyncClient, herald: FakeHerald, **form: str) -> httpx.Response:
    data = {"To": PERSON, "From": "+15005550006", "Body": "Tu pedido 1001 ha sido confirmado",
            "StatusCallback": f"{herald.url}/webhooks/sms/twilio?message_id=msg-1", **form}
    return await client.post(MESSAGES_PATH, data={k: v for k, v in data.items() if v is not None}, auth=TWILIO_AUTH)


async def test_twilio_sms__answers_the_message_resource_then_calls_back_signed(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    response = await send_twilio_sms(client, herald, Body="x" * 200)
    assert response.status_code == 201
    body = response.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", body["sid"])
    assert body | {"sid": "", "date_created": "", "date_updated": "", "uri": "", "subresource_uris": {}} == {
        "account_sid": TWILIO.account_sid, "api_version": "2010-04-01", "body": "x" * 200, "date_created": "",
        "date_sent": None, "date_updated": "", "direction": "outbound-api", "error_code": None,
        "error_message": None, "from": "+15005550006", "messaging_service_sid": None, "num_media": "0",
        "num_segments": "2", "price": None, "price_unit": "USD", "sid": "", "status": "queued", "to": PERSON,
        "uri": "", "subresource_uris": {}}
    assert body["date_created"].endswith("+0000")
    await sim.sim.idle()
    provider = TwilioSmsProvider.from_settings(herald_settings)
    received = herald.on("/webhooks/sms/twilio")
    assert wire_words(received) == ["sent", "delivered"]
    assert statuses(provider, received) == ["delivered"]
    assert provider.parse_webhook(received[0]).statuses == []
    assert {r.form()["MessageSid"] for r in received} == {body["sid"]}
    assert provider.parse_webhook(received[-1]).statuses[0].message_id == "msg-1"
    await provider.close()


async def test_twilio_sms__bad_credentials_are_401_code_20003(client: httpx.AsyncClient) -> None:
    response = await client.post(MESSAGES_PATH, data={"To": PERSON, "From": "+15005550006", "Body": "hi"},
                                 auth=(TWILIO.account_sid, "wrong-token"))
    assert response.status_code == 401
    assert response.json()["code"] == 20003
    assert response.json()["more_info"] == "https://www.twilio.com/docs/errors/20003"


TWILIO_INVALID = [
    ({"To": "+3460011"}, 21211),
    ({"To": "not-a-number"}, 21211),
    ({"Body": ""}, 21602),
    ({"Body": "x" * 1601}, 21617),
    ({"To": ""}, 21604),
    ({"To": UNROUTABLE}, 21614),
]


@pytest.mark.parametrize(("form", "code"), TWILIO_INVALID,
                         ids=["short-number", "not-a-number", "no-body", "body-over-1600", "no-to", "ends-0000"])
async def test_twilio_sms__invalid_requests_get_twilio_codes(client: httpx.AsyncClient, herald: FakeHerald,
                                                             sim: SimServer, form: dict[str, str], code: int) -> None:
    response = await send_twilio_sms(client, herald, **form)
    assert response.status_code == 400
    assert response.json()["code"] == code
    await sim.sim.idle()
    assert herald.requests == []


@pytest.mark.parametrize(("fail", "expected"), [
    ("permanent", [("failed", "30005")]),
    ("undelivered", [("sent", None), ("undelivered", "30003")]),
], ids=["permanent", "undelivered"])
async def test_twilio_sms__recipient_rules_fail_the_receipts(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, fail: str,
        expected: list[tuple[str, str | None]]) -> None:
    await configure(client, recipients={PERSON: {"fail": fail, "reply_text": "SI"}})
    assert (await send_twilio_sms(client, herald)).status_code == 201
    await sim.sim.idle()
    forms = [r.form() for r in herald.requests]
    assert [(f["MessageStatus"], f.get("ErrorCode")) for f in forms] == expected  # and no reply after a failure


async def test_twilio_sms__reply_text_arrives_as_a_signed_inbound_sms(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    await configure(client, recipients={PERSON: {"reply_text": "SI"}})
    await send_twilio_sms(client, herald, StatusCallback=None)
    await sim.sim.idle()
    [reply] = herald.requests
    assert urlsplit(reply.url).path == "/webhooks/sms/twilio"
    form = reply.form()
    assert (form["From"], form["To"], form["Body"], form["NumMedia"]) == (PERSON, "+15005550006", "SI", "0")
    provider = TwilioSmsProvider.from_settings(herald_settings)
    assert provider.verify_webhook(reply)
    [inbound] = provider.parse_webhook(reply).inbound
    assert (inbound.sender, inbound.text) == (PERSON, "SI")
    await provider.close()


@pytest.mark.parametrize(("rule", "replies"), [({"reply_text": "SI"}, 3), ({"reply_text": "SI", "reply_times": 1}, 1)],
                         ids=["every_message", "reply_times_1"])
async def test_twilio_sms__reply_times_bounds_how_many_messages_the_person_answers(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, rule: dict[str, Any], replies: int) -> None:
    await configure(client, recipients={PERSON: rule})
    for _ in range(3):
        await send_twilio_sms(client, herald, StatusCallback=None)
        await sim.sim.idle()
    assert len(herald.requests) == replies
    await configure(client, recipients={PERSON: rule})  # a new configuration starts counting again
    await send_twilio_sms(client, herald, StatusCallback=None)
    await sim.sim.idle()
    assert len(herald.requests) == replies + 1


# --- Twilio voice -----------------------------------------------------------------------------------------------


def call_form(herald: FakeHerald, twiml: str, events: list[str] | None = None) -> dict[str, Any]:
    form: dict[str, Any] = {"To": PERSON, "From": "+15005550006", "Twiml": twiml,
                            "StatusCallback": f"{herald.url}/webhooks/voice/twilio?message_id=msg-1"}
    if events is not None:
        form["StatusCallbackEvent"] = events
    return form


GATHER_TWIML = ('<Response><Gather numDigits="1" action="/webhooks/voice/twilio?message_id=msg-1&amp;kind=gather">'
                "<Say>Pulse 1</Say></Gather><Hangup/></Response>")


async def test_twilio_voice__progress_callbacks_and_digits_posted_to_the_gather_action(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    await configure(client, recipients={PERSON: {"reply_digits": "12"}})
    herald.responder = lambda r: (WebhookResponse(body=b"<Response><Hangup/></Response>",
                                                  content_type="application/xml")
                                  if r.query.get("kind") == "gather" else None)
    response = await client.post(CALLS_PATH, data=call_form(herald, GATHER_TWIML, list(
        ("initiated", "ringing", "answered", "completed"))), auth=TWILIO_AUTH)
    assert response.status_code == 201
    call = response.json()
    assert re.fullmatch(r"CA[0-9a-f]{32}", call["sid"]) and call["status"] == "queued"
    await sim.sim.idle()
    provider = TwilioVoiceProvider.from_settings(herald_settings)
    forms = []
    for request in herald.requests:
        assert provider.verify_webhook(request)
        forms.append(request.form())
    assert [f.get("Digits") or f["CallStatus"] for f in forms] == ["initiated", "ringing", "in-progress", "1",
                                                                    "completed"]
    assert {f["CallSid"] for f in forms} == {call["sid"]}
    assert int(forms[-1]["CallDuration"]) > 0
    assert herald.requests[3].query == {"message_id": "msg-1", "kind": "gather"}
    [gather] = [c for c in sim.sim.callbacks if c["kind"] == "gather"]
    assert gather["response"] == "<Response><Hangup/></Response>"  # Herald's TwiML answer is recorded
    await provider.close()


async def test_twilio_voice__twiml_fetched_from_url_and_relative_gather_action_resolved(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    await configure(client, recipients={PERSON: {"reply_digits": "9"}})
    herald.responder = lambda r: (WebhookResponse(body=b'<Response><Gather action="answer?step=2"/></Response>',
                                                  content_type="application/xml")
                                  if urlsplit(r.url).path == "/voice/start" else None)
    form = call_form(herald, "", ["completed"])
    del form["Twiml"]
    form["Url"] = f"{herald.url}/voice/start?message_id=msg-1"
    assert (await client.post(CALLS_PATH, data=form, auth=TWILIO_AUTH)).status_code == 201
    await sim.sim.idle()
    provider = TwilioVoiceProvider.from_settings(herald_settings)
    assert all(provider.verify_webhook(r) for r in herald.requests)
    assert [(urlsplit(r.url).path, r.form().get("Digits")) for r in herald.requests] == [
        ("/voice/start", None), ("/voice/answer", "9"), ("/webhooks/voice/twilio", None)]
    assert herald.requests[1].query == {"step": "2"}
    await provider.close()


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
async def test_twilio_voice__unanswered_calls_end_with_the_rule_outcome(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, outcome: str) -> None:
    await configure(client, recipients={PERSON: {"voice": outcome, "reply_digits": "1"}})
    events = ["initiated", "ringing", "answered", "completed"]
    assert (await client.post(CALLS_PATH, data=call_form(herald, GATHER_TWIML, events),
                              auth=TWILIO_AUTH)).status_code == 201
    await sim.sim.idle()
    final = herald.requests[-1].form()
    assert (final["CallStatus"], final["CallDuration"]) == (outcome, "0")
    assert not any("Digits" in r.form() for r in herald.requests)


async def test_twilio_voice__without_status_events_only_the_end_is_reported(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald) -> None:
    await client.post(CALLS_PATH, data=call_form(herald, "<Response><Say>Hola</Say></Response>"), auth=TWILIO_AUTH)
    await sim.sim.idle()
    assert [r.form()["CallStatus"] for r in herald.requests] == ["completed"]


@pytest.mark.parametrize(("change", "code"), [
    ({"To": UNROUTABLE}, 21211), ({"Twiml": None}, 21205), ({"From": None}, 21213), ({"Twiml": "<Response"}, 12100),
], ids=["ends-0000", "no-twiml-or-url", "no-from", "broken-twiml"])
async def test_twilio_voice__invalid_calls_get_twilio_codes(client: httpx.AsyncClient, herald: FakeHerald,
                                                            change: dict[str, str | None], code: int) -> None:
    form = {k: v for k, v in {**call_form(herald, GATHER_TWIML), **change}.items() if v is not None}
    response = await client.post(CALLS_PATH, data=form, auth=TWILIO_AUTH)
    assert (response.status_code, response.json()["code"]) == (400, code)


# --- Vonage -----------------------------------------------------------------------------------------------------


def vonage_form(herald: FakeHerald, **change: str) -> dict[str, str]:
    return {"api_key": VONAGE.api_key, "api_secret": VONAGE.api_secret.get_secret_value(), "from": "Herald",
            "to": PERSON[1:], "text": "Tu código es 1234", "type": "unicode", "client-ref": "msg-1",
            "status-report-req": "1", "callback": f"{herald.url}/webhooks/sms/vonage?message_id=msg-1", **change}


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_vonage__answers_the_sms_api_shape_then_a_signed_dlr(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings,
        method: str) -> None:
    await configure(client, vonage_callback_method=method)
    response = await client.post("/vonage/sms/json", data=vonage_form(herald))
    assert response.status_code == 200
    body = response.json()
    assert body["message-count"] == "1"
    [part] = body["messages"]
    assert set(part) == {"to", "message-id", "status", "remaining-balance", "message-price", "network",
                         "client-ref"}
    assert (part["to"], part["status"], part["client-ref"]) == (PERSON[1:], "0", "msg-1")
    await sim.sim.idle()
    [dlr] = herald.requests
    assert dlr.method == method
    provider = VonageSmsProvider.from_settings(herald_settings)
    assert provider.verify_webhook(dlr)
    [update] = provider.parse_webhook(dlr).statuses
    assert (update.status, update.provider_message_id, update.message_id) == (Status.DELIVERED,
                                                                               part["message-id"], "msg-1")
    await provider.close()


VONAGE_INVALID = [
    ({"api_secret": "wrong"}, "4"),
    ({"api_key": ""}, "2"),
    ({"to": ""}, "2"),
    ({"text": ""}, "2"),
    ({"to": UNROUTABLE[1:]}, "6"),
    ({"to": "3460011"}, "3"),
]


@pytest.mark.parametrize(("change", "status"), VONAGE_INVALID,
                         ids=["bad-secret", "no-key", "no-to", "no-text", "ends-0000", "invalid-to"])
async def test_vonage__invalid_requests_get_a_per_message_status(
        client: httpx.AsyncClient, herald: FakeHerald, change: dict[str, str], status: str) -> None:
    response = await client.post("/vonage/sms/json", data=vonage_form(herald, **change))
    assert response.status_code == 200  # Vonage reports per message, inside a 200
    [part] = response.json()["messages"]
    assert part["status"] == status and part["error-text"]


async def test_vonage__failed_dlr_then_no_reply_and_a_reply_after_delivery(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    other = "+34600111333"
    await configure(client, recipients={PERSON: {"fail": "permanent", "reply_text": "NO"},
                                        other: {"reply_text": "SI"}})
    await client.post("/vonage/sms/json", json=vonage_form(herald))
    await client.post("/vonage/sms/json", json=vonage_form(herald, to=other[1:]))
    await sim.sim.idle()
    provider = VonageSmsProvider.from_settings(herald_settings)
    dlrs = herald.on("/webhooks/sms/vonage")
    for request in dlrs:
        assert provider.verify_webhook(request)
    results = [provider.parse_webhook(r) for r in dlrs]
    by_status = {u.vendor_status: u.detail for r in results for u in r.statuses}
    assert by_status == {"failed": "3", "delivered": None}
    [reply] = [i for r in results for i in r.inbound]
    assert (reply.sender, reply.text) == (other, "SI")
    await provider.close()


# --- Meta WhatsApp ----------------------------------------------------------------------------------------------


def meta_body(**change: Any) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": PERSON[1:], "type": "template",
            "template": {"name": "order_confirmed", "language": {"code": "es"},
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": "1001"}]}]},
            "biz_opaque_callback_data": "msg-1", **change}


META_HEADERS = {"Authorization": f"Bearer {META.access_token.get_secret_value()}"}


async def test_meta__template_accepted_then_signed_sent_delivered_read(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    response = await client.post(META_PATH, json=meta_body(), headers=META_HEADERS)
    assert response.status_code == 200
    body = response.json()
    wamid = body["messages"][0]["id"]
    assert body == {"messaging_product": "whatsapp", "contacts": [{"input": PERSON[1:], "wa_id": PERSON[1:]}],
                    "messages": [{"id": wamid, "message_status": "accepted"}]}
    assert wamid.startswith("wamid.")
    await sim.sim.idle()
    provider = MetaWhatsappProvider.from_settings(herald_settings)
    received = herald.on("/webhooks/whatsapp/meta")
    assert wire_words(received) == ["sent", "delivered", "read"]
    assert statuses(provider, received) == ["delivered", "read"]
    assert provider.parse_webhook(received[0]).statuses == []
    updates = [u for r in received for u in provider.parse_webhook(r).statuses]
    assert {(u.message_id, u.provider_message_id) for u in updates} == {("msg-1", wamid)}
    envelope = received[0].json()
    assert envelope["object"] == "whatsapp_business_account"
    assert envelope["entry"][0]["changes"][0]["field"] == "messages"
    await provider.close()


META_INVALID = [
    ({}, {"Authorization": "Bearer nope"}, 401, 190),
    ({"messaging_product": "sms"}, META_HEADERS, 400, 100),
    ({"to": "34-600"}, META_HEADERS, 400, 100),
    ({"template": {"name": "x"}}, META_HEADERS, 400, 100),
    ({"type": "fax"}, META_HEADERS, 400, 100),
    ({"to": UNROUTABLE[1:]}, META_HEADERS, 400, 131026),
]


@pytest.mark.parametrize(("change", "headers", "status", "code"), META_INVALID,
                         ids=["bad-token", "wrong-product", "bad-to", "no-language", "bad-type", "ends-0000"])
async def test_meta__invalid_requests_get_graph_api_errors(client: httpx.AsyncClient, change: dict[str, Any],
                                                           headers: dict[str, str], status: int, code: int) -> None:
    response = await client.post(META_PATH, json=meta_body(**change), headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["fbtrace_id"] and error["message"]
    if code == 190:
        assert error["type"] == "OAuthException"


async def test_meta__free_text_needs_the_24h_window_opened_by_the_person(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    text = meta_body(type="text", text={"body": "Hola"}, template=None)
    accepted = await client.post(META_PATH, json=text, headers=META_HEADERS)
    assert accepted.status_code == 200  # Cloud API accepts, then fails it on the webhook
    await sim.sim.idle()
    provider = MetaWhatsappProvider.from_settings(herald_settings)
    [failed] = [u for r in herald.requests for u in provider.parse_webhook(r).statuses]
    assert (failed.status, failed.detail) == (Status.FAILED, "131047")

    await configure(client, meta_reengagement="sync")
    refused = await client.post(META_PATH, json=text, headers=META_HEADERS)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, 131047)

    opened = await client.post("/_sim/inbound", json={"vendor": "meta", "from": PERSON, "text": "Hola"})
    assert opened.status_code == 200 and opened.json()["status"] == 200
    herald.requests.clear()
    assert (await client.post(META_PATH, json=text, headers=META_HEADERS)).status_code == 200
    await sim.sim.idle()
    assert wire_words(herald.requests) == ["sent", "delivered", "read"]
    assert statuses(provider, herald.requests) == ["delivered", "read"]

    sim.sim.clock = lambda: time.time() + 25 * 3600  # a day later the window has closed again
    refused = await client.post(META_PATH, json=text, headers=META_HEADERS)
    assert refused.json()["error"]["code"] == 131047
    await provider.close()


async def test_meta__reply_carries_the_context_of_the_message_it_answers(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    await configure(client, recipients={PERSON: {"reply_text": "Confirmo", "open": False}})
    wamid = (await client.post(META_PATH, json=meta_body(), headers=META_HEADERS)).json()["messages"][0]["id"]
    await sim.sim.idle()
    provider = MetaWhatsappProvider.from_settings(herald_settings)
    assert wire_words(herald.requests) == ["sent", "delivered"]  # open: false, no read
    results = [provider.parse_webhook(r) for r in herald.requests if provider.verify_webhook(r)]
    assert [u.vendor_status for r in results for u in r.statuses] == ["delivered"]
    [reply] = [i for r in results for i in r.inbound]
    assert (reply.sender, reply.text, reply.provider_message_id) == (PERSON, "Confirmo", wamid)
    await provider.close()


@pytest.mark.parametrize(("fail", "wire", "expected"), [
    ("permanent", ["failed"], [("failed", "131026")]),
    ("undelivered", ["sent", "failed"], [("failed", "131049")])],
    ids=["permanent", "undelivered"])
async def test_meta__recipient_rules_fail_on_the_webhook(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings, fail: str,
        wire: list[str], expected: list[tuple[str, str | None]]) -> None:
    await configure(client, recipients={PERSON: {"fail": fail}})
    await client.post(META_PATH, json=meta_body(), headers=META_HEADERS)
    await sim.sim.idle()
    provider = MetaWhatsappProvider.from_settings(herald_settings)
    assert wire_words(herald.requests) == wire
    assert [(u.vendor_status, u.detail) for r in herald.requests
            for u in provider.parse_webhook(r).statuses] == expected
    await provider.close()


# --- FCM --------------------------------------------------------------------------------------------------------

FCM_HEADERS = {"Authorization": f"Bearer {FCM.access_token.get_secret_value()}"}


def fcm_body(**change: Any) -> dict[str, Any]:
    return {"message": {"token": "tok-abc", "notification": {"title": "Pedido", "body": "Confirmado"},
                        "data": {"message_id": "msg-1"}, **change}}


async def test_fcm__send_answers_the_message_name(client: httpx.AsyncClient, sim: SimServer) -> None:
    response = await client.post(FCM_PATH, json=fcm_body(), headers=FCM_HEADERS)
    assert response.status_code == 200
    assert re.fullmatch(rf"projects/{FCM.project_id}/messages/0:\d{{16}}%[0-9a-f]{{16}}", response.json()["name"])
    await sim.sim.idle()
    assert sim.sim.callbacks == []  # FCM has no delivery callbacks


async def test_fcm__unregistered_token_is_404_with_the_fcm_error_body(client: httpx.AsyncClient) -> None:
    response = await client.post(FCM_PATH, json=fcm_body(token="unregistered-123"), headers=FCM_HEADERS)
    assert response.status_code == 404
    assert response.json() == {"error": {
        "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}


FCM_INVALID = [
    ({}, {"Authorization": "Bearer nope"}, 401, "UNAUTHENTICATED"),
    ({"token": None}, FCM_HEADERS, 400, "INVALID_ARGUMENT"),
    ({"data": {"n": 12}}, FCM_HEADERS, 400, "INVALID_ARGUMENT"),
    ({"notification": {"title": "x", "sound": "y"}}, FCM_HEADERS, 400, "INVALID_ARGUMENT"),
    ({"priority": "high"}, FCM_HEADERS, 400, "INVALID_ARGUMENT"),
]


@pytest.mark.parametrize(("change", "headers", "status", "word"), FCM_INVALID,
                         ids=["bad-token", "no-target", "non-string-data", "unknown-notification-field",
                              "unknown-message-field"])
async def test_fcm__invalid_requests_get_google_rpc_errors(client: httpx.AsyncClient, change: dict[str, Any],
                                                           headers: dict[str, str], status: int, word: str) -> None:
    body = fcm_body(**change)
    body["message"] = {k: v for k, v in body["message"].items() if v is not None}
    response = await client.post(FCM_PATH, json=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["status"] == word


# --- SendGrid ---------------------------------------------------------------------------------------------------

SENDGRID_HEADERS = {"Authorization": f"Bearer {SENDGRID.api_key.get_secret_value()}"}


def mail_body(to: str = "ana@example.com", **change: Any) -> dict[str, Any]:
    return {"personalizations": [{"to": [{"email": to}], "custom_args": {"herald_message_id": "msg-1"}}],
            "from": {"email": "no-reply@example.com"}, "subject": "Pedido 1001",
            "content": [{"type": "text/plain", "value": "Hola"}, {"type": "text/html", "value": "<p>Hola</p>"}],
            **change}


@pytest.mark.parametrize(("to", "rule", "expected"), [
    ("ana@example.com", {}, ["processed", "delivered"]),
    ("ana@example.com", {"open": True, "click": "https://shop.example/o/1001"},
     ["processed", "delivered", "open", "click"]),
    ("ana@bounce.example", {}, ["processed", "bounce"]),
    ("ana@example.com", {"fail": "undelivered"}, ["dropped"]),
], ids=["delivered", "opened-and-clicked", "bounce-domain", "dropped"])
async def test_sendgrid__accepted_then_signed_event_batches(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald, herald_settings: Settings, to: str,
        rule: dict[str, Any], expected: list[str]) -> None:
    if rule:
        await configure(client, recipients={to: rule})
    response = await client.post("/sendgrid/v3/mail/send", json=mail_body(to), headers=SENDGRID_HEADERS)
    assert (response.status_code, response.content) == (202, b"")
    message_id = response.headers["x-message-id"]
    await sim.sim.idle()
    provider = SendgridEmailProvider.from_settings(herald_settings)
    events = []
    for request in herald.on("/webhooks/email/sendgrid"):
        assert provider.verify_webhook(request)
        events.extend(request.json())
    assert [e["event"] for e in events] == expected
    assert all(e["herald_message_id"] == "msg-1" and e["email"] == to and e["sg_message_id"].startswith(message_id)
               for e in events)
    updates = [u for r in herald.requests for u in provider.parse_webhook(r).statuses]
    assert {(u.message_id, u.provider_message_id) for u in updates} <= {("msg-1", message_id)}
    await provider.close()


SENDGRID_INVALID = [
    ({"personalizations": []}, "personalizations"),
    ({"from": {}}, "from.email"),
    ({"subject": ""}, "subject"),
    ({"content": [{"type": "text/plain", "value": ""}]}, "content.0.value"),
    ({"personalizations": [{"to": [{"email": "not-an-address"}]}]}, "personalizations.0.to.0.email"),
]


@pytest.mark.parametrize(("change", "field"), SENDGRID_INVALID,
                         ids=["no-personalizations", "no-from", "no-subject", "empty-content", "bad-address"])
async def test_sendgrid__invalid_mail_is_400_naming_the_field(client: httpx.AsyncClient, change: dict[str, Any],
                                                              field: str) -> None:
    response = await client.post("/sendgrid/v3/mail/send", json=mail_body(**change), headers=SENDGRID_HEADERS)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert field in [e["field"] for e in errors]
    assert all(set(e) == {"message", "field", "help"} for e in errors)


async def test_sendgrid__bad_api_key_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/sendgrid/v3/mail/send", json=mail_body(), headers={"Authorization": "Bearer x"})
    assert response.status_code == 401 and response.json()["errors"][0]["message"]


# --- the customer endpoint --------------------------------------------------------------------------------------


def signed_webhook(body: bytes, secret: str | None = None, ts: int | None = None) -> dict[str, str]:
    secret = secret or WebhookSettings().signing_secret.get_secret_value()
    ts = int(time.time()) if ts is None else ts
    return {"webhook-id": "msg-1", "webhook-timestamp": str(ts), "content-type": "application/json",
            "webhook-signature": standard_webhook_signature(secret, "msg-1", ts, body)}


OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()


# Headers are built when the test runs, not when it is collected: a suite that runs long would make them stale.
@pytest.mark.parametrize(("make_headers", "customer_status", "expected"), [
    (lambda: signed_webhook(b'{"order": "1001"}'), 204, 204),
    (lambda: signed_webhook(b'{"order": "1001"}'), 500, 500),
    (lambda: signed_webhook(b'{"order": "1001"}'), 410, 410),
    (lambda: signed_webhook(b'{"order": "1001"}', secret=OTHER_SECRET), 204, 401),
    (lambda: signed_webhook(b'{"order": "1001"}', ts=int(time.time()) - 3600), 204, 401),
    (lambda: {"content-type": "application/json"}, 204, 401),
], ids=["valid", "answers-500", "answers-410", "wrong-secret", "stale", "unsigned"])
async def test_customer__verifies_the_standard_webhooks_signature(
        client: httpx.AsyncClient, make_headers: Callable[[], dict[str, str]], customer_status: int,
        expected: int) -> None:
    await configure(client, customer_status=customer_status)
    response = await client.post("/customer/webhook", content=b'{"order": "1001"}', headers=make_headers())
    assert response.status_code == expected
    [record] = (await client.get("/_sim/requests", params={"vendor": "customer"})).json()
    assert record["fields"] == {"order": "1001"} and record["status"] == expected


# --- faults -----------------------------------------------------------------------------------------------------

# (vendor, request builder, vendor code path in the 429 body, expected code)
VENDOR_REQUESTS: list[tuple[str, Callable[[httpx.AsyncClient, FakeHerald], Any]]] = [
    ("twilio", lambda c, h: send_twilio_sms(c, h)),
    ("vonage", lambda c, h: c.post("/vonage/sms/json", data=vonage_form(h))),
    ("meta", lambda c, h: c.post(META_PATH, json=meta_body(), headers=META_HEADERS)),
    ("fcm", lambda c, h: c.post(FCM_PATH, json=fcm_body(), headers=FCM_HEADERS)),
    ("sendgrid", lambda c, h: c.post("/sendgrid/v3/mail/send", json=mail_body(), headers=SENDGRID_HEADERS)),
]
RATE_LIMIT_CODES = {
    "twilio": lambda b: b["code"] == 20429,
    "vonage": lambda b: b["messages"][0]["status"] == "1",
    "meta": lambda b: b["error"]["code"] == 130429,
    "fcm": lambda b: b["error"]["details"][0]["errorCode"] == "QUOTA_EXCEEDED",
    "sendgrid": lambda b: bool(b["errors"][0]["message"]),
}


@pytest.mark.parametrize(("vendor", "send"), VENDOR_REQUESTS, ids=[v for v, _ in VENDOR_REQUESTS])
async def test_faults__rate_limit_answers_429_with_retry_after_then_recovers(
        client: httpx.AsyncClient, herald: FakeHerald, vendor: str, send: Callable[..., Any]) -> None:
    await configure(client, rate_limit={"count": 2, "retry_after": 7})
    for _ in range(2):
        response = await send(client, herald)
        assert response.status_code == 429 and response.headers["retry-after"] == "7"
        assert RATE_LIMIT_CODES[vendor](response.json())
    assert (await send(client, herald)).status_code < 300


@pytest.mark.parametrize(("vendor", "send"), VENDOR_REQUESTS, ids=[v for v, _ in VENDOR_REQUESTS])
async def test_faults__error_rate_one_answers_5xx(client: httpx.AsyncClient, herald: FakeHerald, vendor: str,
                                                  send: Callable[..., Any]) -> None:
    await configure(client, error_rate=1.0)
    assert (await send(client, herald)).status_code >= 500


async def test_faults__timeouts_are_held_then_504_and_latency_delays(client: httpx.AsyncClient,
                                                                     herald: FakeHerald) -> None:
    await configure(client, timeout_rate=1.0, timeout_hold_s=0.2)
    started = time.monotonic()
    assert (await send_twilio_sms(client, herald)).status_code == 504
    assert time.monotonic() - started >= 0.2
    await configure(client, timeout_rate=0.0, latency_ms=150)
    started = time.monotonic()
    assert (await send_twilio_sms(client, herald)).status_code == 201
    assert time.monotonic() - started >= 0.15


def test_behaviour__same_seed_same_faults_and_ids() -> None:
    def draw(seed: int) -> list[Any]:
        behaviour = Behaviour(SimConfig(seed=seed, error_rate=0.5, timeout_rate=0.1))
        return [(f.kind if (f := behaviour.draw_fault()) else None, behaviour.hex_id(8)) for _ in range(20)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)
    assert {kind for kind, _ in draw(3)} >= {None, "server_error"}


# --- callbacks: retries and failures ----------------------------------------------------------------------------


async def test_callbacks__retried_three_times_when_herald_fails_and_recorded(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald) -> None:
    herald.status = 503
    await send_twilio_sms(client, herald)
    await sim.sim.idle()
    callbacks = (await client.get("/_sim/callbacks", params={"vendor": "twilio"})).json()
    assert [(c["attempts"], c["status_codes"]) for c in callbacks] == [(4, [503] * 4)] * 2
    assert len(herald.requests) == 8
    assert (await client.get("/_sim/health")).json()["status"] == "ok"


async def test_callbacks__not_retried_when_herald_refuses_and_survive_an_unreachable_herald(
        client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald) -> None:
    herald.status = 401
    await send_twilio_sms(client, herald, StatusCallback=f"{herald.url}/webhooks/sms/twilio")
    await sim.sim.idle()
    assert [c["status_codes"] for c in sim.sim.callbacks] == [[401], [401]]
    sim.sim.callbacks.clear()
    await send_twilio_sms(client, herald, StatusCallback="http://127.0.0.1:9/webhooks/sms/twilio")
    await sim.sim.idle()
    assert [(c["attempts"], c["status"], bool(c["error"])) for c in sim.sim.callbacks] == [(4, None, True)] * 2
    assert (await send_twilio_sms(client, herald)).status_code == 201


@pytest.mark.parametrize(("vendor", "path", "factory"), [
    ("twilio", "/webhooks/sms/twilio", TwilioSmsProvider.from_settings),
    ("vonage", "/webhooks/sms/vonage", VonageSmsProvider.from_settings),
    ("meta", "/webhooks/whatsapp/meta", MetaWhatsappProvider.from_settings),
], ids=["twilio", "vonage", "meta"])
async def test_control__simulated_inbound_message_is_signed_for_each_vendor(
        client: httpx.AsyncClient, herald: FakeHerald, herald_settings: Settings, vendor: str, path: str,
        factory: Callable[[Settings], Any]) -> None:
    response = await client.post("/_sim/inbound", json={"vendor": vendor, "from": PERSON, "text": "STOP"})
    assert response.status_code == 200 and response.json()["status"] == 200
    [request] = herald.on(path)
    provider = factory(herald_settings)
    assert provider.verify_webhook(request)
    [inbound] = provider.parse_webhook(request).inbound
    assert (inbound.sender, inbound.text) == (PERSON, "STOP")
    await provider.close()
    assert (await client.post("/_sim/inbound", json={"vendor": "fcm", "from": PERSON, "text": "x"})).status_code == 400


# --- control API ------------------------------------------------------------------------------------------------


async def test_control__requests_are_recorded_without_secrets_and_filtered(client: httpx.AsyncClient,
                                                                           herald: FakeHerald) -> None:
    await send_twilio_sms(client, herald, Body="hola")
    await client.post("/vonage/sms/json", data=vonage_form(herald), headers={"Idempotency-Key": "idem-9"})
    await client.post(META_PATH, json=meta_body(), headers=META_HEADERS)
    [vonage] = (await client.get("/_sim/requests", params={"vendor": "vonage", "kind": "sms"})).json()
    assert vonage["recipient"] == PERSON and vonage["idempotency_key"] == "idem-9" and vonage["status"] == 200
    assert "api_secret" not in vonage["fields"] and "api_key" not in vonage["fields"]
    assert vonage["fields"]["client-ref"] == "msg-1" and vonage["received_at"].endswith("Z")
    everything = json.dumps((await client.get("/_sim/requests")).json())
    for secret in (TWILIO.auth_token.get_secret_value(), VONAGE.api_secret.get_secret_value(),
                   META.access_token.get_secret_value()):
        assert secret not in everything
    assert [r["vendor"] for r in (await client.get("/_sim/requests", params={"recipient": PERSON})).json()] == [
        "twilio", "vonage", "meta"]


async def test_control__config_merges_validates_and_reset_restores(client: httpx.AsyncClient, sim: SimServer,
                                                                    herald: FakeHerald) -> None:
    await configure(client, recipients={PERSON: {"reply_text": "SI"}})
    merged = await configure(client, recipients={PERSON: {"fail": "undelivered"}}, latency_ms=5)
    assert merged["recipients"][PERSON] | {} == {**merged["recipients"][PERSON], "reply_text": "SI",
                                                 "fail": "undelivered"}
    assert merged["callback_delay_ms"] == 0 and merged["latency_ms"] == 5
    bad = await client.post("/_sim/config", json={"error_rate": 2})
    assert bad.status_code == 400
    bad = await client.post("/_sim/config", json={"recipients": {PERSON: {"voice": "maybe"}}})
    assert bad.status_code == 400
    removed = await configure(client, recipients={PERSON: None})
    assert removed["recipients"] == {}
    await send_twilio_sms(client, herald)
    assert (await client.post("/_sim/reset")).status_code == 200
    assert (await client.get("/_sim/requests")).json() == []
    assert (await client.get("/_sim/config")).json()["latency_ms"] == 0
    assert sim.sim.tasks == set()


# --- round trips: Herald's real providers against the simulator --------------------------------------------------


def sms() -> OutboundMessage:
    return outbound("sms", PERSON, {"text": "Tu pedido 1001 ha sido confirmado"})


async def test_round_trip__twilio_sms(sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    provider = TwilioSmsProvider.from_settings(herald_settings)
    result = await provider.send(sms())
    assert re.fullmatch(r"SM[0-9a-f]{32}", result.provider_message_id or "")
    await sim.sim.idle()
    assert wire_words(herald.requests) == ["sent", "delivered"]
    updates = [u for r in herald.requests if provider.verify_webhook(r) for u in provider.parse_webhook(r).statuses]
    assert [(u.message_id, u.status) for u in updates] == [("msg-5e1", Status.DELIVERED)]
    [request] = sim.sim.requests
    assert request["idempotency_key"] == "idem-5e1"
    with pytest.raises(InvalidRecipient):
        await provider.send(outbound("sms", UNROUTABLE, {"text": "hola"}))
    await provider.close()


async def test_round_trip__vonage_sms(sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    provider = VonageSmsProvider.from_settings(herald_settings)
    result = await provider.send(sms())
    assert re.fullmatch(r"[0-9A-F]{16}", result.provider_message_id or "")
    await sim.sim.idle()
    updates = [u for r in herald.requests if provider.verify_webhook(r) for u in provider.parse_webhook(r).statuses]
    assert [(u.message_id, u.status) for u in updates] == [("msg-5e1", Status.DELIVERED)]
    with pytest.raises(InvalidRecipient):
        await provider.send(outbound("sms", UNROUTABLE, {"text": "hola"}))
    await provider.close()


async def test_round_trip__twilio_voice_keypad(client: httpx.AsyncClient, sim: SimServer, herald: FakeHerald,
                                               herald_settings: Settings) -> None:
    await configure(client, recipients={PERSON: {"reply_digits": "1"}})
    provider = TwilioVoiceProvider.from_settings(herald_settings)
    herald.responder = lambda r: provider.parse_webhook(r).response if r.query.get("kind") == "gather" else None
    message = outbound("voice", PERSON, {"speech": "Su cita es mañana", "menu": "Pulse 1 para confirmar"},
                       options={"keypad": {"1": "confirm"}}, metadata={"message_id": "msg-5e1"})
    result = await provider.send(message)
    assert re.fullmatch(r"CA[0-9a-f]{32}", result.provider_message_id or "")
    await sim.sim.idle()
    assert all(provider.verify_webhook(r) for r in herald.requests)
    results = [provider.parse_webhook(r) for r in herald.requests]
    [pressed] = [i for r in results for i in r.inbound]
    assert (pressed.digits, pressed.message_id) == ("1", "msg-5e1")
    assert [u.status for r in results for u in r.statuses] == [Status.DELIVERED]
    [gather] = [c for c in sim.sim.callbacks if c["kind"] == "gather"]
    assert gather["status"] == 200 and "<Hangup" in gather["response"]
    await provider.close()


async def test_round_trip__meta_whatsapp(sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    provider = MetaWhatsappProvider.from_settings(herald_settings)
    template = json.dumps({"name": "order_confirmed", "language": "es", "params": ["1001"]})
    result = await provider.send(outbound("whatsapp", PERSON, {"template": template}))
    assert (result.provider_message_id or "").startswith("wamid.")
    await sim.sim.idle()
    assert wire_words(herald.requests) == ["sent", "delivered", "read"]
    updates = [u for r in herald.requests if provider.verify_webhook(r) for u in provider.parse_webhook(r).statuses]
    assert [(u.message_id, u.status) for u in updates] == [("msg-5e1", Status.DELIVERED), ("msg-5e1", Status.READ)]
    await provider.close()


async def test_round_trip__fcm_push(sim: SimServer, herald_settings: Settings) -> None:
    provider = FcmPushProvider.from_settings(herald_settings)
    result = await provider.send(outbound("push", "tok-abc", {"title": "Pedido", "body": "Confirmado"}))
    assert (result.provider_message_id or "").startswith(f"projects/{FCM.project_id}/messages/0:")
    with pytest.raises(InvalidRecipient):
        await provider.send(outbound("push", "unregistered-1", {"title": "Pedido", "body": "Confirmado"}))
    await provider.close()


async def test_round_trip__sendgrid_email(sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    provider = SendgridEmailProvider.from_settings(herald_settings)
    message = outbound("email", "ana@example.com", {"subject": "Pedido 1001", "text": "Hola", "html": "<p>Hola</p>"},
                       event_type="order.confirmed")
    result = await provider.send(message)
    assert result.provider_message_id
    await sim.sim.idle()
    updates = [u for r in herald.requests if provider.verify_webhook(r) for u in provider.parse_webhook(r).statuses]
    assert [(u.message_id, u.provider_message_id, u.status) for u in updates] == [
        ("msg-5e1", result.provider_message_id, Status.DELIVERED)]
    await provider.close()


async def test_round_trip__standard_webhook(sim: SimServer, herald_settings: Settings,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_WEBHOOK_ALLOW_PRIVATE", "true")
    provider = StandardWebhookProvider.from_settings(herald_settings)
    message = outbound("webhook", f"{sim.url}/customer/webhook/acme", {"json": '{"event": "order.confirmed"}'})
    result = await provider.send(message)
    assert result.provider_message_id == "msg-5e1" and result.detail == "HTTP 204"
    [received] = sim.sim.requests
    assert (received["fields"], received["idempotency_key"], received["status"]) == (
        {"event": "order.confirmed"}, "msg-5e1", 204)
    sim.sim.behaviour.update({"customer_status": 410})
    with pytest.raises(InvalidRecipient):
        await provider.send(message)
    await provider.close()


ROUND_TRIP_SENDS: list[tuple[Callable[[Settings], Any], OutboundMessage]] = [
    (TwilioSmsProvider.from_settings, sms()),
    (VonageSmsProvider.from_settings, sms()),
    (MetaWhatsappProvider.from_settings, outbound("whatsapp", PERSON, {"template": '{"name": "order_confirmed"}'})),
    (FcmPushProvider.from_settings, outbound("push", "tok-abc", {"title": "Pedido", "body": "Confirmado"})),
    (SendgridEmailProvider.from_settings, outbound("email", "ana@example.com",
                                                   {"subject": "Pedido", "text": "Hola", "html": "<p>Hola</p>"})),
]


@pytest.mark.parametrize(("fault", "expected"), [
    ({"rate_limit": {"count": 1, "retry_after": 4}}, RateLimited),
    ({"error_rate": 1.0}, ProviderUnavailable),
], ids=["rate-limited", "server-error"])
@pytest.mark.parametrize(("factory", "message"), ROUND_TRIP_SENDS,
                         ids=["twilio", "vonage", "meta", "fcm", "sendgrid"])
async def test_round_trip__faults_map_to_herald_errors(sim: SimServer, herald_settings: Settings,
                                                       factory: Callable[[Settings], Any], message: OutboundMessage,
                                                       fault: dict[str, Any], expected: type[DeliveryError]) -> None:
    sim.sim.behaviour.update(fault)
    provider = factory(herald_settings)
    with pytest.raises(expected) as caught:
        await provider.send(message)
    assert caught.value.retriable
    if expected is RateLimited:
        assert caught.value.retry_after == 4  # type: ignore[attr-defined]
    await provider.close()


async def test_round_trip__bad_credentials_are_rejected_not_retried(sim: SimServer, herald_settings: Settings,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_TWILIO_AUTH_TOKEN", "not-the-token")
    provider = TwilioSmsProvider.from_settings(herald_settings)
    with pytest.raises(Rejected) as caught:
        await provider.send(sms())
    assert caught.value.code == "20003" and not caught.value.retriable
    await provider.close()


async def test_sim_server__serves_on_a_chosen_port_and_stops(herald: FakeHerald) -> None:
    server = SimServer(Settings(public_url=herald.url), SimConfig())
    await server.start()
    try:
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"{server.url}/_sim/health")).json()["herald_url"] == herald.url
    finally:
        await server.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as c:
            await c.get(f"{server.url}/_sim/health")
    await asyncio.sleep(0)


async def test_round_trip__callbacks_carry_the_ids_herald_deduplicates_unchanged_on_retry(
        sim: SimServer, herald: FakeHerald, herald_settings: Settings) -> None:
    """Every signed callback names itself the way the vendor does (Twilio's idempotency token, Vonage's nonce and
    messageId, Meta's wamid + status, SendGrid's sg_event_id), distinct callbacks never share an id, and the
    retry of a callback Herald failed carries the same ids (so Herald applies it once)."""
    failed_once: set[bytes] = set()

    def first_attempt_fails(request: WebhookRequest) -> WebhookResponse | None:
        if request.body in failed_once:
            return None
        failed_once.add(request.body)
        return WebhookResponse(status=500)

    herald.responder = first_attempt_fails
    providers: dict[str, Any] = {
        "/webhooks/sms/twilio": TwilioSmsProvider.from_settings(herald_settings),
        "/webhooks/sms/vonage": VonageSmsProvider.from_settings(herald_settings),
        "/webhooks/whatsapp/meta": MetaWhatsappProvider.from_settings(herald_settings),
        "/webhooks/email/sendgrid": SendgridEmailProvider.from_settings(herald_settings),
    }
    template = json.dumps({"name": "order_confirmed", "language": "es", "params": ["1001"]})
    await providers["/webhooks/sms/twilio"].send(sms())
    await providers["/webhooks/sms/vonage"].send(sms())
    await providers["/webhooks/whatsapp/meta"].send(outbound("whatsapp", PERSON, {"template": template}))
    await providers["/webhooks/email/sendgrid"].send(outbound("email", "ana@example.com",
                                                              {"subject": "Pedido 1001", "text": "Hola"}))
    await sim.sim.idle()

    ids_by_callback: dict[tuple[str, bytes], list[tuple[str | None, tuple[str | None, ...]]]] = {}
    for request in herald.requests:
        path = urlsplit(request.url).path
        provider = providers[path]
        assert provider.verify_webhook(request), path
        result = provider.parse_webhook(request)
        items = tuple(i.delivery_id for i in [*result.statuses, *result.inbound])
        ids_by_callback.setdefault((path, request.body), []).append((result.delivery_id, items))
    assert {path for path, _ in ids_by_callback} == set(providers)
    every_id: list[str] = []
    for (path, _), attempts in ids_by_callback.items():
        assert len(attempts) == 2 and attempts[0] == attempts[1], path  # failed once, then retried unchanged
        request_id, items = attempts[0]
        assert all(items), path  # every receipt and message has its own id (a "processed" batch has none)
        assert request_id or not path.startswith("/webhooks/sms/"), path  # Twilio's token, Vonage's nonce
        every_id.extend(i for i in (request_id, *items) if i)
    assert len(every_id) == len(set(every_id))
    for provider in providers.values():
        await provider.close()
