"""SMS providers: the Vonage request we build, its documented answers and receipts, and its signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from channels.base import OutboundMessage, Sender, WebhookReceiver
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.providers._twilio import TwilioSettings
from channels.providers.sms import (
    TwilioSmsProvider,
    VonageSettings,
    VonageSmsProvider,
    vonage_signature,
)
from channels.registry import provider_class
from channels.rendering.render import Rendered
from channels.webhooks import WebhookRequest, WebhookResponse
from schemas.settings import Settings
from schemas.status import Status

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PUBLIC = "https://herald.example.com"
NOW = 1795514400  # 2026-11-24 10:00:00 UTC
SIGNATURE_SECRET = VonageSettings().signature_secret.get_secret_value()
Handler = Callable[[httpx.Request], httpx.Response]


def fixture(vendor: str, name: str) -> Any:
    text = (FIXTURES / vendor / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def settings() -> Settings:
    return Settings(public_url=PUBLIC, secret="s" * 16)


def message(text: str = "Your code is 482913", address: str = "+34600111222",
            message_id: str = "msg-3f2a9c") -> OutboundMessage:
    return OutboundMessage(message_id=message_id, channel="sms", address=address, idempotency_key=f"k-{message_id}",
                           rendered=Rendered(template="otp.requested/sms", locale="es", parts={"text": text}),
                           metadata={"message_id": message_id, "recipient_id": "user-42"})


def vonage(handler: Handler, config: VonageSettings | None = None) -> VonageSmsProvider:
    return VonageSmsProvider(config or VonageSettings(), settings(), transport=httpx.MockTransport(handler),
                             clock=lambda: NOW)


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)
    return handle


class Recorder:
    """A MockTransport handler that keeps the requests it saw and answers with one response."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.requests: list[httpx.Request] = []
        self.status, self.body = status, body if body is not None else fixture("vonage", "send_ok.json")

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)

    def form(self) -> dict[str, str]:
        [request] = self.requests
        return dict(parse_qsl(request.content.decode(), keep_blank_values=True))


# --- sending --------------------------------------------------------------------------------------------------


async def test_vonage__send_posts_the_documented_form_and_returns_the_message_id() -> None:
    recorder = Recorder()
    provider = vonage(recorder)
    result = await provider.send(message())
    [request] = recorder.requests
    assert request.method == "POST"
    assert request.url == "http://127.0.0.1:8090/vonage/sms/json"  # the simulator without HERALD_VONAGE_BASE_URL
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers  # Vonage's SMS API takes the key and secret as fields
    assert recorder.form() == {
        "api_key": "dev-vonage-key", "api_secret": "dev-vonage-secret", "from": "15005550006",
        "to": "34600111222", "text": "Your code is 482913", "type": "text", "client-ref": "msg-3f2a9c",
        "status-report-req": "1", "callback": f"{PUBLIC}/webhooks/sms/vonage?message_id=msg-3f2a9c",
    }
    assert (result.provider, result.provider_message_id, result.detail) == ("vonage", "0C000000217B7F02",
                                                                            "GSM-7, 1 segment")


async def test_vonage__production_base_url_is_used_when_configured() -> None:
    recorder = Recorder()
    await vonage(recorder, VonageSettings(base_url="https://rest.nexmo.com")).send(message())
    assert recorder.requests[0].url == "https://rest.nexmo.com/sms/json"


TYPE_CASES = [
    ("Tu codigo es 482913. Año: ñ, ü, é", "text"),
    ("Total: 59,90 € [EUR]", "text"),
    ("Tu código es 482913", "unicode"),  # ó is not in GSM 03.38 (ò is)  # GSM-7 extension table, still `text`
    ("Ваш код 482913", "unicode"),
    ("Pedido listo 🎉", "unicode"),
]


@pytest.mark.parametrize(("text", "expected"), TYPE_CASES,
                         ids=["gsm7", "gsm7-extended", "acute-o", "cyrillic", "emoji"])
async def test_vonage__type_is_unicode_only_for_ucs2_text(text: str, expected: str) -> None:
    recorder = Recorder()
    await vonage(recorder).send(message(text=text))
    assert recorder.form()["type"] == expected


async def test_vonage__sender_is_chosen_per_country_without_plus() -> None:
    config = VonageSettings(sms_from="default=+15005550006,ES=Herald")  # type: ignore[arg-type]
    recorder = Recorder()
    provider = vonage(recorder, config)
    await provider.send(message(address="+34600111222"))
    await provider.send(message(address="+14155550123"))
    assert [dict(parse_qsl(r.content.decode()))["from"] for r in recorder.requests] == ["Herald", "15005550006"]


