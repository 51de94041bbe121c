"""SendGrid: the Mail Send request we build, each documented error response, and the signed Event Webhook."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from channels.base import Attachment, OutboundMessage, Sender, WebhookReceiver
from channels.errors import DeliveryError, InvalidRecipient, RateLimited, Rejected
from channels.providers.sendgrid import (
    DEV_WEBHOOK_PRIVATE_KEY,
    DEV_WEBHOOK_PUBLIC_KEY,
    SendgridEmailProvider,
    SendgridSettings,
    sendgrid_signature,
)
from channels.rendering.render import Rendered
from channels.webhooks import WebhookRequest
from schemas.settings import Settings
from schemas.status import Status

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sendgrid"
EMAIL = re.compile(r"[^\s@]+@[^\s@]+")
Handler = Callable[[httpx.Request], httpx.Response]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def outbound(**kwargs: Any) -> OutboundMessage:
    values: dict[str, Any] = dict(
        message_id="msg-3f2a9c", channel="email", address="ana@example.com", idempotency_key="order-1001-confirmed",
        rendered=Rendered(template="order.confirmed/email", locale="es",
                          parts={"subject": "Tu pedido 1001", "html": "<p>Hola Ana</p>", "text": "Hola Ana"}),
        display_name="Ana García", locale="es-ES", event_type="order.confirmed",
        headers={"List-Unsubscribe": "<https://herald.example/u/abc>"},
        metadata={"message_id": "msg-3f2a9c", "recipient_id": "user-42"},
        attachments=(Attachment("factura-1001.pdf", "application/pdf", b"%PDF-1.4\n%herald test\n"),),
    )
    values.update(kwargs)
    return OutboundMessage(**values)


class Recorder:
    """A MockTransport handler that records requests and answers with a scripted response."""

    def __init__(self, response: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.response = response or httpx.Response(202, headers={"X-Message-Id": "W-yXbu-wTAW8gV9iPRdNUA"})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response


def provider(settings: Settings, handler: Handler | None = None, **config: Any) -> SendgridEmailProvider:
    return SendgridEmailProvider(SendgridSettings(**config), settings,
                                 transport=httpx.MockTransport(handler or Recorder()))


@pytest.fixture(autouse=True)
def _no_sendgrid_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own HERALD_SENDGRID_* variables must not change what these tests expect."""
    for name in ("BASE_URL", "API_KEY", "SENDER", "WEBHOOK_PUBLIC_KEY"):
        monkeypatch.delenv(f"HERALD_SENDGRID_{name}", raising=False)


# --- contract -------------------------------------------------------------------------------------------------


def test_sendgrid__meets_the_sender_and_receiver_protocols(settings: Settings) -> None:
    p = SendgridEmailProvider.from_settings(settings)
    assert isinstance(p, Sender) and isinstance(p, WebhookReceiver)
    assert (p.name, p.channel) == ("sendgrid", "email")


# --- send: the request ----------------------------------------------------------------------------------------


async def test_sendgrid__request_is_the_documented_mail_send_json(settings: Settings) -> None:
    recorder = Recorder()
    p = SendgridEmailProvider.from_settings(settings, transport=httpx.MockTransport(recorder))

    result = await p.send(outbound())

    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == f"{settings.sim_url}/sendgrid/v3/mail/send"
    assert request.headers["authorization"] == "Bearer SG.dev-sendgrid-key"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "order-1001-confirmed"
    assert json.loads(request.content) == fixture("mail_send_request.json")
    assert (result.provider, result.provider_message_id) == ("sendgrid", "W-yXbu-wTAW8gV9iPRdNUA")
    await p.close()


async def test_sendgrid__text_content_comes_before_html(settings: Settings) -> None:
    recorder = Recorder()
    await provider(settings, recorder).send(outbound())
    assert [c["type"] for c in json.loads(recorder.requests[0].content)["content"]] == ["text/plain", "text/html"]


