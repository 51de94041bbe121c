"""A webhook test rig shared by the hardening tests and the fuzz property: every receiver Herald has, a HearBack
with a ledger and a replay store, the real Faust views in-process, and vendor-signed request builders."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import faust
import httpx
from aiohttp.test_utils import TestServer

from channels.base import WebhookReceiver
from channels.providers._twilio import TwilioSettings
from channels.providers.sendgrid import (
    DEV_WEBHOOK_PRIVATE_KEY,
    SendgridEmailProvider,
    SendgridSettings,
    sendgrid_signature,
)
from channels.providers.sms import (
    TwilioSmsProvider,
    VonageSettings,
    VonageSmsProvider,
    vonage_signature,
)
from channels.providers.voice import TwilioVoiceProvider, TwilioVoiceSettings
from channels.providers.whatsapp import MetaSettings, MetaWhatsappProvider
from channels.rendering.render import Renderer
from channels.signatures import meta_signature, twilio_signature
from channels.webhooks import WebhookRequest
from consumers.inbound.hearback import HearBack, HearBackHooks
from consumers.inbound.web import register_document_view, register_views
from consumers.observe.metrics import Metrics
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.status import Receipt
from consumers.state.documents import Documents
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import PreferenceLedger
from schemas.settings import Settings
from tests.fakes import FakeClock, RecordingPublisher

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PUBLIC = "https://herald.example.com"
SECRET = b"webhook-rig-secret"
TWILIO_TOKEN = TwilioSettings().auth_token.get_secret_value()
VONAGE = VonageSettings()
META_SECRET = MetaSettings().app_secret.get_secret_value()
META_VERIFY_TOKEN = MetaSettings().verify_token.get_secret_value()
ROUTES = [("sms", "twilio"), ("sms", "vonage"), ("voice", "twilio"), ("whatsapp", "meta"), ("email", "sendgrid")]


@dataclass
class Rig:
    """One Herald's webhook side on in-memory state: what it published, wrote and counted."""

    settings: Settings
    clock: FakeClock[datetime]
    publisher: RecordingPublisher
    metrics: Metrics
    ledger: PreferenceLedger
    replays: MemoryStore
    documents: MemoryStore
    receivers: dict[tuple[str, str], WebhookReceiver]
    hearback: HearBack
    receipts: list[tuple[str, str]] = field(default_factory=list)

    def state(self) -> tuple[int, dict[str, bytes], dict[str, bytes], int]:
        """Everything a webhook or link could change: records published, ledger, replay ids, hooks called."""
        return (len(self.publisher.records), dict(self.ledger.store.data),  # type: ignore[attr-defined]
                dict(self.replays.data), len(self.receipts))

    def replayed(self, channel: str, vendor: str) -> float:
        return self.metrics.webhook_replays.labels(channel, vendor)._value.get()

    def counted(self, channel: str, vendor: str, result: str) -> float:
        return self.metrics.webhooks.labels(channel, vendor, result)._value.get()

    def rebuilt(self) -> HearBack:
        """A new HearBack (a restarted worker) on the same stores."""
        return hearback_for(self, self.replays)


def hearback_for(rig: Rig, replays: MemoryStore) -> HearBack:
    outlets = Outlets.build(rig.publisher, rig.metrics, SECRET, rig.clock)

    async def on_receipt(receipt: Receipt) -> None:
        rig.receipts.append((receipt.message_id, receipt.status.value))
        await outlets.statuses.for_receipt(receipt)  # as the message's owner would, without its send record

    return HearBack(rig.receivers, outlets, rig.clock, ledger=rig.ledger,
                    contacts={"ana@example.com": "user-42", "+34600111222": "user-42"}.get, replays=replays,
                    hooks=HearBackHooks(on_receipt=on_receipt), replay_window=rig.settings.dedupe_window,
                    max_body_bytes=rig.settings.webhook_max_bytes)


def make_rig(**overrides: Any) -> Rig:
    settings = Settings(**{"public_url": PUBLIC, "secret": "webhook-rig-settings-secret", **overrides})
    clock = FakeClock(NOW)
    offline = httpx.MockTransport(lambda _request: httpx.Response(503))  # webhooks only; and no TLS setup per test
    receivers: dict[tuple[str, str], WebhookReceiver] = {
        ("sms", "twilio"): TwilioSmsProvider(TwilioSettings(), settings, transport=offline),
        # Vonage's own clock is far from Herald's: only the injected one (the request's `received_at`) may count.
        ("sms", "vonage"): VonageSmsProvider(VonageSettings(), settings, transport=offline, clock=lambda: 0.0),
        ("voice", "twilio"): TwilioVoiceProvider(TwilioVoiceSettings(), settings, transport=offline),
        ("whatsapp", "meta"): MetaWhatsappProvider(MetaSettings(), settings, transport=offline),
        ("email", "sendgrid"): SendgridEmailProvider(SendgridSettings(), settings, transport=offline),
    }
    receivers[("email", "sendgrid")].clock = lambda: 0.0  # type: ignore[attr-defined]
    rig = Rig(settings=settings, clock=clock, publisher=RecordingPublisher(), metrics=Metrics(),
              ledger=PreferenceLedger(MemoryStore(), clock=clock), replays=MemoryStore(), documents=MemoryStore(),
              receivers=receivers, hearback=None)  # type: ignore[arg-type]
    rig.hearback = hearback_for(rig, rig.replays)
    return rig


