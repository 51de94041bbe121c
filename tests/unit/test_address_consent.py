"""Consent by address: a STOP or an unsubscribe holds for the number or mailbox itself, whatever recipient id it
belongs to, and before Herald ever sent to it; a START undoes only what that address's STOP did."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
import pytest

from channels.base import WebhookReceiver
from channels.providers._twilio import TwilioSettings
from channels.providers.sms import TwilioSmsProvider
from channels.rendering.render import Renderer
from channels.signatures import twilio_signature
from channels.webhooks import InboundMessage, WebhookRequest, WebhookResult
from consumers import hooks
from consumers.app import BUNDLED_CATALOG
from consumers.cli.publish import make_event
from consumers.inbound.hearback import HearBack
from consumers.inbound.unsubscribe import Unsubscribes, unsubscribe_link
from consumers.observe.metrics import Metrics
from consumers.pipeline.delivery import DeliveryHooks, DeliveryStage
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import Record
from consumers.pipeline.router import Router
from consumers.pipeline.scheduler import Scheduler
from consumers.state.documents import Documents
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import (
    AddressConsents,
    PreferenceLedger,
    address_key,
    edit,
    normalise_address,
)
from consumers.state.sends import SendLedger
from schemas.catalog import Catalog, Channel
from schemas.dispatch import Dispatch
from schemas.events import Recipient
from schemas.settings import Settings
from schemas.status import Status
from tests.fakes import FakeClock, RecordingPublisher, ScriptedSender

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SECRET = b"secret"
PUBLIC = "https://herald.example.com"
TOKEN = TwilioSettings().auth_token.get_secret_value()
CATALOG = Catalog.load(BUNDLED_CATALOG)
NUMBER = "+34600111222"
MAILBOX = "ana@example.com"
SHIPPING = CATALOG.types["shipping.dispatched"].sample
OFFER = CATALOG.types["offer.loyalty"].sample


class Herald:
    """The consent pieces wired as `create_app` wires them, on memory stores, with a clock that can move."""

    def __init__(self, contacts: dict[str, str] | None = None) -> None:
        self.clock = FakeClock(NOW)
        self.consent_store = MemoryStore()
        self.ledger = PreferenceLedger(MemoryStore(), clock=self.clock,
                                       addresses=AddressConsents(self.consent_store, SECRET, clock=self.clock))
        self.check = hooks.consent_check(self.ledger, SECRET)
        self.publisher, self.metrics = RecordingPublisher(), Metrics()
        self.outlets = Outlets.build(self.publisher, self.metrics, SECRET, self.clock)
        self.statuses = self.outlets.statuses
        provider = TwilioSmsProvider(TwilioSettings(), Settings(public_url=PUBLIC, secret="x" * 16))
        self.contacts = dict(contacts or {})
        self.hearback = self.hearing({("sms", "twilio"): provider})
        self.router = Router(CATALOG, ("email", "sms"), clock=self.clock, consent=self.check,
                             preferences=self.ledger.get)
        self.sms = ScriptedSender(name="twilio", channel="sms")
        self.email = ScriptedSender(name="smtp", channel="email")
        renderer, globals_ = Renderer(), {"brand": "Shop", "document_url": None}
        self.delivery = DeliveryStage(
            renderer, {"sms": self.sms, "email": self.email}, CATALOG, self.outlets,
            sends=SendLedger(MemoryStore(), self.clock),
            documents=Documents(MemoryStore(), renderer, SECRET, PUBLIC, template_globals=globals_, clock=self.clock),
            scheduler=Scheduler(MemoryStore(), self.publisher, self.statuses, clock=self.clock), clock=self.clock,
            template_globals=globals_,
            hooks=DeliveryHooks(consent=self.check, headers=hooks.unsubscribe_headers(SECRET, PUBLIC)))

    def hearing(self, receivers: dict[tuple[str, str], WebhookReceiver]) -> HearBack:
        """A webhook handler on this Herald's ledger and contacts."""
        return HearBack(receivers, self.outlets, self.clock, ledger=self.ledger, contacts=self.contacts.get,
                        replays=MemoryStore())

    async def text(self, body: str, sender: str = NUMBER) -> int:
        """A Twilio inbound SMS, signed as Twilio signs it."""
        form = {"MessageSid": f"SM{abs(hash((body, sender, self.clock.now)))}", "From": sender, "To": "+15005550006",
                "Body": body}
        url = f"{PUBLIC}/webhooks/sms/twilio"
        request = WebhookRequest(method="POST", url=url, headers={"x-twilio-signature": twilio_signature(
            TOKEN, url, form)}, query={}, body=urlencode(form).encode())
        answer = await self.hearback.handle("sms", "twilio", request)
        return answer.status

    def route(self, event_type: str, to: dict[str, Any], payload: dict[str, Any], channel: str) -> Any:
        event = make_event(event_type, to, payload, channels=[channel])
        event["time"] = self.clock.now.isoformat()
        return self.router.route(orjson.dumps(event), {})

    async def send(self, d: Dispatch) -> Status:
        before = len(self.publisher.statuses())
        record = Record(topic=f"h.dispatch.{d.channel}", partition=0, offset=1, key=d.message_id.encode(),
                        value=d.model_dump_json().encode())
        await self.delivery.handle(record)
        [status] = self.publisher.statuses()[before:]
        return status