async def test_sendgrid__base_url_and_key_come_from_settings(settings: Settings,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_SENDGRID_BASE_URL", "https://api.sendgrid.com")
    monkeypatch.setenv("HERALD_SENDGRID_API_KEY", "SG.real-key")
    monkeypatch.setenv("HERALD_SENDGRID_SENDER", "Tienda <tienda@shop.example>")
    recorder = Recorder()
    await SendgridEmailProvider.from_settings(settings, transport=httpx.MockTransport(recorder)).send(outbound())
    (request,) = recorder.requests
    assert str(request.url) == "https://api.sendgrid.com/v3/mail/send"
    assert request.headers["authorization"] == "Bearer SG.real-key"
    assert json.loads(request.content)["from"] == {"email": "tienda@shop.example", "name": "Tienda"}


def test_sendgrid__sender_defaults_to_herald_email_from(tmp_path: Path) -> None:
    settings = Settings(email_from="no-reply@shop.example", secret="test-secret", data_dir=tmp_path)
    body = SendgridEmailProvider.from_settings(settings).request_body(outbound())
    assert body["from"] == {"email": "no-reply@shop.example"}


def test_sendgrid__api_key_is_masked_in_settings_dumps() -> None:
    assert "dev-sendgrid-key" not in repr(SendgridSettings())


OPTIONAL_CASES: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ("no-display-name", {"display_name": None},
     lambda b: b["personalizations"][0]["to"] == [{"email": "ana@example.com"}]),
    ("no-recipient-id", {"metadata": {"message_id": "msg-3f2a9c"}},
     lambda b: b["personalizations"][0]["custom_args"] == {"herald_message_id": "msg-3f2a9c"}),
    ("no-attachments", {"attachments": ()}, lambda b: "attachments" not in b),
    ("no-event-type", {"event_type": ""}, lambda b: "categories" not in b),
    ("no-extra-headers", {"headers": {}}, lambda b: set(b["headers"]) == {"X-Herald-Message-ID", "Content-Language",
                                                                           "Auto-Submitted"}),
    ("subject-injection", {"rendered": Rendered("t/email", "es", {"subject": "Hi\r\nBcc: evil@x.com",
                                                                  "html": "<p>x</p>", "text": "x"})},
     lambda b: b["subject"] == "Hi Bcc: evil@x.com"),
    ("display-name-injection", {"display_name": "Ana\r\nBcc: evil@x.com"},
     lambda b: b["personalizations"][0]["to"][0]["name"] == "Ana Bcc: evil@x.com"),
    ("header-value-injection", {"headers": {"X-Campaign": "a\r\nBcc: evil@x.com"}},
     lambda b: b["headers"]["X-Campaign"] == "a Bcc: evil@x.com"),
    ("non-ascii-header-is-rfc2047", {"headers": {"X-Tienda": "Peña"}},
     lambda b: b["headers"]["X-Tienda"] == "=?utf-8?b?UGXDsWE=?="),
    ("html-only", {"rendered": Rendered("t/email", "es", {"subject": "s", "html": "<p>x</p>", "text": ""})},
     lambda b: b["content"] == [{"type": "text/html", "value": "<p>x</p>"}]),
    ("attachment-filename-cleaned", {"attachments": (Attachment("a\r\nb.pdf", "application/pdf", b"%PDF-"),)},
     lambda b: b["attachments"][0]["filename"] == "a b.pdf"),
]


@pytest.mark.parametrize(("changes", "check"), [c[1:] for c in OPTIONAL_CASES], ids=[c[0] for c in OPTIONAL_CASES])
def test_sendgrid__request_body_variants(settings: Settings, changes: dict[str, Any],
                                         check: Callable[[dict[str, Any]], bool]) -> None:
    body = provider(settings).request_body(outbound(**changes))
    assert check(body), body


