"""The contract every HTTP provider in the registry keeps, on one table of providers: transport errors, the HTTP
fallbacks, Retry-After, bodies that are not what the vendor documents, and the status maps and error-code tables
each provider keeps as data. What only one vendor does stays in that provider's own test file."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from channels.base import OutboundMessage, SendResult
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.registry import PROVIDERS, provider_class
from channels.rendering.render import Rendered
from channels.webhooks import WebhookRequest
from schemas.settings import Settings
from schemas.status import Status
from tests.fakes import TRANSPORT_ERRORS

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PUBLIC = "https://herald.example.com"
MESSAGE_ID = "msg-3f2a9c"
HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
RETRY_AFTER = {"Retry-After": "7"}  # sent with every vendor error response: only a rate limit may read it
ERROR_STATUSES = (400, 401, 403, 404, 429, 500, 503)  # where a vendor's coded error body can arrive
HERALD_ERRORS = frozenset({InvalidRecipient, Rejected, RateLimited, ProviderUnavailable})

Handler = Callable[[httpx.Request], httpx.Response]

# Registered providers that do not speak HTTP, and why this contract leaves them out.
NOT_HTTP: dict[str, str] = {
    "email.smtp": "SMTP, not HTTP: no httpx transport, status map or code table; its reply and connection mapping "
                  "(4xx/5xx replies, nothing listening) is tested against a real SMTP server in test_email.py",
}

# The HTTP status decides when the body names no vendor code Herald knows (`channels.http.raise_for_status`).
FALLBACK: dict[int, type[DeliveryError]] = {
    400: Rejected, 401: Rejected, 403: Rejected, 404: InvalidRecipient, 405: Rejected, 408: ProviderUnavailable,
    409: Rejected, 410: Rejected, 413: Rejected, 422: Rejected, 425: ProviderUnavailable, 429: RateLimited,
    500: ProviderUnavailable, 502: ProviderUnavailable, 503: ProviderUnavailable, 504: ProviderUnavailable,
}

# Bodies no vendor documents: a proxy's HTML page, a cut-off answer, JSON of the wrong shape, bytes.
GARBAGE: dict[str, bytes] = {
    "empty": b"", "html": HTML, "truncated-json": b'{"code": 2', "json-array": b"[1, 2]",
    "json-string": b'"oops"', "json-null": b"null", "binary": bytes(range(256)),
}


def fixture_text(vendor: str, name: str) -> str:
    return (FIXTURES / vendor / name).read_text()


def fixture_json(vendor: str, name: str) -> Any:
    return json.loads(fixture_text(vendor, name))


def respond(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> Handler:
    return lambda _request: httpx.Response(status, content=body, headers=headers)


def coded(spec: Spec, code: str, status: int) -> Handler:
    """The vendor's documented error for `code` at `status`, new for each request."""
    assert spec.error is not None
    error = spec.error
    return lambda _request: error(code, status)


def documented(code: str) -> str:
    """The vendor's error text each coded error response carries: it must become the exception's message."""
    return f"documented error {code}"


# --- each provider: a message it accepts, its vendor's documented answers -------------------------------------


def twilio_error(name: str) -> Callable[[str, int], httpx.Response]:
    def build(code: str, status: int) -> httpx.Response:
        body = {**fixture_json("twilio", name), "code": int(code), "message": documented(code), "status": status}
        return httpx.Response(status, json=body, headers=RETRY_AFTER)
    return build


def vonage_error(code: str, status: int) -> httpx.Response:
    body = fixture_json("vonage", "send_error.json")
    body["messages"][0].update({"status": code, "error-text": documented(code)})
    return httpx.Response(status, json=body)  # per-message failures come as HTTP 200


def meta_error(code: str, status: int) -> httpx.Response:
    body = copy.deepcopy(fixture_json("meta", "error.json"))
    body["error"].update({"code": int(code), "message": documented(code)})
    return httpx.Response(status, json=body, headers=RETRY_AFTER)


def fcm_error(code: str, status: int) -> httpx.Response:
    body = copy.deepcopy(fixture_json("fcm", "error_fcm.json"))
    body["error"].update({"code": status, "message": documented(code)})
    body["error"]["details"][0]["errorCode"] = code.upper()  # FCM spells them UNREGISTERED; Herald's codes lower
    return httpx.Response(status, json=body, headers=RETRY_AFTER)