async def test_vonage__client_ref_is_capped_at_100_characters() -> None:
    recorder = Recorder()
    await vonage(recorder).send(message(message_id="m" * 150))
    assert recorder.form()["client-ref"] == "m" * 100


async def test_vonage__multipart_answer_gives_the_first_part_id() -> None:
    recorder = Recorder(body=fixture("vonage", "send_ok_multipart.json"))
    result = await vonage(recorder).send(message(text="x" * 200))
    assert (result.provider_message_id, result.detail, result.segments) == ("0C000000217B7F02", "GSM-7, 2 segments", 2)


async def test_vonage__invalid_address_fails_before_any_request() -> None:
    recorder = Recorder()
    with pytest.raises(InvalidRecipient) as info:
        await vonage(recorder).send(message(address="+3460"))
    assert (info.value.code, recorder.requests) == ("invalid_number", [])


# Pinned here so a change to the provider's table is a deliberate change to this test too. What each code raises on
# a send (with its error-text), and an unknown code's fallback: tests/unit/test_provider_contract.py.
# https://developer.vonage.com/en/api-errors/sms
VONAGE_CODES: dict[str, type[DeliveryError]] = {
    "1": RateLimited, "2": Rejected, "3": Rejected, "4": Rejected, "5": ProviderUnavailable,
    "6": InvalidRecipient, "7": InvalidRecipient, "8": Rejected, "9": Rejected, "10": RateLimited, "11": Rejected,
    "12": Rejected, "14": Rejected, "15": Rejected, "22": Rejected, "23": Rejected, "29": Rejected, "32": Rejected,
    "33": InvalidRecipient,
}


def test_vonage__code_table_is_the_documented_one() -> None:
    assert VonageSmsProvider.CODES == VONAGE_CODES


async def test_vonage__any_failed_part_fails_the_send() -> None:
    body = fixture("vonage", "send_ok_multipart.json")
    body["messages"][1].update({"status": "7", "error-text": "Number barred"})
    with pytest.raises(InvalidRecipient):
        await vonage(answer(200, body)).send(message())


async def test_vonage__documented_401_falls_back_to_the_status() -> None:
    with pytest.raises(Rejected) as info:
        await vonage(answer(401, fixture("vonage", "send_http_401.json"))).send(message())
    assert (info.value.code, info.value.retriable) == ("401", False)


@pytest.mark.parametrize("body", [{}, {"message-count": "0", "messages": []}, {"messages": ["0"]}],
                         ids=["empty", "no-messages", "not-objects"])
async def test_vonage__answer_without_messages_is_retriable(body: Any) -> None:
    with pytest.raises(ProviderUnavailable) as info:
        await vonage(answer(200, body)).send(message())
    assert info.value.code == "bad_response"


# --- receipts and inbound messages ----------------------------------------------------------------------------


def signed(params: dict[str, str], *, method: str = "GET", secret: str = SIGNATURE_SECRET, timestamp: int = NOW,
           body: str = "json", query: dict[str, str] | None = None, sign_query: bool = False,
           sig: str | None = None) -> WebhookRequest:
    """A Vonage webhook as it arrives: parameters plus `timestamp` and `sig`, in the query (GET) or the body."""
    params = {**params, "timestamp": str(timestamp)}
    query = dict(query or {})
    params["sig"] = sig if sig is not None else vonage_signature(secret, {**params, **(query if sign_query else {})})
    url = f"{PUBLIC}/webhooks/sms/vonage" + (f"?{urlencode(query)}" if query else "")
    if method == "GET":
        url = f"{PUBLIC}/webhooks/sms/vonage?{urlencode({**query, **params})}"
        return WebhookRequest(method="GET", url=url, headers={}, query={**query, **params}, body=b"")
    if body == "json":
        return WebhookRequest(method="POST", url=url, headers={"content-type": "application/json"}, query=query,
                              body=json.dumps(params).encode())
    return WebhookRequest(method="POST", url=url, headers={"content-type": "application/x-www-form-urlencoded"},
                          query=query, body=urlencode(params).encode())


def dlr(**changes: str) -> dict[str, str]:
    return {**fixture("vonage", "dlr.json"), **changes}