REFUSED_CASES: list[tuple[str, dict[str, Any], type[DeliveryError], str]] = [
    ("address-with-newline", {"address": "ana@example.com\r\nBcc: x@y.z"}, InvalidRecipient, "invalid_address"),
    ("address-with-name", {"address": "Ana <ana@example.com>"}, InvalidRecipient, "invalid_address"),
    ("not-an-address", {"address": "ana"}, InvalidRecipient, "invalid_address"),
    ("header-name-with-colon", {"headers": {"X-A: b\r\nBcc": "x"}}, Rejected, "invalid_header"),
    ("reserved-to", {"headers": {"To": "evil@x.com"}}, Rejected, "reserved_header"),
    ("reserved-bcc-lowercase", {"headers": {"bcc": "evil@x.com"}}, Rejected, "reserved_header"),
    ("reserved-x-sg-id", {"headers": {"X-SG-ID": "1"}}, Rejected, "reserved_header"),
    ("reserved-dkim", {"headers": {"DKIM-Signature": "v=1"}}, Rejected, "reserved_header"),
]


@pytest.mark.parametrize(("changes", "error", "code"), [c[1:] for c in REFUSED_CASES],
                         ids=[c[0] for c in REFUSED_CASES])
async def test_sendgrid__bad_input_is_refused_before_any_request(settings: Settings, changes: dict[str, Any],
                                                                 error: type[DeliveryError], code: str) -> None:
    recorder = Recorder()
    with pytest.raises(error) as caught:
        await provider(settings, recorder).send(outbound(**changes))
    assert caught.value.code == code and not caught.value.retriable
    assert recorder.requests == []


# --- send: documented responses -------------------------------------------------------------------------------
# SendGrid's own error bodies; 5xx, 429 with Retry-After, bodies it cannot read and transport errors are in the
# provider contract (tests/unit/test_provider_contract.py).

RESET_AT = 1392815263  # X-RateLimit-Reset in SendGrid's rate-limit example
ERROR_CASES: list[tuple[str, int, str, dict[str, str], type[DeliveryError], str, bool, float | None]] = [
    # id, status, body fixture, headers, error, code, retriable, retry_after
    ("400-bad-request", 400, "error_400.json", {}, Rejected, "400", False, None),
    ("400-invalid-email", 400, "error_400_invalid_email.json", {}, Rejected, "400", False, None),
    ("401-auth", 401, "error_401.json", {}, Rejected, "auth", False, None),
    ("403-auth", 403, "error_403.json", {}, Rejected, "auth", False, None),
    ("404-wrong-base-url", 404, "error_404.json", {}, Rejected, "not_found", False, None),
    ("405", 405, "error_405.json", {}, Rejected, "405", False, None),
    ("413-too-large", 413, "error_413.json", {}, Rejected, "too_large", False, None),
    ("429-ratelimit-reset", 429, "error_429.json",
     {"X-RateLimit-Limit": "150", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(RESET_AT)},
     RateLimited, "429", True, 30.0),
    ("429-reset-in-the-past", 429, "error_429.json", {"X-RateLimit-Reset": str(RESET_AT - 100)},
     RateLimited, "429", True, 0.0),
]