def person(recipient_id: str, **addresses: str) -> dict[str, Any]:
    return {"id": recipient_id, "locale": "es-ES", "timezone": "Europe/Madrid", "name": "Ana", **addresses}


def dispatch(recipient_id: str, channel: str, *, category: str = "transactional", **addresses: str) -> Dispatch:
    event_type, payload = (("offer.loyalty", OFFER) if category == "promotional" else
                           ("shipping.dispatched", SHIPPING))
    # A message id of its own per dispatch: the send ledger deduplicates a message id sent before.
    return Dispatch(message_id=f"msg-{recipient_id}-{channel}-{uuid.uuid4().hex[:8]}", event_id="evt-1",
                    event_type=event_type, event_time=NOW, channel=channel, category=category, priority="normal",
                    idempotency_key="k",
                    to=Recipient(id=recipient_id, locale="es-ES", **addresses), payload=payload,
                    expires_at=NOW + timedelta(days=1))


# --- STOP from a number Herald never sent to --------------------------------------------------------------------


@pytest.mark.parametrize("recipient_id", ["user-42", "someone-else"])
async def test_address_stop__from_a_number_never_sent_to_suppresses_it_at_route_and_send_time(
        recipient_id: str, caplog: pytest.LogCaptureFixture) -> None:
    herald = Herald(contacts={})  # Herald has never sent to the number: nobody is known to have it
    caplog.set_level(logging.INFO)

    assert await herald.text("STOP") == 200

    routed = herald.route("shipping.dispatched", person(recipient_id, phone="+34 600 111 222"), SHIPPING, "sms")
    assert (routed.outcome, routed.suppressed) == ("suppressed", "opted_out")
    status = await herald.send(dispatch(recipient_id, "sms", phone=NUMBER))  # one queued or scheduled before
    assert (status.status, status.detail) == (Status.SUPPRESSED, "opted_out")
    assert herald.sms.sent == []
    assert herald.metrics.keywords.labels("sms", "stop", "ok")._value.get() == 1
    assert "unknown_recipient" not in caplog.text and "not applied" not in caplog.text
    assert NUMBER not in caplog.text and "600111222" not in caplog.text


async def test_address_stop__stops_only_the_channel_it_came_on() -> None:
    herald = Herald()
    await herald.text("STOP")

    assert herald.check("user-42", "transactional", "sms", NUMBER) == "opted_out"
    assert herald.check("user-42", "transactional", "voice", NUMBER) is None
    assert herald.check("user-42", "transactional", "whatsapp", NUMBER) is None
    assert herald.check("user-42", "transactional", "sms", "+34600999888") is None


async def test_address_stop__two_recipient_ids_sharing_the_number_both_stop() -> None:
    herald = Herald(contacts={NUMBER: "user-42"})  # Herald last sent to the number as user-42
    await herald.text("Baja")

    for recipient_id in ("user-42", "family-account-7"):
        routed = herald.route("shipping.dispatched", person(recipient_id, phone=NUMBER), SHIPPING, "sms")
        assert (routed.outcome, routed.suppressed) == ("suppressed", "opted_out")
        status = await herald.send(dispatch(recipient_id, "sms", phone=NUMBER))
        assert (status.status, status.detail) == (Status.SUPPRESSED, "opted_out")
    # The recipient the number is known to belong to sees the STOP in their own preferences too, as before.
    assert herald.ledger.get("user-42").opted_out == [Channel.SMS]  # type: ignore[union-attr]
    assert herald.ledger.get("family-account-7") is None


# --- START restores only what that address's STOP removed ------------------------------------------------------


async def test_address_start__restores_the_number_and_the_opt_out_its_stop_made() -> None:
    herald = Herald(contacts={NUMBER: "user-42"})
    await herald.text("STOP")
    await herald.text("START")

    assert herald.check("user-42", "transactional", "sms", NUMBER) is None
    assert herald.check("family-account-7", "transactional", "sms", NUMBER) is None
    assert herald.ledger.get("user-42").opted_out == []  # type: ignore[union-attr]
    status = await herald.send(dispatch("user-42", "sms", phone=NUMBER))
    assert status.status is Status.SENT