# https://developer.vonage.com/messaging/sms/guides/delivery-receipts
STATUS_CASES = [
    ("delivered", Status.DELIVERED, "0", None),
    ("expired", Status.FAILED, "0", None),
    ("failed", Status.FAILED, "5", "5"),
    ("rejected", Status.FAILED, "6", "6"),
    ("unknown", None, "99", "99"),
    ("teleported", None, "0", None),  # not a Vonage word: no guess
]


@pytest.mark.parametrize(("vendor", "status", "err_code", "detail"), STATUS_CASES,
                         ids=[c[0] for c in STATUS_CASES])
def test_vonage__receipt_status_is_mapped(vendor: str, status: Status | None, err_code: str,
                                          detail: str | None) -> None:
    result = vonage(Recorder()).parse_webhook(signed(dlr(status=vendor, **{"err-code": err_code}), method="POST"))
    [update] = result.statuses
    assert (update.status, update.vendor_status, update.detail) == (status, vendor, detail)
    assert (update.message_id, update.provider_message_id) == ("msg-3f2a9c", "0C000000217B7F02")
    assert update.at == datetime(2026, 11, 24, 10, 0, 3, tzinfo=UTC)
    assert result.inbound == []


def test_vonage__status_map_covers_every_documented_word() -> None:
    documented = {"delivered", "expired", "failed", "rejected", "accepted", "buffered", "unknown"}
    assert set(VonageSmsProvider.STATUS_MAP) == documented
    assert {w for w, s in VonageSmsProvider.STATUS_MAP.items() if s is None} == {"accepted", "buffered", "unknown"}


@pytest.mark.parametrize("vendor", ["accepted", "buffered"])
def test_vonage__intermediate_receipt_changes_nothing(vendor: str) -> None:
    result = vonage(Recorder()).parse_webhook(signed(dlr(status=vendor), method="POST"))
    assert (result.statuses, result.inbound) == ([], [])


def test_vonage__receipt_by_get_query_is_read_like_json() -> None:
    params = dict(parse_qsl(fixture("vonage", "dlr_query.txt")))
    [update] = vonage(Recorder()).parse_webhook(signed(params)).statuses
    assert (update.message_id, update.status, update.provider_message_id) == (
        "msg-3f2a9c", Status.DELIVERED, "0C000000217B7F02")


def test_vonage__receipt_without_client_ref_falls_back_to_the_callback_query() -> None:
    params = dlr()
    del params["client-ref"]
    request = signed(params, method="POST", query={"message_id": "msg-from-url"})
    [update] = vonage(Recorder()).parse_webhook(request).statuses
    assert update.message_id == "msg-from-url"


def test_vonage__client_ref_wins_over_the_callback_query() -> None:
    request = signed(dlr(), method="POST", query={"message_id": "msg-other"})
    assert vonage(Recorder()).parse_webhook(request).statuses[0].message_id == "msg-3f2a9c"


@pytest.mark.parametrize("body", ["json", "form"])
def test_vonage__inbound_post_becomes_a_reply(body: str) -> None:
    result = vonage(Recorder()).parse_webhook(signed(fixture("vonage", "inbound.json"), method="POST", body=body))
    [reply] = result.inbound
    assert (reply.channel, reply.sender, reply.text, reply.provider_message_id) == (
        "sms", "+34600111222", "SI", "0B0000004B65F62F")
    assert reply.received_at == datetime(2026, 11, 24, 10, 2, 11, tzinfo=UTC)
    assert result.statuses == []


def test_vonage__inbound_get_becomes_a_reply() -> None:
    [reply] = vonage(Recorder()).parse_webhook(signed(dict(parse_qsl(fixture("vonage", "inbound_query.txt"))))).inbound
    assert (reply.sender, reply.text) == ("+34600111222", "SI gracias")


def test_vonage__unrelated_webhook_is_empty() -> None:
    result = vonage(Recorder()).parse_webhook(signed({"foo": "bar"}, method="POST"))
    assert (result.statuses, result.inbound) == ([], [])


# --- signatures -----------------------------------------------------------------------------------------------


VONAGE_SIGNED = b"&a=1&b=x_y_z&timestamp=1461605396"