@pytest.mark.parametrize(("status", "body", "headers", "error", "code", "retriable", "retry_after"),
                         [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
async def test_sendgrid__error_responses_map_to_herald_errors(
        settings: Settings, status: int, body: str, headers: dict[str, str], error: type[DeliveryError], code: str,
        retriable: bool, retry_after: float | None) -> None:
    content = (FIXTURES / body).read_bytes()
    p = provider(settings, Recorder(httpx.Response(status, content=content, headers=headers)))
    p.clock = lambda: RESET_AT - 30.0
    with pytest.raises(DeliveryError) as caught:
        await p.send(outbound())
    exc = caught.value
    assert type(exc) is error
    assert (exc.code, exc.retriable, exc.provider) == (code, retriable, "sendgrid")
    assert getattr(exc, "retry_after", None) == retry_after
    assert not EMAIL.search(str(exc)), str(exc)


async def test_sendgrid__error_message_names_the_field_without_the_address(settings: Settings) -> None:
    content = (FIXTURES / "error_400_invalid_email.json").read_bytes()
    with pytest.raises(Rejected) as caught:
        await provider(settings, Recorder(httpx.Response(400, content=content))).send(outbound())
    assert "personalizations.0.to.0.email" in str(caught.value)
    assert "ana@example.com" not in str(caught.value)


async def test_sendgrid__accepted_without_message_id_header_still_succeeds(settings: Settings) -> None:
    result = await provider(settings, Recorder(httpx.Response(202))).send(outbound())
    assert result.provider_message_id is None


# --- webhook: signature ---------------------------------------------------------------------------------------

EVENTS_BODY = (FIXTURES / "events.json").read_bytes()
TIMESTAMP = "1513299569"


RECEIVED_AT = datetime.fromtimestamp(int(TIMESTAMP) + 2, UTC)  # Herald's clock, 2 s after SendGrid signed


def signed_request(body: bytes = EVENTS_BODY, *, timestamp: str | None = TIMESTAMP,
                   signature: str | None = None, private_key: str = DEV_WEBHOOK_PRIVATE_KEY,
                   received_at: datetime = RECEIVED_AT) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if timestamp is not None:
        headers["x-twilio-email-event-webhook-timestamp"] = timestamp
        headers["x-twilio-email-event-webhook-signature"] = (
            signature if signature is not None else sendgrid_signature(private_key, timestamp, body))
    return WebhookRequest(method="POST", url="https://herald.example/webhooks/email/sendgrid", headers=headers,
                          query={}, body=body, received_at=received_at)


def _other_private_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _at(seconds_after_signing: int) -> datetime:
    return datetime.fromtimestamp(int(TIMESTAMP), UTC) + timedelta(seconds=seconds_after_signing)


def _tampered(request: WebhookRequest, **changes: Any) -> WebhookRequest:
    return dataclasses.replace(request, **changes)


def _without(request: WebhookRequest, header: str) -> WebhookRequest:
    return _tampered(request, headers={k: v for k, v in request.headers.items() if k != header})


SIGNATURE_CASES: list[tuple[str, Callable[[], WebhookRequest], bool]] = [
    ("valid", lambda: signed_request(), True),
    ("valid-empty-array", lambda: signed_request(b"[]"), True),
    ("body-tampered", lambda: _tampered(signed_request(), body=EVENTS_BODY.replace(b"delivered", b"dropped")), False),
    ("body-reformatted", lambda: _tampered(signed_request(), body=json.dumps(json.loads(EVENTS_BODY)).encode()),
     False),
    ("timestamp-tampered", lambda: _tampered(signed_request(), headers={
        **signed_request().headers, "x-twilio-email-event-webhook-timestamp": "1513299570"}), False),
    ("signature-missing", lambda: _without(signed_request(), "x-twilio-email-event-webhook-signature"), False),
    ("timestamp-missing", lambda: _without(signed_request(), "x-twilio-email-event-webhook-timestamp"), False),
    ("no-headers", lambda: signed_request(timestamp=None), False),
    ("signed-with-another-key", lambda: signed_request(private_key=_other_private_key()), False),
    ("signature-not-base64", lambda: signed_request(signature="not base64!"), False),
    ("signature-not-der", lambda: signed_request(signature=base64.b64encode(b"x" * 64).decode()), False),
    ("signature-empty", lambda: signed_request(signature=""), False),
    # The signed timestamp must be within HERALD_WEBHOOK_TOLERANCE (300 s) of Herald's clock, either way.
    ("timestamp-300s-old", lambda: signed_request(received_at=_at(+300)), True),
    ("timestamp-300s-ahead", lambda: signed_request(received_at=_at(-300)), True),
    ("timestamp-301s-old", lambda: signed_request(received_at=_at(+301)), False),
    ("timestamp-301s-ahead", lambda: signed_request(received_at=_at(-301)), False),
    ("timestamp-unicode-digits", lambda: signed_request(timestamp="151329956\u00b2"), False),
    ("timestamp-arabic-indic-digits", lambda: signed_request(timestamp="\u0661\u0665\u0661\u0663"), False),
]


@pytest.mark.parametrize(("make", "valid"), [c[1:] for c in SIGNATURE_CASES], ids=[c[0] for c in SIGNATURE_CASES])
def test_sendgrid__webhook_signature(settings: Settings, make: Callable[[], WebhookRequest], valid: bool) -> None:
    assert provider(settings).verify_webhook(make()) is valid


def _public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_sendgrid__dev_public_key_matches_dev_private_key() -> None:
    der = serialization.load_pem_public_key(_public_pem(DEV_WEBHOOK_PRIVATE_KEY).encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert base64.b64encode(der).decode() == DEV_WEBHOOK_PUBLIC_KEY


def test_sendgrid__configured_pem_public_key_verifies_its_own_signatures(settings: Settings) -> None:
    private = _other_private_key()
    p = provider(settings, webhook_public_key=_public_pem(private))
    assert p.verify_webhook(signed_request(private_key=private))
    assert not p.verify_webhook(signed_request())  # the dev key no longer verifies


@pytest.mark.parametrize("key", ["not a key", base64.b64encode(b"garbage").decode(), ""],
                         ids=["text", "base64-garbage", "empty"])
def test_sendgrid__unreadable_public_key_fails_at_startup(settings: Settings, key: str) -> None:
    with pytest.raises(ValueError, match="HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY"):
        provider(settings, webhook_public_key=key)


def test_sendgrid__dev_key_verifies_nothing_in_production(tmp_path: Path) -> None:
    production = Settings(env="production", secret="a-production-secret-Xq8vN3kP7wL2mZ9tB5", data_dir=tmp_path)
    real = "https://api.sendgrid.com"
    assert not provider(production, base_url=real).verify_webhook(signed_request())
    private = _other_private_key()
    assert provider(production, base_url=real, webhook_public_key=_public_pem(private)).verify_webhook(
        signed_request(private_key=private))


# --- webhook: events ------------------------------------------------------------------------------------------

EVENT_CASES: list[tuple[str, str, str | None, Status | None, str | None]] = [
    # id, event, bounce type, expected status (None: skipped), expected detail
    ("dropped", "dropped", None, Status.FAILED, "5.0.0"),
    ("delivered", "delivered", None, Status.DELIVERED, None),
    ("bounce", "bounce", "bounce", Status.BOUNCED, "5.0.0"),
    ("bounce-blocked", "bounce", "blocked", Status.FAILED, "5.0.0"),
    ("open", "open", None, Status.OPENED, None),
    ("click", "click", None, Status.CLICKED, None),
    ("spamreport", "spamreport", None, Status.COMPLAINED, None),
    ("unsubscribe", "unsubscribe", None, Status.UNSUBSCRIBED, None),
    ("group-unsubscribe", "group_unsubscribe", None, Status.UNSUBSCRIBED, None),
]
SKIPPED_EVENTS = ["processed", "deferred", "group_resubscribe"]


def _documented(event: str, bounce_type: str | None = None) -> dict[str, Any]:
    return next(e for e in json.loads(EVENTS_BODY) if e["event"] == event and e.get("type") == bounce_type)


def _parse(settings: Settings, events: list[dict[str, Any]]) -> list[Any]:
    return provider(settings).parse_webhook(signed_request(json.dumps(events).encode())).statuses


@pytest.mark.parametrize(("event", "bounce_type", "status", "detail"), [c[1:] for c in EVENT_CASES],
                         ids=[c[0] for c in EVENT_CASES])
def test_sendgrid__documented_event_maps_to_status(settings: Settings, event: str, bounce_type: str | None,
                                                   status: Status, detail: str | None) -> None:
    (update,) = _parse(settings, [_documented(event, bounce_type)])
    assert (update.status, update.vendor_status, update.detail) == (status, event, detail)
    assert update.message_id == "msg-3f2a9c"
    assert update.provider_message_id == "14c5d75ce93.dfd.64b469"  # X-Message-Id, without ".filter…"
    assert update.at == datetime(2017, 12, 15, 0, 59, 29, tzinfo=UTC)


@pytest.mark.parametrize("event", SKIPPED_EVENTS)
def test_sendgrid__events_that_change_nothing_are_skipped(settings: Settings, event: str) -> None:
    assert _parse(settings, [_documented(event)]) == []


def test_sendgrid__every_status_map_word_is_covered_by_a_case() -> None:
    assert {c[1] for c in EVENT_CASES} | set(SKIPPED_EVENTS) == set(SendgridEmailProvider.STATUS_MAP)
    assert {w for w, s in SendgridEmailProvider.STATUS_MAP.items() if s is None} == set(SKIPPED_EVENTS)


def test_sendgrid__the_documented_batch_parses_in_order(settings: Settings) -> None:
    statuses = provider(settings).parse_webhook(signed_request()).statuses
    assert [u.status for u in statuses] == [Status.FAILED, Status.DELIVERED, Status.BOUNCED, Status.FAILED,
                                            Status.OPENED, Status.CLICKED, Status.COMPLAINED, Status.UNSUBSCRIBED,
                                            Status.UNSUBSCRIBED]


def test_sendgrid__unknown_event_is_none_not_a_guess(settings: Settings) -> None:
    (update,) = _parse(settings, [{**_documented("delivered"), "event": "machine_opened"}])
    assert update.status is None and update.vendor_status == "machine_opened"


DETAIL_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("smtp-status-wins", {"status": "5.1.1", "reason": "550 5.1.1 <ana@example.com>: Recipient address rejected"},
     "5.1.1"),
    ("reason-address-removed", {"reason": "550 5.1.1 <ana@example.com>: Recipient address rejected"},
     "550 5.1.1 Recipient address rejected"),
    ("reason-bare-address-removed", {"reason": "Mailbox ana.garcia+shop@example.co.uk is full"}, "Mailbox is full"),
    ("reason-truncated", {"reason": "x" * 300}, "x" * 100),
    ("reason-one-line", {"reason": "550 bad\r\nmailbox"}, "550 bad mailbox"),
    ("bogus-status-falls-back-to-reason", {"status": "ana@example.com", "reason": "Invalid"}, "Invalid"),
    ("only-an-address", {"reason": "<ana@example.com>"}, None),
    ("nothing", {}, None),
]


@pytest.mark.parametrize(("fields", "detail"), [c[1:] for c in DETAIL_CASES], ids=[c[0] for c in DETAIL_CASES])
def test_sendgrid__bounce_detail(settings: Settings, fields: dict[str, Any], detail: str | None) -> None:
    event = {k: v for k, v in _documented("bounce", "bounce").items() if k not in ("status", "reason")}
    (update,) = _parse(settings, [{**event, **fields}])
    assert update.detail == detail


def test_sendgrid__no_address_ever_reaches_a_detail(settings: Settings) -> None:
    reasons = ["550 5.1.1 <ana@example.com>: Recipient address rejected", "ana@example.com",
               "Bounced Address ana@example.com", "452 4.2.2 The email account that you tried to reach is over quota."
               " ana@example.com"]
    events = [{**_documented(word, kind), "reason": reason, "status": status}
              for word, kind in (("bounce", "bounce"), ("bounce", "blocked"), ("dropped", None), ("delivered", None))
              for reason in reasons for status in ("", "ana@example.com", "5.0.0")]
    events.extend(json.loads(EVENTS_BODY))
    details = [u.detail for u in _parse(settings, events)]
    assert len(details) >= len(events) - len(SKIPPED_EVENTS)
    assert not [d for d in details if d and "@" in d]


@pytest.mark.parametrize("body", [b'{"event": "delivered"}', b'"x"', b"null"], ids=["object", "string", "null"])
def test_sendgrid__a_body_that_is_not_an_array_is_unreadable(settings: Settings, body: bytes) -> None:
    with pytest.raises(ValueError):
        provider(settings).parse_webhook(signed_request(body))


def test_sendgrid__malformed_events_are_skipped_or_uncorrelated(settings: Settings) -> None:
    events: list[Any] = ["not an object", 3, {"event": "delivered", "timestamp": "soon"}]
    (update,) = provider(settings).parse_webhook(signed_request(json.dumps(events).encode())).statuses
    assert (update.status, update.message_id, update.provider_message_id, update.at) == (
        Status.DELIVERED, None, None, None)