def sendgrid_error(code: str, status: int) -> httpx.Response:
    body = fixture_json("sendgrid", "error_401.json")
    body["errors"][0]["message"] = documented(code)
    return httpx.Response(status, json=body, headers=RETRY_AFTER)


def sendgrid_statuses(code: str) -> tuple[int, ...]:
    """SendGrid's errors carry no codes of their own: the provider names them by HTTP status."""
    return tuple(s for s, c in provider_class("email.sendgrid").HTTP_CODES.items() if c == code)


def twilio_receipt(fixture: str, field: str, path: str) -> Callable[[str], WebhookRequest]:
    def build(word: str) -> WebhookRequest:
        form = {**dict(parse_qsl(fixture_text("twilio", fixture))), field: word}
        if field == "MessageStatus":
            form["SmsStatus"] = word
        return WebhookRequest(method="POST", url=f"{PUBLIC}{path}?message_id={MESSAGE_ID}",
                              headers={"content-type": "application/x-www-form-urlencoded"},
                              query={"message_id": MESSAGE_ID}, body=urlencode(form).encode())
    return build


def vonage_receipt(word: str) -> WebhookRequest:
    body = {**fixture_json("vonage", "dlr.json"), "status": word}
    return WebhookRequest(method="POST", url=f"{PUBLIC}/webhooks/sms/vonage", headers={
        "content-type": "application/json"}, query={}, body=json.dumps(body).encode())


def meta_receipt(word: str) -> WebhookRequest:
    envelope = fixture_json("meta", "webhook_statuses.json")
    value = envelope["entry"][0]["changes"][0]["value"]
    value["statuses"] = [{**value["statuses"][1], "status": word}]
    return WebhookRequest(method="POST", url=f"{PUBLIC}/webhooks/whatsapp/meta", headers={
        "content-type": "application/json"}, query={}, body=json.dumps(envelope).encode())


def sendgrid_receipt(word: str) -> WebhookRequest:
    event = {**fixture_json("sendgrid", "events.json")[0], "event": word}
    return WebhookRequest(method="POST", url=f"{PUBLIC}/webhooks/email/sendgrid", headers={
        "content-type": "application/json"}, query={}, body=json.dumps([event]).encode())


@dataclass(frozen=True)
class Spec:
    """How to drive one registered provider: a message it accepts and its vendor's documented answers."""

    key: str
    address: str
    parts: Mapping[str, str]
    ok: Callable[[], httpx.Response]
    # A documented error response carrying a vendor code, at an HTTP status; and the statuses a code can come at.
    error: Callable[[str, int], httpx.Response] | None = None
    error_statuses: Callable[[str], tuple[int, ...]] = lambda _code: ERROR_STATUSES
    unknown_code: str | None = None  # a code no table holds: the HTTP status must decide
    # Where this provider's HTTP fallback departs from FALLBACK: status -> (error, code).
    differs: Mapping[int, tuple[type[DeliveryError], str]] = field(default_factory=dict)
    garbage_ok: type[DeliveryError] | None = None  # a success status with a body it cannot read
    receipt: Callable[[str], WebhookRequest] | None = None  # a receipt carrying one vendor status word

    def message(self) -> OutboundMessage:
        channel = self.key.partition(".")[0]
        return OutboundMessage(message_id=MESSAGE_ID, channel=channel, address=self.address,
                               rendered=Rendered(template=f"order.confirmed/{channel}", locale="es", parts=self.parts),
                               idempotency_key=f"key-{MESSAGE_ID}", event_type="order.confirmed",
                               metadata={"message_id": MESSAGE_ID, "recipient_id": "user-42"})


