"""Push: the FCM HTTP v1 provider — request built, documented responses and FcmError codes mapped."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.base import OutboundMessage, Sender, WebhookReceiver
from channels.errors import DeliveryError, InvalidRecipient, RateLimited, Rejected
from channels.providers.push import FcmPushProvider, FcmSettings
from channels.rendering.render import Rendered
from schemas.settings import Settings

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fcm"
SIM_URL = "http://sim.test"
TOKEN = "bk3RNwTe3H0:CI2k_HHwgIpoDKCIZvvDMExUdFQ3P1"
PARTS = {"title": "Pedido confirmado", "body": "Tu pedido 1001 está en camino"}
FCM_NAME = "projects/herald-dev/messages/0:1500415314455276%31bd1c9631bd1c96"

# The HTTP status FCM documents with each FcmError code.
HTTP_STATUS = {"UNREGISTERED": 404, "SENDER_ID_MISMATCH": 403, "INVALID_ARGUMENT": 400,
               "THIRD_PARTY_AUTH_ERROR": 401, "QUOTA_EXCEEDED": 429, "UNAVAILABLE": 503, "INTERNAL": 500}


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def outbound(*, address: str = TOKEN, options: dict[str, Any] | None = None,
             event_type: str = "order.confirmed") -> OutboundMessage:
    return OutboundMessage(message_id="msg-3f2a9c", channel="push", address=address,
                           rendered=Rendered(template="order.confirmed/push", locale="es", parts=PARTS),
                           idempotency_key="key-msg-3f2a9c", locale="es-ES", event_type=event_type,
                           metadata={"message_id": "msg-3f2a9c", "recipient_id": "user-42"}, options=options or {})




@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HERALD_FCM_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings() -> Settings:
    return Settings(sim_url=SIM_URL, secret="test-secret")


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
async def make(settings: Settings) -> AsyncIterator[Callable[[Handler], tuple[FcmPushProvider, list[httpx.Request]]]]:
    providers: list[FcmPushProvider] = []

    def build(handler: Handler) -> tuple[FcmPushProvider, list[httpx.Request]]:
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        provider = FcmPushProvider.from_settings(settings, transport=httpx.MockTransport(record))
        providers.append(provider)
        return provider, seen

    yield build
    for provider in providers:
        await provider.close()


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=fixture_bytes("send_ok.json"), headers={"content-type": "application/json"})


# --- settings and shape ---------------------------------------------------------------------------------------


def test_fcm_settings__dev_defaults_and_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    config = FcmSettings()
    assert (config.base_url, config.project_id) == (None, "herald-dev")
    assert config.access_token.get_secret_value() == "dev-fcm-access-token"
    assert "dev-fcm-access-token" not in repr(config)

    monkeypatch.setenv("HERALD_FCM_PROJECT_ID", "acme-prod")
    assert FcmSettings().project_id == "acme-prod"


def test_fcm_push__is_only_a_sender(settings: Settings) -> None:
    provider = FcmPushProvider.from_settings(settings)

    assert (provider.name, provider.channel) == ("fcm", "push")
    assert isinstance(provider, Sender)
    # FCM sends no delivery receipts: nothing to verify or parse.
    assert not isinstance(provider, WebhookReceiver)
    assert not hasattr(provider, "parse_webhook")


# --- send: the request built ----------------------------------------------------------------------------------

PRIORITY_CASES = [
    ("no-priority-is-normal", {}, "normal", "5"),
    ("normal", {"priority": "normal"}, "normal", "5"),
    ("bulk", {"priority": "bulk"}, "normal", "5"),
    ("high", {"priority": "high"}, "high", "10"),
    ("critical", {"priority": "critical"}, "high", "10"),
]


@pytest.mark.parametrize(("options", "android", "apns"), [c[1:] for c in PRIORITY_CASES],
                         ids=[c[0] for c in PRIORITY_CASES])
async def test_fcm_push__builds_the_v1_send_request(make: Any, options: dict[str, Any], android: str,
                                                    apns: str) -> None:
    provider, seen = make(ok)

    result = await provider.send(outbound(options=options))

    [request] = seen
    assert request.method == "POST"
    assert request.url == f"{SIM_URL}/fcm/v1/projects/herald-dev/messages:send"
    assert request.headers["authorization"] == "Bearer dev-fcm-access-token"
    assert json.loads(request.content) == {"message": {
        "token": TOKEN,
        "notification": {"title": "Pedido confirmado", "body": "Tu pedido 1001 está en camino"},
        "data": {"message_id": "msg-3f2a9c", "event_type": "order.confirmed"},
        "android": {"priority": android},
        "apns": {"headers": {"apns-priority": apns}},
    }}
    assert result.provider == "fcm"
    assert result.provider_message_id == FCM_NAME


async def test_fcm_push__data_values_are_all_strings(make: Any) -> None:
    provider, seen = make(ok)

    await provider.send(outbound(event_type=""))

    data = json.loads(seen[0].content)["message"]["data"]
    assert all(isinstance(v, str) for v in data.values())


async def test_fcm_push__configured_base_url_and_project(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_FCM_BASE_URL", "https://fcm.googleapis.com")
    monkeypatch.setenv("HERALD_FCM_PROJECT_ID", "acme-prod")
    provider, seen = make(ok)

    await provider.send(outbound())

    assert str(seen[0].url) == "https://fcm.googleapis.com/v1/projects/acme-prod/messages:send"


@pytest.mark.parametrize("address", ["", "   "], ids=["empty", "blank"])
async def test_fcm_push__empty_token_is_an_invalid_recipient(make: Any, address: str) -> None:
    provider, seen = make(ok)

    with pytest.raises(InvalidRecipient) as caught:
        await provider.send(outbound(address=address))

    assert caught.value.code == "invalid_token"
    assert seen == []


# --- send: documented errors ----------------------------------------------------------------------------------
# Every FcmError code at any HTTP status (its documented one among them), unknown codes, status fallbacks,
# Retry-After and transport errors: tests/unit/test_provider_contract.py.


def test_fcm_push__codes_cover_every_documented_fcm_error() -> None:
    assert {c.upper() for c in FcmPushProvider.CODES} == set(HTTP_STATUS)


async def test_fcm_push__unregistered_is_a_permanent_invalid_recipient(make: Any) -> None:
    provider, _ = make(lambda _: httpx.Response(404, content=fixture_bytes("error_fcm.json")))

    with pytest.raises(InvalidRecipient) as caught:
        await provider.send(outbound())

    assert caught.value.code == "unregistered"
    assert caught.value.detail == "unregistered"
    assert caught.value.retriable is False


RESPONSE_CASES = [
    ("documented-invalid-token", 400, "error_invalid_token.json", Rejected, "invalid_argument"),
    ("bad-request-without-fcm-error-uses-status", 400, "error_bad_request.json", Rejected, "invalid_argument"),
]


@pytest.mark.parametrize(("status", "name", "error", "code"), [c[1:] for c in RESPONSE_CASES],
                         ids=[c[0] for c in RESPONSE_CASES])
async def test_fcm_push__documented_error_responses(make: Any, status: int, name: str,
                                                    error: type[DeliveryError], code: str) -> None:
    provider, _ = make(lambda _: httpx.Response(status, content=fixture_bytes(name)))

    with pytest.raises(error) as caught:
        await provider.send(outbound())

    assert caught.value.code == code


HTTP_FALLBACK_CASES = [
    ("401-unauthenticated", 401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "x"}}, Rejected,
     "unauthenticated"),
    ("403-permission-denied", 403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}}, Rejected,
     "permission_denied"),
    ("404-not-found-without-detail", 404, {"error": {"code": 404, "status": "NOT_FOUND"}}, InvalidRecipient,
     "not_found"),
    ("429-resource-exhausted", 429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}, RateLimited,
     "resource_exhausted"),
]


@pytest.mark.parametrize(("status", "body", "error", "code"), [c[1:] for c in HTTP_FALLBACK_CASES],
                         ids=[c[0] for c in HTTP_FALLBACK_CASES])
async def test_fcm_push__without_an_fcm_error_the_http_status_decides(
        make: Any, status: int, body: Any, error: type[DeliveryError], code: str) -> None:
    # A google.rpc error without an FcmError detail: its `status` names the code, the HTTP status the class.
    provider, _ = make(lambda _: httpx.Response(status, json=body))

    with pytest.raises(error) as caught:
        await provider.send(outbound())

    assert caught.value.code == code
