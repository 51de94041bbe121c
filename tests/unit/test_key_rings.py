"""Key rings: a signing secret per webhook tenant (several at once while a customer rotates), and `HERALD_SECRET`
rotation through `HERALD_SECRET_PREVIOUS` (old links still verify, address consent is still found)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError

from channels.base import OutboundMessage
from channels.providers.webhook import StandardWebhookProvider, WebhookSettings
from channels.rendering.render import Rendered
from channels.signatures import link_signature, verify_standard_webhook
from schemas.settings import Settings

pytestmark = pytest.mark.unit

NOW = 1_764_000_000
WHEN = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
URL = "http://127.0.0.1:9/hook"
OLD, NEW, STRANGER = b"old-secret-" + b"a" * 32, b"new-secret-" + b"b" * 32, b"not-in-the-ring-" + b"c" * 32


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


ACME, ACME_OLD, GLOBEX = whsec(), whsec(), whsec()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HERALD_WEBHOOK_") or name.startswith("HERALD_SECRET"):
            monkeypatch.delenv(name)


def outbound(tenant: str | None) -> OutboundMessage:
    return OutboundMessage(message_id="msg-1", channel="webhook", address=URL,
                           rendered=Rendered(template="t/webhook", locale="en", parts={"json": '{"a": 1}'}),
                           idempotency_key="k", options={"priority": "normal", **({"tenant": tenant} if tenant
                                                                                     else {})})


Send = Callable[..., Any]


@pytest.fixture
async def send(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Send]:
    """Sends one message through a provider with the given tenant secrets; returns the request's headers and body."""
    providers: list[StandardWebhookProvider] = []

    async def run(tenant: str | None, **config: Any) -> tuple[dict[str, str], bytes]:
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(204)

        provider = StandardWebhookProvider(WebhookSettings(allow_private=True, **config),
                                           Settings(secret="test-secret"), transport=httpx.MockTransport(record),
                                           clock=lambda: NOW)
        providers.append(provider)
        await provider.send(outbound(tenant))
        [request] = seen
        return {k.lower(): v for k, v in request.headers.items()}, request.content

    yield run
    for provider in providers:
        await provider.close()


# --- webhook tenants -----------------------------------------------------------------------------------------


async def test_webhook_keys__a_tenants_message_verifies_with_its_key_and_not_another_tenants(send: Send) -> None:
    headers, body = await send("acme", tenant_secrets={"acme": [ACME], "globex": [GLOBEX]})

    assert verify_standard_webhook(ACME, headers, body, now=NOW)
    assert not verify_standard_webhook(GLOBEX, headers, body, now=NOW)
    assert not verify_standard_webhook(WebhookSettings().signing_secret.get_secret_value(), headers, body, now=NOW)


async def test_webhook_keys__a_tenant_with_two_keys_sends_two_signatures_and_either_verifies(send: Send) -> None:
    headers, body = await send("acme", tenant_secrets={"acme": [ACME, ACME_OLD]})

    assert len(headers["webhook-signature"].split()) == 2
    assert all(sig.startswith("v1,") for sig in headers["webhook-signature"].split())
    assert verify_standard_webhook(ACME, headers, body, now=NOW)
    assert verify_standard_webhook(ACME_OLD, headers, body, now=NOW)
    assert not verify_standard_webhook(GLOBEX, headers, body, now=NOW)