PHONE = "+34600111222"
SPECS: dict[str, Spec] = {spec.key: spec for spec in [
    Spec("sms.twilio", PHONE, {"text": "Your code is 482913"},
         ok=lambda: httpx.Response(201, json=fixture_json("twilio", "message_queued.json")),
         error=twilio_error("message_error_21211.json"), unknown_code="29999",
         receipt=twilio_receipt("message_status_delivered.txt", "MessageStatus", "/webhooks/sms/twilio")),
    Spec("sms.vonage", PHONE, {"text": "Your code is 482913"},
         ok=lambda: httpx.Response(200, json=fixture_json("vonage", "send_ok.json")),
         error=vonage_error, error_statuses=lambda _code: (200,), unknown_code="99",
         garbage_ok=ProviderUnavailable,  # an answer without messages: Vonage's answer is per message
         receipt=vonage_receipt),
    Spec("voice.twilio", PHONE, {"speech": "Su cita es mañana a las 10."},
         ok=lambda: httpx.Response(201, json=fixture_json("twilio", "call_queued.json")),
         error=twilio_error("call_error.json"), unknown_code="29999",
         receipt=twilio_receipt("call_status.txt", "CallStatus", "/webhooks/voice/twilio")),
    Spec("whatsapp.meta", PHONE, {"template": '{"name": "order_confirmed", "language": "es", "params": ["Ana"]}'},
         ok=lambda: httpx.Response(200, json=fixture_json("meta", "send_ok.json")),
         error=meta_error, unknown_code="999999", receipt=meta_receipt),
    Spec("push.fcm", "bk3RNwTe3H0:CI2k_HHwgIpoDKCIZvvDMExUdFQ3P1",
         {"title": "Pedido confirmado", "body": "Tu pedido 1001 está en camino"},
         ok=lambda: httpx.Response(200, json=fixture_json("fcm", "send_ok.json")),
         error=fcm_error, unknown_code="something_new"),
    Spec("email.sendgrid", "ana@example.com", {"subject": "Tu pedido 1001", "html": "<p>Hola</p>", "text": "Hola"},
         ok=lambda: httpx.Response(202, headers={"X-Message-Id": "W-yXbu-wTAW8gV9iPRdNUA"}),
         error=sendgrid_error, error_statuses=sendgrid_statuses,
         differs={401: (Rejected, "auth"), 403: (Rejected, "auth"), 404: (Rejected, "not_found"),
                  413: (Rejected, "too_large")},
         receipt=sendgrid_receipt),
    # Standard Webhooks receivers are customers' own endpoints: a 404 is a wrong URL, 410 says "gone for good".
    Spec("webhook.standard", "https://93.184.216.34/hooks/herald", {"json": '{"order": "1001"}'},
         ok=lambda: httpx.Response(204),
         differs={404: (Rejected, "404"), 410: (InvalidRecipient, "gone")}),
]}


def expected_fallback(spec: Spec, status: int) -> tuple[type[DeliveryError], str]:
    return spec.differs.get(status, (FALLBACK[status], str(status)))


def cases(*, where: Callable[[Spec], bool] = lambda _spec: True) -> list[Any]:
    return [pytest.param(spec, id=key) for key, spec in SPECS.items() if where(spec)]


