"""Twilio SMS (Messages API), case by case on saved vendor payloads (tests/fixtures/twilio/message_*, written from
Twilio's documented formats): the request Herald sends, what each answer becomes, what each status callback says.

https://www.twilio.com/docs/messaging/api/message-resource (create, the Message JSON),
https://www.twilio.com/docs/api/errors (the error body and codes),
https://www.twilio.com/docs/messaging/guides/track-outbound-message-status (status callback parameters).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from channels.base import OutboundMessage
from channels.errors import DeliveryError, InvalidRecipient, RateLimited, Rejected
from channels.providers.sms import TwilioSmsProvider
from channels.rendering.render import Rendered
from channels.signatures import twilio_signature
from channels.webhooks import WebhookRequest
from schemas.settings import Settings
from schemas.status import Status

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "twilio"
PUBLIC = "https://herald.example.com"
SIM_URL = "http://sim.test"
SID = "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
TO = "+34600111222"
STATUS_URL = f"{PUBLIC}/webhooks/sms/twilio?message_id=msg-3f2a9c"
IDEMPOTENCY_TOKEN = "d7f1a3c2-5b6e-4f80-9a1b-0c2d3e4f5a6b"

Handler = Callable[[httpx.Request], httpx.Response]
Make = Callable[[Handler], tuple[TwilioSmsProvider, list[httpx.Request]]]


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixture_form(name: str) -> dict[str, str]:
    return dict(parse_qsl(fixture_text(name), keep_blank_values=True))


def message(text: str = "Your code is 482913") -> OutboundMessage:
    return OutboundMessage(message_id="msg-3f2a9c", channel="sms", address=TO, idempotency_key="k-msg-3f2a9c",
                           rendered=Rendered(template="otp.requested/sms", locale="en", parts={"text": text}),
                           metadata={"message_id": "msg-3f2a9c", "recipient_id": "user-42"})


@pytest.fixture(autouse=True)
def _no_twilio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HERALD_TWILIO_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """The provider as the registry builds it (development settings), answering through a recording MockTransport."""
    settings = Settings(sim_url=SIM_URL, public_url=PUBLIC, secret="test-secret")
    made: list[TwilioSmsProvider] = []

    def build(handler: Handler) -> tuple[TwilioSmsProvider, list[httpx.Request]]:
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        provider = TwilioSmsProvider.from_settings(settings, transport=httpx.MockTransport(record))
        made.append(provider)
        return provider, seen

    yield build
    for provider in made:
        await provider.close()


def answer(status: int, fixture: str, headers: dict[str, str] | None = None) -> Handler:
    return lambda _request: httpx.Response(status, content=fixture_text(fixture).encode(), headers={
        "content-type": "application/json", **(headers or {})})


# --- the request --------------------------------------------------------------------------------------------------


async def test_twilio_sms__request_is_the_documented_messages_create_form(make: Make) -> None:
    provider, seen = make(answer(201, "message_queued.json"))
    config = provider.config

    await provider.send(message())

    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == f"{SIM_URL}/twilio/2010-04-01/Accounts/{config.account_sid}/Messages.json"
    credentials = f"{config.account_sid}:{config.auth_token.get_secret_value()}".encode()
    assert request.headers["authorization"] == "Basic " + base64.b64encode(credentials).decode()
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["idempotency-key"] == "k-msg-3f2a9c"
    assert dict(parse_qsl(request.content.decode(), keep_blank_values=True)) == fixture_form(
        "message_create_request.txt")


# --- each answer --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    provider_message_id: str
    detail: str


@dataclass(frozen=True)
class Raised:
    error: type[DeliveryError]
    code: str
    retry_after: float | None = None


SEND_CASES: list[tuple[str, str, int, str, dict[str, str], Accepted | Raised]] = [
    # id, message text, HTTP status, saved response, headers, outcome
    ("201-queued", "Your code is 482913", 201, "message_queued.json", {}, Accepted(SID, "GSM-7, 1 segment")),
    ("201-queued-two-segments", "x" * 161, 201, "message_queued.json", {}, Accepted(SID, "GSM-7, 2 segments")),
    ("201-queued-ucs2", "Tu código es 482913", 201, "message_queued.json", {}, Accepted(SID, "UCS-2, 1 segment")),
    ("21211-invalid-to", "hi", 400, "message_error_21211.json", {}, Raised(InvalidRecipient, "21211")),
    ("21408-region-not-enabled", "hi", 400, "message_error_21408.json", {}, Raised(Rejected, "21408")),
    ("21606-from-not-sms-capable", "hi", 400, "message_error_21606.json", {}, Raised(Rejected, "21606")),
    ("21610-recipient-replied-stop", "hi", 400, "message_error_21610.json", {}, Raised(InvalidRecipient, "21610")),
    ("21614-not-a-mobile-number", "hi", 400, "message_error_21614.json", {}, Raised(InvalidRecipient, "21614")),
    ("20003-authenticate", "hi", 401, "message_error_20003.json", {}, Raised(Rejected, "20003")),
    # A wrong account SID: configuration, never the recipient (an InvalidRecipient would suppress the address).
    ("20404-account-not-found", "hi", 404, "message_error_20404.json", {}, Raised(Rejected, "20404")),
    ("20429-too-many-requests", "hi", 429, "message_error_20429.json", {"Retry-After": "1"},
     Raised(RateLimited, "20429", 1.0)),
    ("20429-without-retry-after", "hi", 429, "message_error_20429.json", {}, Raised(RateLimited, "20429")),
]


@pytest.mark.parametrize(("text", "status", "fixture", "headers", "outcome"), [c[1:] for c in SEND_CASES],
                         ids=[c[0] for c in SEND_CASES])
async def test_twilio_sms__answer_has_its_outcome(make: Make, text: str, status: int, fixture: str,
                                                  headers: dict[str, str], outcome: Accepted | Raised) -> None:
    provider, seen = make(answer(status, fixture, headers))

    if isinstance(outcome, Accepted):
        result = await provider.send(message(text))
        assert (result.provider, result.provider_message_id, result.detail) == (
            "twilio", outcome.provider_message_id, outcome.detail)
        assert result.segments == int(outcome.detail.split(", ")[1].split()[0])  # data, not only words
    else:
        with pytest.raises(DeliveryError) as caught:
            await provider.send(message(text))
        exc = caught.value
        assert type(exc) is outcome.error
        assert (exc.code, exc.reason, exc.retriable, exc.provider) == (
            outcome.code, outcome.error.reason, outcome.error.retriable, "twilio")
        assert str(exc) == json.loads(fixture_text(fixture))["message"]
        assert exc.retry_after == outcome.retry_after
    assert len(seen) == 1


def test_twilio_sms__every_saved_error_is_a_code_of_the_table() -> None:
    saved = {path.stem.removeprefix("message_error_") for path in FIXTURES.glob("message_error_*.json")}
    assert saved and saved <= set(TwilioSmsProvider.CODES)
    assert {json.loads((FIXTURES / f"message_error_{c}.json").read_text())["code"] for c in saved} == {
        int(c) for c in saved}


# --- status callbacks ---------------------------------------------------------------------------------------------


def callback(fixture: str, **changes: str) -> WebhookRequest:
    """A saved status callback as Twilio posts it: form-encoded, signed over the URL and the form."""
    form = {**fixture_form(fixture), **changes}
    token = TwilioSmsProvider.settings_class().auth_token.get_secret_value()
    return WebhookRequest(method="POST", url=STATUS_URL, query={"message_id": "msg-3f2a9c"},
                          headers={"content-type": "application/x-www-form-urlencoded",
                                   "x-twilio-signature": twilio_signature(token, STATUS_URL, form),
                                   "i-twilio-idempotency-token": IDEMPOTENCY_TOKEN},
                          body=urlencode(form).encode())


NO_CHANGE = None  # Herald published `sent` when the API accepted the message: nothing new to say
CALLBACK_CASES: list[tuple[str, str, str | None, Status | None, str | None]] = [
    # id, saved callback, ErrorCode instead of the saved one, status (or NO_CHANGE), detail
    ("queued", "message_status_queued.txt", None, NO_CHANGE, None),
    ("sent", "message_status_sent.txt", None, NO_CHANGE, None),
    ("delivered", "message_status_delivered.txt", None, Status.DELIVERED, None),
    ("undelivered-30003-unreachable-handset", "message_status_undelivered.txt", None, Status.FAILED, "30003"),
    ("undelivered-30004-message-blocked", "message_status_undelivered.txt", "30004", Status.FAILED, "30004"),
    ("undelivered-30005-unknown-handset", "message_status_undelivered.txt", "30005", Status.FAILED, "30005"),
    ("undelivered-30006-landline-or-unreachable-carrier", "message_status_undelivered.txt", "30006", Status.FAILED,
     "30006"),
    ("undelivered-30007-carrier-filtered", "message_status_undelivered.txt", "30007", Status.FAILED, "30007"),
    ("failed-30008-unknown-error", "message_status_failed.txt", None, Status.FAILED, "30008"),
]


@pytest.mark.parametrize(("fixture", "error_code", "status", "detail"), [c[1:] for c in CALLBACK_CASES],
                         ids=[c[0] for c in CALLBACK_CASES])
async def test_twilio_sms__status_callback_has_its_status(make: Make, fixture: str, error_code: str | None,
                                                          status: Status | None, detail: str | None) -> None:
    provider, _ = make(answer(201, "message_queued.json"))
    request = callback(fixture, **({"ErrorCode": error_code} if error_code else {}))
    vendor = fixture_form(fixture)["MessageStatus"]

    assert provider.verify_webhook(request)
    result = provider.parse_webhook(request)

    assert (result.delivery_id, result.inbound) == (IDEMPOTENCY_TOKEN, [])
    if status is NO_CHANGE:
        assert result.statuses == []
        return
    [update] = result.statuses
    assert (update.status, update.vendor_status, update.detail) == (status, vendor, detail)
    assert (update.message_id, update.provider_message_id, update.address) == ("msg-3f2a9c", SID, TO)
    assert update.delivery_id == f"{SID}|{vendor}"  # the same (message, status) again is a replay