async def test_webhook_keys__tenant_secrets_from_the_environment_one_string_or_a_list(
        send: Send, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_WEBHOOK_TENANT_SECRETS", json.dumps({"acme": ACME, "globex": [GLOBEX, ACME_OLD]}))

    config = WebhookSettings()

    assert config.ring_for("acme") == (ACME,)
    assert config.ring_for("globex") == (GLOBEX, ACME_OLD)


async def test_webhook_keys__a_tenant_without_its_own_key_uses_the_default_never_anothers(send: Send) -> None:
    default = whsec()

    headers, body = await send("initech", signing_secret=default, tenant_secrets={"acme": [ACME]})

    assert verify_standard_webhook(default, headers, body, now=NOW)
    assert not verify_standard_webhook(ACME, headers, body, now=NOW)


async def test_webhook_keys__the_default_may_be_a_comma_separated_ring(send: Send) -> None:
    first, second = whsec(), whsec()

    headers, body = await send(None, signing_secret=f"{first},{second}")

    assert verify_standard_webhook(first, headers, body, now=NOW)
    assert verify_standard_webhook(second, headers, body, now=NOW)


BAD_SECRETS = [
    ("no-prefix", base64.b64encode(b"k" * 32).decode()),
    ("not-base64", "whsec_not*base64!"),
    ("too-short", "whsec_" + base64.b64encode(b"k" * 16).decode()),
    ("too-long", "whsec_" + base64.b64encode(b"k" * 65).decode()),
]


@pytest.mark.parametrize("secret", [c[1] for c in BAD_SECRETS], ids=[c[0] for c in BAD_SECRETS])
def test_webhook_keys__a_malformed_tenant_secret_refuses_the_settings(monkeypatch: pytest.MonkeyPatch,
                                                                      secret: str) -> None:
    monkeypatch.setenv("HERALD_WEBHOOK_TENANT_SECRETS", json.dumps({"acme": [ACME, secret]}))

    with pytest.raises(ValidationError) as caught:
        WebhookSettings()
    assert secret not in str(caught.value)  # the refused value is never printed


@pytest.mark.parametrize("secret", [c[1] for c in BAD_SECRETS], ids=[c[0] for c in BAD_SECRETS])
def test_webhook_keys__a_malformed_default_secret_refuses_the_settings(secret: str) -> None:
    with pytest.raises(ValidationError):
        WebhookSettings(signing_secret=f"{whsec()},{secret}")


def test_webhook_keys__production_refuses_a_key_shared_by_two_tenants_or_the_dev_key_in_a_ring() -> None:
    dev = WebhookSettings().signing_secret.get_secret_value()

    assert WebhookSettings(signing_secret=whsec(), tenant_secrets={"acme": [ACME], "globex": [GLOBEX]}
                           ).production_problems() == []
    assert WebhookSettings(signing_secret=whsec(), tenant_secrets={"acme": [ACME], "globex": [GLOBEX, ACME]}
                           ).production_problems()
    assert WebhookSettings(signing_secret=ACME, tenant_secrets={"acme": [ACME]}).production_problems()
    assert WebhookSettings(signing_secret=whsec(), tenant_secrets={"acme": [dev]}).production_problems()
    assert WebhookSettings(signing_secret=f"{whsec()},{dev}").production_problems()


# --- HERALD_SECRET rotation ------------------------------------------------------------------------------------


def ring(current: bytes = NEW, *previous: bytes) -> Any:
    from consumers.identity import KeyRing  # imported here: the webhook tests above run on code without it
    return KeyRing(current, tuple(previous))


def test_secret_rotation__previous_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_SECRET", NEW.decode())
    monkeypatch.setenv("HERALD_SECRET_PREVIOUS", f"{OLD.decode()}, {STRANGER.decode()}")

    settings = Settings()

    assert [s.get_secret_value() for s in settings.secret_previous] == [OLD.decode(), STRANGER.decode()]
    assert ring().from_settings(settings).all == (NEW, OLD, STRANGER)
    assert settings.as_env()["HERALD_SECRET_PREVIOUS"] == f"{OLD.decode()},{STRANGER.decode()}"


def test_secret_rotation__production_refuses_a_weak_previous_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    strong = secrets.token_urlsafe(32)
    assert Settings(env="production", secret=strong, secret_previous=secrets.token_urlsafe(32))

    with pytest.raises(ValidationError, match="HERALD_SECRET_PREVIOUS"):
        Settings(env="production", secret=strong, secret_previous=f"{secrets.token_urlsafe(32)},test-secret")


async def test_secret_rotation__an_unsubscribe_link_signed_with_the_previous_secret_still_works() -> None:
    from consumers.inbound.unsubscribe import Unsubscribes, unsubscribe_link
    from consumers.observe.metrics import Metrics
    from consumers.state.kvstore import MemoryStore
    from consumers.state.preferences import PreferenceLedger

    ledger = PreferenceLedger(MemoryStore(), clock=lambda: WHEN)
    unsubscribes = Unsubscribes(ledger, ring(NEW, OLD), Metrics())

    for secret, status in ((OLD, 200), (NEW, 200), (STRANGER, 403)):
        link = urlsplit(unsubscribe_link(secret, "https://h.example", "u1"))
        query = {k: v[0] for k, v in parse_qs(link.query).items()}
        assert (await unsubscribes.handle("u1", query, "GET")).status == status, secret
    # A new link is signed with the current secret.
    assert parse_qs(urlsplit(unsubscribe_link(ring(NEW, OLD), "https://h.example", "u1")).query)["s"] == [
        parse_qs(urlsplit(unsubscribe_link(NEW, "https://h.example", "u1")).query)["s"][0]]


def test_secret_rotation__a_document_link_signed_with_the_previous_secret_still_works() -> None:
    from channels.rendering.render import Renderer
    from consumers.state.documents import Documents
    from consumers.state.kvstore import MemoryStore

    expires = str(int((WHEN + timedelta(days=1)).timestamp()))
    documents = Documents(MemoryStore(), Renderer(), ring(NEW, OLD), "https://h.example",
                          template_globals={}, clock=lambda: WHEN)

    assert documents.verify("msg-1", expires, link_signature(OLD, "document", "msg-1", expires))
    assert documents.verify("msg-1", expires, link_signature(NEW, "document", "msg-1", expires))
    assert not documents.verify("msg-1", expires, link_signature(STRANGER, "document", "msg-1", expires))


async def test_secret_rotation__an_address_stop_recorded_under_the_old_secret_still_suppresses() -> None:
    from consumers import hooks
    from consumers.state.kvstore import MemoryStore
    from consumers.state.preferences import AddressConsents, PreferenceLedger

    consent, preferences = MemoryStore(), MemoryStore()
    before = PreferenceLedger(preferences, clock=lambda: WHEN, addresses=AddressConsents(consent, OLD))
    await before.stop_address("sms", "+34600111222", None)

    after = PreferenceLedger(preferences, clock=lambda: WHEN, addresses=AddressConsents(consent, ring(NEW, OLD)))
    check = hooks.consent_check(after, ring(NEW, OLD))

    assert check("u9", "transactional", "sms", "+34600111222") == "opted_out"
    # The address's START after the rotation undoes its STOP from before it.
    await after.start_address("sms", "+34600111222", None)
    assert check("u9", "transactional", "sms", "+34600111222") is None


async def test_secret_rotation__a_suppression_hashed_with_the_old_secret_still_holds() -> None:
    from consumers import hooks
    from consumers.identity import recipient_hash
    from consumers.state.kvstore import MemoryStore
    from consumers.state.preferences import PreferenceLedger

    ledger = PreferenceLedger(MemoryStore(), clock=lambda: WHEN)
    await ledger.suppress("u1", recipient_hash(OLD, "ana@example.com"), "bounced")

    assert hooks.consent_check(ledger, ring(NEW, OLD))("u1", "transactional", "email",
                                                       "ana@example.com") == "suppressed_address"


async def test_secret_rotation__a_reply_finds_the_question_asked_before_the_rotation() -> None:
    from consumers.state.conversations import Conversations, Question
    from consumers.state.kvstore import MemoryStore

    store = MemoryStore()
    question = Question.model_validate({"message_id": "msg-1", "event_type": "appointment.reminder",
                                        "recipient_id": "u1", "channel": "sms", "asked_at": WHEN})
    await Conversations(store, OLD).remember(question, "+34600111222")

    rotated = Conversations(store, ring(NEW, OLD))

    assert rotated.last_question("sms", "+34600111222", WHEN) == question
    assert rotated.recipient_for("+34600111222") == "u1"
    assert Conversations(store, ring(NEW)).last_question("sms", "+34600111222", WHEN) is None


def test_secret_rotation__a_voice_menu_sealed_with_the_previous_secret_still_opens() -> None:
    from channels.providers.voice import TwilioVoiceProvider, TwilioVoiceSettings, voice_fernet

    token = voice_fernet(OLD.decode()).encrypt_at_time(b"menu", int(time.time())).decode()
    rotated = TwilioVoiceProvider(TwilioVoiceSettings(), Settings(public_url="https://h.example", secret=NEW.decode(),
                                                                  secret_previous=OLD.decode()))

    assert rotated.unseal(token) == "menu"
    assert voice_fernet(NEW.decode()).decrypt(rotated.seal("new").encode()) == b"new"