@pytest.fixture(autouse=True)
def _no_vendor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own vendor variables must not change what the providers are built with."""
    for name in list(os.environ):
        if name.startswith(tuple(f"HERALD_{v}_" for v in ("TWILIO", "VONAGE", "META", "FCM", "SENDGRID", "WEBHOOK"))):
            monkeypatch.delenv(name)


Build = Callable[[Spec, Handler], tuple[Any, list[httpx.Request]]]


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """Each provider as the registry builds it (development settings), on a MockTransport that records."""
    settings = Settings(sim_url="http://sim.test", public_url=PUBLIC, secret="test-secret")
    made: list[Any] = []

    def make(spec: Spec, handler: Handler) -> tuple[Any, list[httpx.Request]]:
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        provider = provider_class(spec.key).from_settings(settings, transport=httpx.MockTransport(record))
        made.append(provider)
        return provider, seen

    yield make
    for provider in made:
        await provider.close()


async def send_error(build: Build, spec: Spec, handler: Handler) -> tuple[DeliveryError, list[httpx.Request]]:
    """The error a send raises: a `DeliveryError`, or the test fails with whatever leaked instead."""
    provider, seen = build(spec, handler)
    with pytest.raises(DeliveryError) as caught:
        await provider.send(spec.message())
    assert caught.value.provider == provider.name
    assert caught.value.retriable is type(caught.value).retriable
    return caught.value, seen


# --- the registry -----------------------------------------------------------------------------------------------


def test_registry__every_provider_is_in_this_contract_or_says_why_not() -> None:
    assert set(PROVIDERS) == set(SPECS) | set(NOT_HTTP)
    assert not set(SPECS) & set(NOT_HTTP)


@pytest.mark.parametrize("key", sorted(PROVIDERS))
def test_registry__key_is_the_providers_channel_and_name(key: str) -> None:
    cls = provider_class(key)
    assert f"{cls.channel}.{cls.name}" == key


@pytest.mark.parametrize("spec", cases())
async def test_provider__documented_success_is_a_send_result(build: Build, spec: Spec) -> None:
    provider, seen = build(spec, lambda _request: spec.ok())

    result = await provider.send(spec.message())

    assert isinstance(result, SendResult) and result.provider == provider.name
    assert len(seen) == 1


# --- transport errors -------------------------------------------------------------------------------------------


def test_transport_errors__the_walk_finds_the_known_ones() -> None:
    assert {httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout,
            httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.ProxyError,
            httpx.UnsupportedProtocol} <= set(TRANSPORT_ERRORS)


@pytest.mark.parametrize(("spec", "error"), [pytest.param(spec, error, id=f"{key}-{error.__name__}")
                                             for key, spec in SPECS.items() for error in TRANSPORT_ERRORS])
async def test_provider__every_transport_error_is_a_retriable_provider_unavailable(
        build: Build, spec: Spec, error: type[httpx.TransportError]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    exc, _ = await send_error(build, spec, fail)

    assert type(exc) is ProviderUnavailable
    assert (exc.retriable, exc.reason) == (True, "provider_unavailable")
    assert exc.code == ("timeout" if issubclass(error, httpx.TimeoutException) else "transport")
    assert isinstance(exc.__cause__, error)


# --- the HTTP status decides when the body names nothing Herald knows -------------------------------------------


@pytest.mark.parametrize(("spec", "status"), [pytest.param(spec, status, id=f"{key}-{status}")
                                              for key, spec in SPECS.items() for status in FALLBACK])
async def test_provider__http_status_falls_back_to_its_error(build: Build, spec: Spec, status: int) -> None:
    error, code = expected_fallback(spec, status)
    for body in (b"", HTML):
        exc, seen = await send_error(build, spec, respond(status, body))

        assert type(exc) is error, body
        assert (exc.code, exc.reason) == (code, error.reason)
        assert len(seen) == 1  # a provider never retries in place (nor follows a redirect): retries are the pipeline's


RETRY_AFTER_CASES: list[tuple[str, Callable[[], dict[str, str]], float | None]] = [
    ("delta-seconds", lambda: {"Retry-After": "30"}, 30.0),
    ("http-date", lambda: {"Retry-After": format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)},
     120.0),
    ("absent", dict, None),
    ("unreadable", lambda: {"Retry-After": "soon"}, None),
]


@pytest.mark.parametrize(("spec", "headers", "retry_after"),
                         [pytest.param(spec, headers, seconds, id=f"{key}-{name}")
                          for key, spec in SPECS.items() for name, headers, seconds in RETRY_AFTER_CASES])
async def test_provider__429_is_rate_limited_honouring_retry_after(
        build: Build, spec: Spec, headers: Callable[[], dict[str, str]], retry_after: float | None) -> None:
    exc, _ = await send_error(build, spec, respond(429, headers=headers()))

    assert type(exc) is RateLimited
    assert (exc.code, exc.retriable) == ("429", True)
    assert exc.retry_after == (pytest.approx(retry_after, abs=5) if retry_after is not None else None)


@pytest.mark.parametrize(("spec", "body"), [pytest.param(spec, body, id=f"{key}-{name}")
                                            for key, spec in SPECS.items() for name, body in GARBAGE.items()])
async def test_provider__a_body_it_cannot_read_changes_nothing_the_status_decides(build: Build, spec: Spec,
                                                                                  body: bytes) -> None:
    for status in (400, 503):
        error, code = expected_fallback(spec, status)
        exc, _ = await send_error(build, spec, respond(status, body))
        assert (type(exc), exc.code) == (error, code)

    ok_status = spec.ok().status_code
    provider, _ = build(spec, respond(ok_status, body))
    if spec.garbage_ok is None:
        result = await provider.send(spec.message())
        assert result.provider == provider.name
    else:
        with pytest.raises(spec.garbage_ok) as caught:
            await provider.send(spec.message())
        assert caught.value.code == "bad_response"


# --- vendor error-code tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", cases(where=lambda s: hasattr(provider_class(s.key), "CODES")))
def test_code_table__every_entry_is_one_of_heralds_four_errors(spec: Spec) -> None:
    codes: Mapping[str, type[DeliveryError]] = provider_class(spec.key).CODES
    assert codes
    assert {code: cls for code, cls in codes.items() if cls not in HERALD_ERRORS or not code} == {}


CODE_CASES = [pytest.param(spec, code, id=f"{key}-{code}") for key, spec in SPECS.items() if spec.error
              for code in provider_class(key).CODES]


@pytest.mark.parametrize(("spec", "code"), CODE_CASES)
async def test_code_table__each_vendor_code_raises_its_error_whatever_the_http_status(build: Build, spec: Spec,
                                                                                     code: str) -> None:
    assert spec.error is not None
    expected: type[DeliveryError] = provider_class(spec.key).CODES[code]
    statuses = spec.error_statuses(code)
    assert statuses
    for status in statuses:
        response = spec.error(code, status)
        exc, _ = await send_error(build, spec, coded(spec, code, status))

        assert type(exc) is expected, status
        assert (exc.code, exc.reason, str(exc)) == (code, expected.reason, documented(code))
        honoured = 7.0 if expected is RateLimited and "retry-after" in response.headers else None
        assert exc.retry_after == honoured


@pytest.mark.parametrize("spec", cases(where=lambda s: s.unknown_code is not None))
async def test_code_table__an_unknown_vendor_code_leaves_the_http_status_to_decide(build: Build, spec: Spec) -> None:
    assert spec.error is not None and spec.unknown_code is not None
    code = spec.unknown_code
    assert code not in provider_class(spec.key).CODES
    for status in spec.error_statuses(code):
        # A 2xx whose per-message code is unknown (Vonage) is refused, not retried: a retry could send it twice.
        expected = Rejected if status < 300 else FALLBACK[status]
        exc, _ = await send_error(build, spec, coded(spec, code, status))

        assert (type(exc), exc.code) == (expected, code), status


# --- vendor status maps -----------------------------------------------------------------------------------------


def quiet_words(cls: Any) -> frozenset[str]:
    """Vendor words that change nothing for Herald, so a receipt carrying one publishes nothing."""
    return frozenset(getattr(cls, "IN_FLIGHT", frozenset()) | getattr(cls, "NO_CHANGE", frozenset()))


@pytest.mark.parametrize("spec", cases(where=lambda s: s.receipt is not None))
def test_status_map__every_word_maps_to_a_herald_status_or_none(spec: Spec) -> None:
    cls = provider_class(spec.key)
    status_map: Mapping[str, Status | None] = cls.STATUS_MAP
    assert status_map
    assert {w: s for w, s in status_map.items() if not w or not (s is None or isinstance(s, Status))} == {}
    assert quiet_words(cls) <= set(status_map)
    assert {w: status_map[w] for w in quiet_words(cls) if status_map[w] is not None} == {}


def test_status_map__every_provider_that_hears_back_has_one() -> None:
    hears_back = {key for key in SPECS if hasattr(provider_class(key), "parse_webhook")}
    assert hears_back == {key for key, spec in SPECS.items() if spec.receipt is not None}


UNKNOWN_WORD = "teleported"  # no vendor's word: mapped to None, never to a guess
RECEIPT_CASES = [pytest.param(spec, word, id=f"{key}-{word}") for key, spec in SPECS.items() if spec.receipt
                 for word in [*provider_class(key).STATUS_MAP, UNKNOWN_WORD]]


@pytest.mark.parametrize(("spec", "word"), RECEIPT_CASES)
async def test_status_map__a_receipt_publishes_the_mapped_status(build: Build, spec: Spec, word: str) -> None:
    assert spec.receipt is not None
    provider, _ = build(spec, lambda _request: spec.ok())

    result = provider.parse_webhook(spec.receipt(word))

    if word in quiet_words(type(provider)):
        assert result.statuses == []
    else:
        [update] = result.statuses
        assert (update.status, update.vendor_status) == (provider.STATUS_MAP.get(word), word)
        assert update.message_id == MESSAGE_ID
