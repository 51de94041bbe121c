"""Issue 4 acceptance: every channel and provider on its real wire format, through the provider simulator.

event -> send -> signed receipt -> `delivered`/`read` on herald.status (keyed by message id); inbound replies
and keypad digits -> herald.replies; a bad signature -> 403 and no status; permanent errors are not retried.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from consumers.cli.publish import make_event
from consumers.dev.samples import ANA, EMMA, JONAS
from consumers.dev.simulator.app import SimServer
from consumers.inbound.hearback import REPLY_TYPE
from schemas.catalog import Catalog
from schemas.status import Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

CATALOG = Catalog.load(Path(__file__).resolve().parents[2] / "templates" / "catalog.yaml")
SIM_ENV = {"HERALD_WEBHOOK_ALLOW_PRIVATE": "true"}


def soon() -> str:
    """An appointment in three hours: both reminder times have passed, so the reminder goes now."""
    return (datetime.now(UTC) + timedelta(hours=3)).isoformat()


def event(event_type: str, to: dict, channels: list[str], **payload: object) -> dict:
    return make_event(event_type, to, {**CATALOG.types[event_type].sample, **payload}, source="it/channels",
                      channels=channels)


def reached(statuses: list, cases: dict[str, dict], expected: dict[str, tuple[Status, ...]]) -> bool:
    """Every case's message has reached its expected statuses (receipts carry only the message id)."""
    accepted = {s.event_id: s.message_id for s in statuses if s.status is Status.ACCEPTED}
    seen = {(s.message_id, s.status) for s in statuses}
    return all(cases[name]["id"] in accepted and all((accepted[cases[name]["id"]], st) in seen for st in wanted)
               for name, wanted in expected.items())


def timeline(stack: Stack, message_id: str) -> list[Status]:
    return [s.status for s in stack.statuses if s.message_id == message_id]


def message_of(stack: Stack, event_id: str) -> str:
    return next(s.message_id for s in stack.statuses if s.event_id == event_id and s.status is Status.ACCEPTED)


async def configure(sim: SimServer, behaviour: dict) -> None:
    async with httpx.AsyncClient() as client:
        (await client.post(f"{sim.url}/_sim/config", json=behaviour)).raise_for_status()


async def sim_requests(sim: SimServer, **query: str) -> list[dict]:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{sim.url}/_sim/requests", params=query)).json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("sim_stack", ["email=smtp;sms=twilio;voice=twilio;whatsapp=meta;push=fcm;"
                                       "webhook=standard"], indirect=True)
