"""WhatsApp: the Meta Cloud API provider — requests built, documented responses and webhooks mapped."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.base import OutboundMessage, Sender, WebhookReceiver
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.providers.whatsapp import MetaSettings, MetaWhatsappProvider
from channels.rendering.render import Rendered
from channels.signatures import meta_signature
from channels.webhooks import WebhookRequest
from schemas.settings import Settings
from schemas.status import Status

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "meta"
SIM_URL = "http://sim.test"
MESSAGES_PATH = "/v21.0/100000000000001/messages"
WAMID = "wamid.HBgLMzQ2MDAxMTEyMjIVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA"
APP_SECRET = "dev-meta-app-secret"
VERIFY_TOKEN = "dev-meta-verify-token"
TEMPLATE = '{"name": "order_confirmed", "language": "es", "params": ["Ana", "1001"]}'


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def outbound(*, parts: dict[str, str] | None = None, options: dict[str, Any] | None = None,
             address: str = "+34600111222", locale: str = "es") -> OutboundMessage:
    parts = {"text": "Hola Ana, tu pedido 1001 está confirmado.", "template": TEMPLATE} if parts is None else parts
    return OutboundMessage(message_id="msg-3f2a9c", channel="whatsapp", address=address,
                           rendered=Rendered(template="order.confirmed/whatsapp", locale=locale, parts=parts),
                           idempotency_key="key-msg-3f2a9c", locale="es-ES", event_type="order.confirmed",
                           metadata={"message_id": "msg-3f2a9c", "recipient_id": "user-42"},
                           options=options or {})




@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HERALD_META_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings() -> Settings:
    return Settings(sim_url=SIM_URL, public_url="https://herald.example.com", secret="test-secret")


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
async def make(settings: Settings) -> AsyncIterator[Callable[[Handler], tuple[MetaWhatsappProvider,
                                                                           list[httpx.Request]]]]:
    providers: list[MetaWhatsappProvider] = []

    def build(handler: Handler) -> tuple[MetaWhatsappProvider, list[httpx.Request]]:
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        provider = MetaWhatsappProvider.from_settings(settings, transport=httpx.MockTransport(record))
        providers.append(provider)
        return provider, seen

    yield build
    for provider in providers:
        await provider.close()


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=fixture_bytes("send_ok.json"),
                          headers={"content-type": "application/json"})


# --- settings -------------------------------------------------------------------------------------------------


def test_meta_settings__dev_defaults_and_secrets_masked() -> None:
    config = MetaSettings()

    assert config.base_url is None
    assert config.api_version == "v21.0"
    assert config.phone_number_id == "100000000000001"
    assert config.access_token.get_secret_value() == "dev-meta-access-token"
    assert config.app_secret.get_secret_value() == APP_SECRET
    assert config.verify_token.get_secret_value() == VERIFY_TOKEN
    assert "dev-meta" not in repr(config)


def test_meta_settings__read_from_herald_meta_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_META_PHONE_NUMBER_ID", "109999999999999")
    monkeypatch.setenv("HERALD_META_BASE_URL", "https://graph.facebook.com")

    config = MetaSettings()

    assert config.phone_number_id == "109999999999999"
    assert config.base_url == "https://graph.facebook.com"


def test_meta_whatsapp__is_a_sender_and_a_webhook_receiver(settings: Settings) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)

    assert (provider.name, provider.channel) == ("meta", "whatsapp")
    assert isinstance(provider, Sender)
    assert isinstance(provider, WebhookReceiver)


# --- send: the request built ----------------------------------------------------------------------------------

BASE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "34600111222",
        "biz_opaque_callback_data": "msg-3f2a9c"}
ORDER_TEMPLATE = {"name": "order_confirmed", "language": {"code": "es"},
                  "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"},
                                                                 {"type": "text", "text": "1001"}]}]}

SEND_CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("template-by-default", {}, {"type": "template", "template": ORDER_TEMPLATE}, "template"),
    ("template-when-window-closed", {"options": {"whatsapp_session_open": False}},
     {"type": "template", "template": ORDER_TEMPLATE}, "template"),
    ("text-inside-open-window", {"options": {"whatsapp_session_open": True}},
     {"type": "text", "text": {"body": "Hola Ana, tu pedido 1001 está confirmado.", "preview_url": False}}, "text"),
    ("template-when-window-open-but-no-text", {"options": {"whatsapp_session_open": True},
                                               "parts": {"template": TEMPLATE}},
     {"type": "template", "template": ORDER_TEMPLATE}, "template"),
    ("template-without-params-has-no-components",
     {"parts": {"text": "x", "template": '{"name": "password_reset", "language": "en_US"}'}},
     {"type": "template", "template": {"name": "password_reset", "language": {"code": "en_US"}}}, "template"),
    ("template-language-falls-back-to-rendered-locale",
     {"parts": {"text": "x", "template": '{"name": "shipping_update", "params": [1001]}'}, "locale": "pt-BR"},
     {"type": "template", "template": {"name": "shipping_update", "language": {"code": "pt_BR"},
                                       "components": [{"type": "body", "parameters": [
                                           {"type": "text", "text": "1001"}]}]}}, "template"),
    ("national-format-number-normalised", {"address": "+34 600 11 12 22"},
     {"type": "template", "template": ORDER_TEMPLATE}, "template"),
]


@pytest.mark.parametrize(("kwargs", "content", "kind"), [c[1:] for c in SEND_CASES], ids=[c[0] for c in SEND_CASES])
async def test_meta_whatsapp__builds_the_cloud_api_request(make: Any, kwargs: dict[str, Any],
                                                           content: dict[str, Any], kind: str) -> None:
    provider, seen = make(ok)

    result = await provider.send(outbound(**kwargs))

    [request] = seen
    assert request.method == "POST"
    assert request.url == f"{SIM_URL}/meta{MESSAGES_PATH}"
    assert request.headers["authorization"] == "Bearer dev-meta-access-token"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {**BASE, **content}
    assert result.provider == "meta"
    assert result.provider_message_id == WAMID
    assert result.detail == kind


async def test_meta_whatsapp__configured_base_url_and_version_are_used(
        make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_META_BASE_URL", "https://graph.facebook.com")
    monkeypatch.setenv("HERALD_META_API_VERSION", "v22.0")
    provider, seen = make(ok)

    await provider.send(outbound())

    assert str(seen[0].url) == "https://graph.facebook.com/v22.0/100000000000001/messages"


REFUSED_CASES: list[tuple[str, dict[str, Any], type[DeliveryError], str]] = [
    ("template-not-json", {"parts": {"template": "{name: order_confirmed"}}, Rejected, "template_invalid"),
    ("template-without-name", {"parts": {"template": '{"language": "es", "params": []}'}}, Rejected,
     "template_invalid"),
    ("template-empty-name", {"parts": {"template": '{"name": ""}'}}, Rejected, "template_invalid"),
    ("template-not-an-object", {"parts": {"template": '["order_confirmed"]'}}, Rejected, "template_invalid"),
    ("template-params-not-a-list", {"parts": {"template": '{"name": "x", "params": "Ana"}'}}, Rejected,
     "template_invalid"),
    ("outside-window-without-template", {"parts": {"text": "Hola"}}, Rejected, "outside_24h_window"),
    ("window-flag-falsy-without-template", {"parts": {"text": "Hola"}, "options": {"whatsapp_session_open": 0}},
     Rejected, "outside_24h_window"),
    ("not-a-phone-number", {"address": "ana@example.com"}, InvalidRecipient, "invalid_number"),
    ("invalid-phone-number", {"address": "+3412"}, InvalidRecipient, "invalid_number"),
]


@pytest.mark.parametrize(("kwargs", "error", "code"), [c[1:] for c in REFUSED_CASES],
                         ids=[c[0] for c in REFUSED_CASES])
async def test_meta_whatsapp__refuses_before_calling_meta(make: Any, kwargs: dict[str, Any],
                                                          error: type[DeliveryError], code: str) -> None:
    provider, seen = make(ok)

    with pytest.raises(error) as caught:
        await provider.send(outbound(**kwargs))

    assert caught.value.code == code
    assert caught.value.retriable is False
    assert seen == []


# --- send: documented errors ----------------------------------------------------------------------------------
# Every code of the provider's table at any HTTP status, unknown codes, status fallbacks, Retry-After and transport
# errors: tests/unit/test_provider_contract.py. Here, the documented classes of the codes that matter most.


def meta_error(code: str) -> Handler:
    body = copy.deepcopy(fixture("error.json"))
    body["error"]["code"] = int(code)
    body["error"]["message"] = f"(#{code}) documented error"

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=body)

    return handler


@pytest.mark.parametrize(("code", "error"), [("131026", InvalidRecipient), ("131047", Rejected),
                                             ("130429", RateLimited), ("131016", ProviderUnavailable),
                                             ("132001", Rejected), ("190", Rejected)],
                         ids=["undeliverable", "re-engagement", "throughput", "unavailable", "no-template",
                              "token-expired"])
async def test_meta_whatsapp__key_codes_are_classified_as_documented(make: Any, code: str,
                                                                     error: type[DeliveryError]) -> None:
    provider, _ = make(meta_error(code))

    with pytest.raises(error):
        await provider.send(outbound())


# --- webhooks: handshake and signature ------------------------------------------------------------------------

WEBHOOK_URL = "https://herald.example.com/webhooks/whatsapp/meta"


def handshake(**query: str) -> WebhookRequest:
    return WebhookRequest(method="GET", url=WEBHOOK_URL, headers={}, query=query, body=b"")


def signed(body: bytes, signature: str | None = None, method: str = "POST") -> WebhookRequest:
    headers = {"content-type": "application/json"}
    signature = meta_signature(APP_SECRET, body) if signature is None else signature
    if signature:
        headers["x-hub-signature-256"] = signature
    return WebhookRequest(method=method, url=WEBHOOK_URL, headers=headers, query={}, body=body)


def test_meta_whatsapp__handshake_with_right_token_answers_the_challenge(settings: Settings) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)
    request = handshake(**{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                           "hub.challenge": "1158201444"})

    assert provider.verify_webhook(request) is True
    result = provider.parse_webhook(request)

    assert result.response.status == 200
    assert result.response.body == b"1158201444"
    assert result.response.content_type == "text/plain"
    assert result.statuses == [] and result.inbound == []


HANDSHAKE_REFUSED = [
    ("wrong-token", {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}),
    ("token-prefix", {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN[:-1], "hub.challenge": "1"}),
    ("no-token", {"hub.mode": "subscribe", "hub.challenge": "1"}),
    ("wrong-mode", {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}),
    ("no-challenge", {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}),
    ("empty-query", {}),
]


@pytest.mark.parametrize("query", [c[1] for c in HANDSHAKE_REFUSED], ids=[c[0] for c in HANDSHAKE_REFUSED])
def test_meta_whatsapp__handshake_with_wrong_token_is_refused(settings: Settings, query: dict[str, str]) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)

    assert provider.verify_webhook(handshake(**query)) is False


def test_meta_whatsapp__signed_post_verifies(settings: Settings) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)

    assert provider.verify_webhook(signed(fixture_bytes("webhook_statuses.json"))) is True


SIGNATURE_REFUSED = [
    ("tampered-body", lambda body: signed(body.replace(b'"read"', b'"sent"'), meta_signature(APP_SECRET, body))),
    ("missing-header", lambda body: signed(body, "")),
    ("wrong-secret", lambda body: signed(body, meta_signature("another-secret", body))),
    ("sha1-style-header", lambda body: signed(body, meta_signature(APP_SECRET, body).replace("sha256=", "sha1="))),
    ("bare-hex-without-prefix", lambda body: signed(body, meta_signature(APP_SECRET, body).removeprefix("sha256="))),
    ("signed-but-not-post", lambda body: signed(body, method="PUT")),
]


@pytest.mark.parametrize("build", [c[1] for c in SIGNATURE_REFUSED], ids=[c[0] for c in SIGNATURE_REFUSED])
def test_meta_whatsapp__bad_signature_is_refused(settings: Settings,
                                                 build: Callable[[bytes], WebhookRequest]) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)

    assert provider.verify_webhook(build(fixture_bytes("webhook_statuses.json"))) is False


# --- webhooks: statuses ---------------------------------------------------------------------------------------


def test_meta_whatsapp__statuses_become_status_updates(settings: Settings) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)

    body = fixture_bytes("webhook_statuses.json")
    result = provider.parse_webhook(signed(body))

    # The fixture opens with Meta's "sent": Herald publishes its own `sent` on API acceptance, so that one is skipped.
    assert [s["status"] for s in json.loads(body)["entry"][0]["changes"][0]["value"]["statuses"]] == [
        "sent", "delivered", "read", "failed"]
    assert [(u.message_id, u.status, u.vendor_status, u.detail) for u in result.statuses] == [
        ("msg-3f2a9c", Status.DELIVERED, "delivered", None),
        ("msg-3f2a9c", Status.READ, "read", None),
        ("msg-77b1e0", Status.FAILED, "failed", "131026"),
    ]
    assert result.statuses[0].provider_message_id == WAMID
    assert result.statuses[0].at == datetime.fromtimestamp(1764000002, UTC)
    assert result.inbound == []


def status_payload(status: str, **extra: Any) -> bytes:
    payload = fixture("webhook_statuses.json")
    item = {**payload["entry"][0]["changes"][0]["value"]["statuses"][0], "status": status, **extra}
    payload["entry"][0]["changes"][0]["value"]["statuses"] = [item]
    return json.dumps(payload).encode()


@pytest.mark.parametrize(("vendor", "expected"), list(MetaWhatsappProvider.STATUS_MAP.items()),
                         ids=list(MetaWhatsappProvider.STATUS_MAP))
def test_meta_whatsapp__every_status_word_maps(settings: Settings, vendor: str, expected: Status | None) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)

    updates = provider.parse_webhook(signed(status_payload(vendor))).statuses

    if vendor == "sent":  # Herald publishes its own `sent` on API acceptance: Meta's "sent" is no state change
        assert expected is None
        assert updates == []
        return
    [update] = updates

    assert update.status is expected
    assert update.vendor_status == vendor


def test_meta_whatsapp__only_sent_statuses_give_no_updates(settings: Settings) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)
    request = signed(status_payload("sent"))

    assert provider.verify_webhook(request) is True
    result = provider.parse_webhook(request)

    assert result.statuses == []
    assert result.inbound == []
    assert result.response.status == 200


@pytest.mark.parametrize("vendor", ["played", "queued", "SENT", ""], ids=["played", "queued", "upper", "empty"])
def test_meta_whatsapp__unknown_status_maps_to_none(settings: Settings, vendor: str) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)

    [update] = provider.parse_webhook(signed(status_payload(vendor))).statuses

    assert update.status is None
    assert update.vendor_status == vendor


def test_meta_whatsapp__status_without_callback_data_has_no_message_id(settings: Settings) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)
    payload = json.loads(status_payload("delivered"))
    del payload["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"]

    [update] = provider.parse_webhook(signed(json.dumps(payload).encode())).statuses

    assert update.status is Status.DELIVERED
    assert update.message_id is None
    assert update.provider_message_id == WAMID


def test_meta_whatsapp__failed_without_errors_has_no_detail(settings: Settings) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)

    [update] = provider.parse_webhook(signed(status_payload("failed"))).statuses

    assert update.status is Status.FAILED
    assert update.detail is None


# --- webhooks: inbound messages -------------------------------------------------------------------------------


def test_meta_whatsapp__messages_become_inbound_replies(settings: Settings) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)

    result = provider.parse_webhook(signed(fixture_bytes("webhook_messages.json")))

    assert [(m.channel, m.sender, m.text, m.provider_message_id) for m in result.inbound] == [
        ("whatsapp", "+34600111222", "SI", WAMID),
        ("whatsapp", "+34600111222", "Confirm", "wamid.HBgLMzQ2MDAxMTEyMjIVAgARGBJGRkZGRkZGRkZGRkZGRkZGRkYA"),
        ("whatsapp", "+34600111222", "Cancel", "wamid.HBgLMzQ2MDAxMTEyMjIVAgARGBJBQUFBQUFBQUFBQUFBQUFBQUEA"),
        # No context: the reply's own id.
        ("whatsapp", "+34600111222", "Tuesday 10:00",
         "wamid.HBgLMzQ2MDAxMTEyMjIVAgASGBQzRUIwQzM3RjJCQzg5QjdFMjY5MQA="),
    ]
    assert result.inbound[0].received_at == datetime.fromtimestamp(1764000120, UTC)
    assert result.statuses == []


def test_meta_whatsapp__non_text_message_is_inbound_without_text(settings: Settings) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)
    payload = fixture("webhook_messages.json")
    payload["entry"][0]["changes"][0]["value"]["messages"] = [
        {"from": "34600111222", "id": "wamid.img", "timestamp": "1764000400", "type": "image",
         "image": {"mime_type": "image/jpeg", "sha256": "abc", "id": "1234"}}]

    [message] = provider.parse_webhook(signed(json.dumps(payload).encode())).inbound

    assert (message.sender, message.text, message.provider_message_id) == ("+34600111222", None, "wamid.img")


IGNORED_PAYLOADS = [
    ("other-object", b'{"object": "page", "entry": [{"changes": [{"field": "messages", "value": '
                     b'{"statuses": [{"id": "x", "status": "sent"}]}}]}]}'),
    ("other-field", b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": '
                    b'"message_template_status_update", "value": {"event": "APPROVED"}}]}]}'),
    ("not-json", b"not json"),
    ("empty", b""),
    ("list", b"[]"),
    ("entry-not-a-list", b'{"object": "whatsapp_business_account", "entry": {"id": "1"}}'),
]


@pytest.mark.parametrize("body", [c[1] for c in IGNORED_PAYLOADS], ids=[c[0] for c in IGNORED_PAYLOADS])
def test_meta_whatsapp__unrelated_payloads_yield_nothing(settings: Settings, body: bytes) -> None:
    provider = MetaWhatsappProvider.from_settings(settings)

    result = provider.parse_webhook(signed(body))

    assert result.statuses == [] and result.inbound == []
    assert result.response.status == 200