@pytest.mark.parametrize(("method", "expected"), [
    ("sha256", hmac.new(b"secret", VONAGE_SIGNED, hashlib.sha256).hexdigest().upper()),
    ("sha512", hmac.new(b"secret", VONAGE_SIGNED, hashlib.sha512).hexdigest().upper()),
    ("sha1", hmac.new(b"secret", VONAGE_SIGNED, hashlib.sha1).hexdigest().upper()),
    ("md5", hmac.new(b"secret", VONAGE_SIGNED, hashlib.md5).hexdigest().upper()),
    ("md5hash", hashlib.md5(VONAGE_SIGNED + b"secret").hexdigest()),  # no HMAC, lower case: the dashboard default
])
def test_vonage_signature__each_dashboard_method_over_sorted_pairs(method: str, expected: str) -> None:
    params = {"timestamp": "1461605396", "b": "x&y=z", "a": "1", "sig": "ignored"}
    assert vonage_signature("secret", params, method) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha512"])
def test_vonage__verifies_with_the_configured_method_only(method: str) -> None:
    provider = vonage(Recorder(), VonageSettings(signature_method=method))  # type: ignore[arg-type]
    params = {**dlr(), "timestamp": str(NOW)}
    right = vonage_signature(SIGNATURE_SECRET, params, method)  # type: ignore[arg-type]
    assert provider.verify_webhook(signed(dlr(), sig=right))
    assert not provider.verify_webhook(signed(dlr()))  # signed with sha256, the default


def tamper(request: WebhookRequest) -> WebhookRequest:
    """The same request with the receipt's status changed after signing."""
    if request.method == "GET":
        query = {**request.query, "status": "failed"}
        return WebhookRequest("GET", request.url, request.headers, query, b"")
    if request.header("content-type") == "application/json":
        body = json.dumps({**json.loads(request.body), "status": "failed"}).encode()
    else:
        body = urlencode({**dict(parse_qsl(request.body.decode())), "status": "failed"}).encode()
    return WebhookRequest("POST", request.url, request.headers, request.query, body)


VALID = [
    ("get", signed(dlr())),
    ("post-json", signed(dlr(), method="POST")),
    ("post-form", signed(dlr(), method="POST", body="form")),
    ("lower-case-sig", signed(dlr(), sig=vonage_signature(SIGNATURE_SECRET, {**dlr(), "timestamp": str(NOW)}).lower())),
    ("query-not-signed", signed(dlr(), method="POST", query={"message_id": "msg-3f2a9c"})),
    ("query-signed", signed(dlr(), method="POST", query={"message_id": "msg-3f2a9c"}, sign_query=True)),
    ("get-query-signed", signed(dlr(), query={"message_id": "msg-3f2a9c"}, sign_query=True)),
    ("timestamp-299s-old", signed(dlr(), timestamp=NOW - 299)),
    ("timestamp-299s-ahead", signed(dlr(), timestamp=NOW + 299)),
]


@pytest.mark.parametrize("request_", [r for _, r in VALID], ids=[i for i, _ in VALID])
def test_vonage__signed_webhook_is_accepted(request_: WebhookRequest) -> None:
    assert vonage(Recorder()).verify_webhook(request_) is True


def _unsigned(request: WebhookRequest) -> WebhookRequest:
    body = json.loads(request.body)
    del body["sig"]
    return WebhookRequest("POST", request.url, request.headers, request.query, json.dumps(body).encode())


INVALID = [
    ("wrong-secret", signed(dlr(), secret="not-the-secret")),
    ("tampered-get", tamper(signed(dlr()))),
    ("tampered-json", tamper(signed(dlr(), method="POST"))),
    ("tampered-form", tamper(signed(dlr(), method="POST", body="form"))),
    ("tampered-query", WebhookRequest("POST", f"{PUBLIC}/webhooks/sms/vonage?message_id=msg-evil",
                                      {"content-type": "application/json"}, {"message_id": "msg-evil"},
                                      signed(dlr(), method="POST", query={"message_id": "msg-1"},
                                             sign_query=True).body)),
    ("missing-sig", _unsigned(signed(dlr(), method="POST"))),
    ("empty-sig", signed(dlr(), sig="")),
    ("stale-timestamp", signed(dlr(), timestamp=NOW - 301)),
    ("future-timestamp", signed(dlr(), timestamp=NOW + 301)),
    ("bad-json", WebhookRequest("POST", f"{PUBLIC}/webhooks/sms/vonage", {"content-type": "application/json"}, {},
                                b"{not json")),
    ("json-array", WebhookRequest("POST", f"{PUBLIC}/webhooks/sms/vonage", {"content-type": "application/json"}, {},
                                  b"[]")),
]


@pytest.mark.parametrize("request_", [r for _, r in INVALID], ids=[i for i, _ in INVALID])
def test_vonage__bad_or_stale_signature_is_refused(request_: WebhookRequest) -> None:
    assert vonage(Recorder()).verify_webhook(request_) is False