async def test_address_start__leaves_an_opt_out_made_through_preferences() -> None:
    herald = Herald(contacts={NUMBER: "user-42"})
    await herald.ledger.update("user-42", lambda p: edit(p, opt_out=["sms"]), source="cli")  # `herald prefs set`
    await herald.text("STOP")
    await herald.text("START")

    assert herald.check("user-42", "transactional", "sms", NUMBER) == "opted_out"
    assert herald.check("family-account-7", "transactional", "sms", NUMBER) is None


async def test_address_start__from_another_number_does_not_undo_this_numbers_stop() -> None:
    herald = Herald(contacts={NUMBER: "user-42", "+34600999888": "user-42"})
    await herald.text("STOP")
    await herald.text("START", sender="+34600999888")

    assert herald.check("user-42", "transactional", "sms", NUMBER) == "opted_out"
    assert herald.check("family-account-7", "transactional", "sms", NUMBER) == "opted_out"


async def test_address_start__without_a_stop_changes_nothing() -> None:
    herald = Herald(contacts={})
    await herald.text("START")

    assert herald.consent_store.data == {}
    assert herald.metrics.keywords.labels("sms", "start", "ok")._value.get() == 1


async def test_address_stop__a_retried_webhook_changes_nothing_more() -> None:
    herald = Herald(contacts={NUMBER: "user-42"})
    await herald.text("STOP")
    before = dict(herald.consent_store.data)
    herald.clock.advance(minutes=1)
    await herald.text("STOP")

    assert herald.consent_store.data == before
    await herald.text("START")
    assert herald.check("user-42", "transactional", "sms", NUMBER) is None


# --- keys: normalised, keyed, never in clear -------------------------------------------------------------------

SAME_NUMBER = ["+34600111222", " +34 600 111 222 ", "34600111222", "whatsapp:+34600111222", "+34-600-111-222"]


@pytest.mark.parametrize("written", SAME_NUMBER)
def test_address_key__one_number_however_it_is_written(written: str) -> None:
    assert normalise_address("sms", written) == "+34600111222"
    assert address_key(SECRET, "whatsapp", written) == address_key(SECRET, "sms", "+34600111222")


def test_address_key__emails_by_lower_case_and_never_in_clear() -> None:
    key = address_key(SECRET, "email", " Ana@Example.COM ")

    assert key == address_key(SECRET, "email", MAILBOX)
    assert key.startswith("sha256:") and "ana" not in key
    assert key != address_key(b"other-secret", "email", MAILBOX)


async def test_address_consent__record_is_keyed_by_hash_and_holds_no_address() -> None:
    herald = Herald(contacts={})
    await herald.text("STOP")

    [key] = herald.consent_store.data
    assert key == address_key(SECRET, "sms", NUMBER)
    assert b"600111222" not in herald.consent_store.data[key]


async def test_address_consent__an_unreadable_record_fails_closed() -> None:
    herald = Herald()
    herald.consent_store.data[address_key(SECRET, "sms", NUMBER)] = b"{not json"

    with pytest.raises(ValueError):
        herald.check("user-42", "transactional", "sms", NUMBER)


# --- email: one-click unsubscribe and the provider's unsubscribe event hold for the mailbox ----------------------


async def consented(herald: Herald, *recipient_ids: str) -> None:
    for recipient_id in recipient_ids:
        await herald.ledger.set_promotional(recipient_id, "email", True, source="cli")


async def test_address_unsubscribe__one_click_holds_for_the_mailbox_across_recipient_ids() -> None:
    herald = Herald()
    await consented(herald, "user-42", "shop-account-9")
    # The link a promotional email to user-42 carried.
    status = await herald.send(dispatch("user-42", "email", category="promotional", email=MAILBOX))
    assert status.status is Status.SENT
    link = herald.email.sent[0].headers["List-Unsubscribe"].strip("<>")
    parts = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["a"] == address_key(SECRET, "email", MAILBOX)

    answer = await Unsubscribes(herald.ledger, SECRET, herald.metrics).handle("user-42", query, "POST")

    assert answer.status == 200
    for recipient_id in ("user-42", "shop-account-9"):
        routed = herald.route("offer.loyalty", person(recipient_id, email=MAILBOX), OFFER, "email")
        assert (routed.outcome, routed.suppressed) == ("suppressed", "consent")
        status = await herald.send(dispatch(recipient_id, "email", category="promotional", email=MAILBOX))
        assert (status.status, status.detail) == (Status.SUPPRESSED, "consent")
    # Transactional email is not promotional: it still goes.
    assert herald.check("shop-account-9", "transactional", "email", MAILBOX) is None
    assert herald.check("shop-account-9", "promotional", "email", "other@example.com") is None