def web_app(rig: Rig) -> faust.App:
    """The real Faust views (webhooks, unsubscribe, documents) over the rig, served without a broker."""
    app = faust.App(f"test-webhooks-{uuid.uuid4().hex[:8]}", broker="memory://", autodiscover=False)
    register_views(app, rig.metrics, rig.hearback, PUBLIC, ledger=rig.ledger, secret=SECRET)
    documents = Documents(rig.documents, Renderer(), SECRET, PUBLIC, template_globals={"brand": "Shop"},
                          clock=rig.clock)
    register_document_view(app, documents, rig.metrics)
    return app


async def serve(rig: Rig) -> TestServer:
    server = TestServer(web_app(rig).web.web_app, host="127.0.0.1")  # type: ignore[attr-defined]
    await server.start_server()
    return server


async def raw_http(port: int, head: bytes, body: bytes = b"", *, pieces: int = 0, pause: float = 0.0
                   ) -> tuple[int, bytes]:
    """Send bytes as they are (header bytes that are not UTF-8, a body in `pieces`-byte writes with pauses) and
    return the status and body of the answer. The server may answer before the body is all sent (413)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        try:
            writer.write(head)
            step = pieces or max(1, len(body))
            for start in range(0, len(body), step):
                writer.write(body[start:start + step])
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)
        except (ConnectionError, OSError):
            pass  # the server answered and closed first

    sending = asyncio.create_task(send())
    answer = await reader.read()
    await sending
    writer.close()
    head_line, _, rest = answer.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(head_line.split()[1]), payload


def request_head(method: str, target: bytes, headers: dict[bytes, bytes]) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: herald.example.com", b"Connection: close",
             *(k + b": " + v for k, v in headers.items())]
    return b"\r\n".join(lines) + b"\r\n\r\n"


# --- vendor-signed requests -----------------------------------------------------------------------------------

def twilio_sms(form: dict[str, str], *, token: str | None = "idem-1", query: dict[str, str] | None = None,
               path: str = "/webhooks/sms/twilio") -> WebhookRequest:
    query = {"message_id": "msg-1"} if query is None else query
    url = f"{PUBLIC}{path}" + (f"?{urlencode(query)}" if query else "")
    headers = {"x-twilio-signature": twilio_signature(TWILIO_TOKEN, url, form),
               "content-type": "application/x-www-form-urlencoded"}
    if token is not None:
        headers["i-twilio-idempotency-token"] = token
    return WebhookRequest("POST", url, headers, query, urlencode(form).encode())


def vonage_params(params: dict[str, str], *, nonce: str = "nonce-1", at: datetime = NOW) -> dict[str, str]:
    signed = {**params, "timestamp": str(int(at.timestamp())), "nonce": nonce}
    signed["sig"] = vonage_signature(VONAGE.signature_secret.get_secret_value(), signed, VONAGE.signature_method)
    return signed


def vonage_dlr(*, message: str = "0B00000012345678", status: str = "delivered", nonce: str = "nonce-1",
               at: datetime = NOW, client_ref: str = "msg-1") -> WebhookRequest:
    params = vonage_params({"msisdn": "34600111222", "to": "15005550006", "messageId": message, "status": status,
                            "err-code": "0", "client-ref": client_ref, "message-timestamp": "2026-11-24 10:00:00"},
                           nonce=nonce, at=at)
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/sms/vonage", {"content-type": "application/json"}, {},
                          json.dumps(params).encode())


def meta_status(wamid: str, status: str = "delivered", opaque: Any = "msg-1", **extra: Any) -> dict[str, Any]:
    item = {"id": wamid, "status": status, "timestamp": str(int(NOW.timestamp())), "recipient_id": "34600111222",
            **extra}
    if opaque is not None:
        item["biz_opaque_callback_data"] = opaque
    return item


def meta_envelope(statuses: list[dict[str, Any]] | None = None,
                  messages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "15550783881", "phone_number_id": "100000000000001"}}
    if statuses is not None:
        value["statuses"] = statuses
    if messages is not None:
        value["messages"] = messages
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}


def meta_body(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":")).encode()


def meta_post(body: bytes) -> WebhookRequest:
    headers = {"content-type": "application/json", "x-hub-signature-256": meta_signature(META_SECRET, body)}
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/whatsapp/meta", headers, {}, body)


def sendgrid_event(event: str, sg_event_id: str, **extra: Any) -> dict[str, Any]:
    return {"email": "ana@example.com", "timestamp": int(NOW.timestamp()), "event": event,
            "sg_event_id": sg_event_id, "sg_message_id": "W-yXbu.filter0001.16648.5515E0B88.0",
            "herald_message_id": "msg-1", "herald_recipient_id": "user-42", **extra}


def sendgrid_headers(body: bytes, at: datetime = NOW) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    return {"content-type": "application/json", "x-twilio-email-event-webhook-timestamp": timestamp,
            "x-twilio-email-event-webhook-signature": sendgrid_signature(DEV_WEBHOOK_PRIVATE_KEY, timestamp, body)}


def sendgrid_post(events: list[dict[str, Any]], *, at: datetime = NOW) -> WebhookRequest:
    body = json.dumps(events).encode()
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/email/sendgrid", sendgrid_headers(body, at), {}, body)


Make = Callable[[], WebhookRequest]