def test_vonage__non_numeric_timestamp_is_refused() -> None:
    params = {**dlr(), "timestamp": "yesterday"}
    params["sig"] = vonage_signature(SIGNATURE_SECRET, params)
    request = WebhookRequest("GET", f"{PUBLIC}/webhooks/sms/vonage?{urlencode(params)}", {}, params, b"")
    assert vonage(Recorder()).verify_webhook(request) is False


def test_vonage__json_numbers_and_booleans_are_signed_as_text() -> None:
    params: dict[str, Any] = {"messageId": "0C1", "status": "delivered", "price": 0.0333, "concat": True,
                              "timestamp": NOW}
    as_text = {"messageId": "0C1", "status": "delivered", "price": "0.0333", "concat": "true",
               "timestamp": str(NOW)}
    params["sig"] = vonage_signature(SIGNATURE_SECRET, as_text)
    request = WebhookRequest("POST", f"{PUBLIC}/webhooks/sms/vonage", {"content-type": "application/json"}, {},
                             json.dumps(params).encode())
    assert vonage(Recorder()).verify_webhook(request) is True


# --- settings and registry ------------------------------------------------------------------------------------


def test_vonage__settings_come_from_the_environment_and_mask_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_VONAGE_BASE_URL", "https://rest.nexmo.com")
    monkeypatch.setenv("HERALD_VONAGE_API_SECRET", "prod-secret-value")
    monkeypatch.setenv("HERALD_VONAGE_SIGNATURE_SECRET", "prod-signature-value")
    monkeypatch.setenv("HERALD_VONAGE_SMS_FROM", "default=+15005550006,ES=Herald")
    config = VonageSettings()
    assert config.base_url == "https://rest.nexmo.com"
    assert config.sms_from == {"default": "+15005550006", "ES": "Herald"}
    assert config.api_secret.get_secret_value() == "prod-secret-value"
    assert "prod-secret-value" not in repr(config) and "prod-signature-value" not in repr(config)


def test_vonage__sender_map_may_be_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_VONAGE_SMS_FROM", '{"default": "Herald", "US": "+15005550006"}')
    assert VonageSettings().sms_from == {"default": "Herald", "US": "+15005550006"}


def test_vonage__defaults_point_at_the_simulator() -> None:
    config = VonageSettings()
    assert (config.base_url, config.api_key, config.api_secret.get_secret_value(),
            config.signature_secret.get_secret_value()) == (
        None, "dev-vonage-key", "dev-vonage-secret", "dev-vonage-signature-secret")


def test_vonage__is_registered_and_meets_both_protocols() -> None:
    cls = provider_class("sms.vonage")
    assert cls is VonageSmsProvider and (cls.name, cls.channel) == ("vonage", "sms")
    provider = cls.from_settings(settings())
    assert isinstance(provider, Sender) and isinstance(provider, WebhookReceiver)


async def test_vonage__close_closes_the_shared_client() -> None:
    provider = vonage(Recorder())
    await provider.close()
    assert provider.client.is_closed


def test_twilio_sms__still_registered_with_its_own_settings() -> None:
    assert provider_class("sms.twilio") is TwilioSmsProvider
    assert TwilioSmsProvider(TwilioSettings(), settings()).client.base_url.path == "/twilio/"


def test_twilio_sms__sent_receipt_is_no_state_change() -> None:
    # Herald publishes its own `sent` when the API accepts a message; Twilio's "sent" (handed to the carrier) is not
    # a new state, while the receipts after it still are.
    provider = TwilioSmsProvider(TwilioSettings(), settings())
    form = {"MessageSid": "SM1", "SmsSid": "SM1", "To": "+34600111222", "From": "+15005550006"}

    def receipt(word: str) -> WebhookRequest:
        body = urlencode({**form, "MessageStatus": word, "SmsStatus": word}).encode()
        return WebhookRequest(method="POST", url=f"{PUBLIC}/webhooks/sms/twilio?message_id=msg-3f2a9c", headers={},
                              query={"message_id": "msg-3f2a9c"}, body=body)

    result = provider.parse_webhook(receipt("sent"))

    assert (result.statuses, result.inbound, result.response) == ([], [], WebhookResponse())
    [delivered] = provider.parse_webhook(receipt("delivered")).statuses
    assert (delivered.message_id, delivered.status, delivered.vendor_status) == (
        "msg-3f2a9c", Status.DELIVERED, "delivered")