async def test_channels__twilio_meta_fcm_and_webhooks_round_trip(sim_stack: tuple[Stack, SimServer]) -> None:
    stack, sim = sim_stack
    await configure(sim, {"recipients": {ANA["phone"]: {"reply_text": "SI"}, JONAS["phone"]: {"reply_digits": "1"}},
                          "rate_limit": {"count": 0}})
    business = {"id": "acme-erp", "webhook_url": f"{sim.url}/customer/webhook", "locale": "en"}
    unregistered = {**EMMA, "id": "user-gone", "push_token": "unregistered-token-1"}
    wrong_number = {**ANA, "id": "user-0000", "phone": "+34600110000"}
    cases = {
        "sms": event("otp.requested", ANA, ["sms"]),
        "voice": event("otp.requested", JONAS, ["voice"]),
        "whatsapp": event("appointment.reminder", ANA, ["whatsapp"], appointment_at=soon()),
        "push": event("alert.weather", EMMA, ["push"]),
        "webhook": event("order.confirmed", business, ["webhook"]),
        "push_unregistered": event("alert.weather", unregistered, ["push"]),
        "sms_permanent": event("otp.requested", wrong_number, ["sms"]),
        "invoice_sms": event("invoice.issued", EMMA, ["sms"]),
    }
    stack.start_worker(**SIM_ENV)
    await stack.publish(cases.values())

    last_expected = {"sms": (Status.DELIVERED,), "voice": (Status.DELIVERED, Status.REPLIED),
                     "whatsapp": (Status.READ,), "push": (Status.SENT,), "webhook": (Status.SENT,),
                     "push_unregistered": (Status.FAILED, Status.DEAD_LETTERED),
                     "sms_permanent": (Status.FAILED, Status.DEAD_LETTERED),
                     "invoice_sms": (Status.DELIVERED,)}
    await stack.wait_statuses(lambda ss: reached(ss, cases, last_expected), timeout=60)
    ids = {name: message_of(stack, e["id"]) for name, e in cases.items()}

    assert timeline(stack, ids["sms"])[:3] == [Status.ACCEPTED, Status.SENT, Status.DELIVERED]
    sms_sent = next(s for s in stack.statuses if s.message_id == ids["sms"] and s.status is Status.SENT)
    assert (sms_sent.provider, sms_sent.detail) == ("twilio", "UCS-2, 1 segment")  # "código" is not GSM-7
    assert sms_sent.segments == 1 and sms_sent.provider_message_id
    # The receipt went through the owner of the message's send record, which described it as `sent` did.
    sms_delivered = next(s for s in stack.statuses if s.message_id == ids["sms"] and s.status is Status.DELIVERED)
    assert (sms_delivered.event_type, sms_delivered.channel, sms_delivered.provider, sms_delivered.recipient,
            sms_delivered.provider_message_id) == ("otp.requested", "sms", "twilio", sms_sent.recipient,
                                                   sms_sent.provider_message_id)
    assert Status.DELIVERED in timeline(stack, ids["voice"])
    assert Status.REPLIED in timeline(stack, ids["voice"])
    assert Status.READ in timeline(stack, ids["whatsapp"])
    assert timeline(stack, ids["push"]) == [Status.ACCEPTED, Status.SENT]
    assert timeline(stack, ids["webhook"]) == [Status.ACCEPTED, Status.SENT]

    # Permanent provider errors: failed with the provider's code, one request only (no retry).
    gone = [s for s in stack.statuses if s.message_id == ids["push_unregistered"]]
    assert [s.status for s in gone] == [Status.ACCEPTED, Status.FAILED, Status.DEAD_LETTERED]
    assert gone[1].detail == "unregistered"
    bad = [s for s in stack.statuses if s.message_id == ids["sms_permanent"]]
    assert [s.status for s in bad] == [Status.ACCEPTED, Status.FAILED, Status.DEAD_LETTERED]
    assert bad[1].detail == "21614"  # not a mobile number
    assert len([r for r in await sim_requests(sim, vendor="twilio") if r.get("recipient") == "+34600110000"]) == 1

    # The business customer got one validly signed webhook.
    customer = await sim_requests(sim, vendor="customer")
    assert len(customer) == 1

    # Replies: the keypad digit (correlated to its call) and the texts.
    events = [orjson.loads(r.value) for r in await stack.read("replies")]
    replies = [e for e in events if e["type"] == REPLY_TYPE]
    digits = [r["data"] for r in replies if r["data"]["digits"]]
    assert digits and digits[0]["digits"] == "1" and digits[0]["message_id"] == ids["voice"]
    assert digits[0]["recipient_id"] == JONAS["id"]
    assert any(r["data"]["text"] == "SI" and r["data"]["channel"] in ("sms", "whatsapp") for r in replies)
    # Two-way: Ana's "SI" to the WhatsApp reminder means "confirmed" for upstream, and she is thanked.
    confirmed = [e for e in events if e["type"] == "appointment.reminder.confirmed"]
    assert confirmed and confirmed[0]["data"]["message_id"] == ids["whatsapp"]
    await stack.wait_statuses(lambda ss: any((s.event_type == "reply.acknowledged" and s.status is Status.READ)
                                             or (s.event_type == "reply.acknowledged" and s.status is Status.SENT)
                                             for s in ss), timeout=30)

    # The invoice SMS carries a signed link; Herald's web server serves the PDF behind it, and nothing else.
    [invoice_sms] = [r for r in await sim_requests(sim, vendor="twilio", kind="messages")
                     if "/documents/" in r["fields"].get("Body", "")]
    link = next(w for w in invoice_sms["fields"]["Body"].split() if "/documents/" in w)
    async with httpx.AsyncClient() as client:
        pdf = await client.get(link)
        forged = await client.get(link.replace("&s=", "&s=x"))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert forged.status_code == 403

    # A forged receipt is refused and changes nothing. (Counted for its message only: the simulator's receipts for
    # other messages, such as the acknowledgement's, may still be arriving.)
    async def sms_statuses() -> list[bytes]:
        return [r.value for r in await stack.read("status") if r.key == ids["sms"].encode()]

    before = await sms_statuses()
    forged = httpx.post(f"{stack.settings.public_url}/webhooks/sms/twilio?message_id={ids['sms']}",
                        data={"MessageSid": "SMx", "MessageStatus": "failed"},
                        headers={"X-Twilio-Signature": "bm90LWEtc2lnbmF0dXJl"})
    assert forged.status_code == 403
    assert await sms_statuses() == before


@pytest.mark.parametrize("sim_stack", ["email=sendgrid;sms=vonage"], indirect=True)
async def test_channels__vonage_and_sendgrid_round_trip_and_retriable_errors(
        sim_stack: tuple[Stack, SimServer]) -> None:
    stack, sim = sim_stack
    await configure(sim, {"recipients": {EMMA["email"]: {"open": True}}})
    cases = {"sms": event("otp.requested", ANA, ["sms"]), "email": event("order.confirmed", EMMA, ["email"])}
    stack.start_worker(**SIM_ENV)
    await stack.publish(cases.values())
    await stack.wait_statuses(lambda ss: reached(ss, cases, {"sms": (Status.DELIVERED,), "email": (Status.OPENED,)}),
                              timeout=60)
    ids = {name: message_of(stack, e["id"]) for name, e in cases.items()}
    assert timeline(stack, ids["sms"])[:3] == [Status.ACCEPTED, Status.SENT, Status.DELIVERED]
    assert Status.DELIVERED in timeline(stack, ids["email"])
    [request] = await sim_requests(sim, vendor="sendgrid")
    assert request.get("idempotency_key")

    # 429 with Retry-After, then success: marked retriable, retried, delivered.
    await configure(sim, {"rate_limit": {"count": 1, "retry_after": 1}})
    retry = event("otp.requested", JONAS, ["sms"])
    await stack.publish([retry])
    await stack.wait_statuses(lambda ss: any(s.event_id == retry["id"] and s.status is Status.SENT for s in ss)
                              and sum(s.status is Status.DELIVERED for s in ss) >= 3, timeout=60)
    mid = message_of(stack, retry["id"])
    retrying = [s for s in stack.statuses if s.message_id == mid and s.status is Status.RETRYING]
    assert retrying and retrying[0].error == "rate_limited"