async def test_address_unsubscribe__a_later_opt_in_of_a_recipient_lifts_it_for_that_recipient() -> None:
    herald = Herald()
    await consented(herald, "user-42", "shop-account-9")
    link = unsubscribe_link(SECRET, PUBLIC, "user-42", address_key=address_key(SECRET, "email", MAILBOX))
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    herald.clock.advance(minutes=1)
    await Unsubscribes(herald.ledger, SECRET, herald.metrics).handle("user-42", query, "POST")

    herald.clock.advance(days=3)
    await consented(herald, "user-42")  # the person subscribes again (`herald prefs set --promotional email=yes`)

    assert herald.check("user-42", "promotional", "email", MAILBOX) is None
    assert herald.check("shop-account-9", "promotional", "email", MAILBOX) == "consent"  # consented before


async def test_address_unsubscribe__links_without_the_mailbox_still_work_for_their_recipient() -> None:
    herald = Herald()
    await consented(herald, "user-42", "shop-account-9")
    query = {k: v[0] for k, v in parse_qs(urlsplit(unsubscribe_link(SECRET, PUBLIC, "user-42")).query).items()}

    answer = await Unsubscribes(herald.ledger, SECRET, herald.metrics).handle("user-42", query, "POST")

    assert answer.status == 200
    assert herald.check("user-42", "promotional", "email", MAILBOX) == "consent"
    assert herald.check("shop-account-9", "promotional", "email", MAILBOX) is None  # no mailbox named


TAMPERED = [
    ("other-mailbox", {"a": "sha256:" + "0" * 64}),
    ("not-a-key", {"a": "ana@example.com"}),
    ("mailbox-dropped-signature-kept", {"a": ""}),
]


@pytest.mark.parametrize("change", [c[1] for c in TAMPERED], ids=[c[0] for c in TAMPERED])
async def test_address_unsubscribe__a_tampered_mailbox_is_403_and_changes_nothing(change: dict[str, str]) -> None:
    herald = Herald()
    link = unsubscribe_link(SECRET, PUBLIC, "user-42", address_key=address_key(SECRET, "email", MAILBOX))
    query = {**{k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}, **change}

    answer = await Unsubscribes(herald.ledger, SECRET, herald.metrics).handle("user-42", query, "POST")

    assert answer.status == 403
    assert herald.consent_store.data == {} and herald.ledger.get("user-42") is None


async def test_address_unsubscribe__the_page_posts_back_the_mailbox() -> None:
    herald = Herald()
    link = unsubscribe_link(SECRET, PUBLIC, "user-42", address_key=address_key(SECRET, "email", MAILBOX))
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}

    page = await Unsubscribes(herald.ledger, SECRET, herald.metrics).handle("user-42", query, "GET")

    assert urlencode({"a": address_key(SECRET, "email", MAILBOX)}).encode() in page.body  # in the form's action
    assert herald.consent_store.data == {}


async def test_address_unsubscribe__the_providers_unsubscribe_event_holds_for_an_unknown_mailbox() -> None:
    herald = Herald()
    await consented(herald, "shop-account-9")
    receiver = _Receiver(WebhookResult(statuses=[_Addressed(Status.UNSUBSCRIBED, "ANA@example.com")]))
    hearback = herald.hearing({("email", "sendgrid"): receiver})

    answer = await hearback.handle("email", "sendgrid", WebhookRequest(method="POST", url=PUBLIC, headers={},
                                                                       query={}, body=b"[]"))

    assert answer.status == 200
    assert herald.check("shop-account-9", "promotional", "email", MAILBOX) == "consent"


class _Addressed:
    """A receipt with the `address` a provider fills (SendGrid's `email`)."""

    def __init__(self, status: Status, address: str) -> None:
        self.message_id: str | None = None
        self.provider_message_id = "SG1"
        self.status = status
        self.vendor_status = "unsubscribe"
        self.detail: str | None = None
        self.at: datetime | None = None
        self.address = address
        self.recipient_id: str | None = None
        self.delivery_id: str | None = None


class _Receiver:
    name = "sendgrid"
    channel = "email"

    def __init__(self, result: WebhookResult) -> None:
        self.result = result

    def verify_webhook(self, request: WebhookRequest) -> bool:
        return True

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult:
        return self.result


# --- WhatsApp: the number's own record, on its own channel ------------------------------------------------------


async def test_address_stop__whatsapp_number_without_plus_matches_the_events_number() -> None:
    herald = Herald()
    message = InboundMessage(channel="whatsapp", sender="34600111222", text="STOPP")
    receiver = _Receiver(WebhookResult(inbound=[message]))
    hearback = herald.hearing({("whatsapp", "meta"): receiver})

    await hearback.handle("whatsapp", "meta", WebhookRequest(method="POST", url=PUBLIC, headers={}, query={},
                                                             body=b"{}"))

    assert herald.check("anyone", "transactional", "whatsapp", "+34 600 111 222") == "opted_out"
    assert herald.check("anyone", "transactional", "sms", NUMBER) is None
