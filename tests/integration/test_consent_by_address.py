"""Issue 11, consent by address, on the real pipeline: a STOP from a number Herald has never sent to stops the SMS
already scheduled for it, and every later one to that number, whatever recipient id it is for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from channels.providers._twilio import TwilioSettings
from channels.signatures import twilio_signature
from consumers.cli.publish import make_event
from consumers.dev.simulator.app import SimServer
from schemas.status import Status
from tests.integration.harness import Stack
from tests.integration.test_channels import CATALOG, SIM_ENV, sim_requests

pytestmark = pytest.mark.integration

NUMBER = "+34600444555"
PERSON = {"id": "user-sol", "phone": NUMBER, "locale": "es-ES", "timezone": "Europe/Madrid", "name": "Sol"}


async def text_from(stack: Stack, number: str, body: str, sid: str) -> int:
    """An inbound SMS as Twilio posts it to Herald, signed with the account's auth token."""
    url = f"{stack.settings.public_url}/webhooks/sms/twilio"
    form = {"AccountSid": TwilioSettings().account_sid, "MessageSid": sid, "From": number, "To": "+15005550006",
            "Body": body, "NumMedia": "0"}
    signature = twilio_signature(TwilioSettings().auth_token.get_secret_value(), url, form)
    async with httpx.AsyncClient() as client:
        response = await client.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)
    return response.status_code


@pytest.mark.parametrize("sim_stack", ["email=smtp;sms=twilio"], indirect=True)
async def test_consent__stop_from_a_number_never_sent_to_stops_the_scheduled_sms(
        sim_stack: tuple[Stack, SimServer]) -> None:
    stack, sim = sim_stack
    shipping = CATALOG.types["shipping.dispatched"].sample
    due = datetime.now(UTC) + timedelta(seconds=10)
    scheduled = make_event("shipping.dispatched", PERSON, shipping, source="it", channels=["sms"],
                           sendat=due.isoformat())
    stack.start_worker(**SIM_ENV)
    await stack.publish([scheduled])
    await stack.wait_statuses(lambda ss: any(s.event_id == scheduled["id"] and s.status is Status.SCHEDULED
                                             for s in ss), timeout=60)

    assert await text_from(stack, NUMBER, "STOP", "SM00000000000000000000000000000001") == 200
    # After the STOP, the same number under another recipient id: refused when routed.
    later = make_event("shipping.dispatched", {**PERSON, "id": "user-sol-shop"}, shipping, source="it",
                       channels=["sms"])
    await stack.publish([later])

    def final(statuses: list, event_id: str) -> Status | None:
        done = [s for s in statuses if s.event_id == event_id and s.status in (Status.SUPPRESSED, Status.SENT)]
        return done[-1].status if done else None

    await stack.wait_statuses(lambda ss: final(ss, scheduled["id"]) and final(ss, later["id"]), timeout=60)
    for event in (scheduled, later):
        ended = [s for s in stack.statuses if s.event_id == event["id"] and s.status is Status.SUPPRESSED]
        assert [s.detail for s in ended] == ["opted_out"], event["id"]
        assert not any(s.event_id == event["id"] and s.status is Status.SENT for s in stack.statuses)
    assert datetime.now(UTC) >= due  # the scheduled one was held until its time, then stopped
    assert [r for r in await sim_requests(sim, vendor="twilio") if r.get("recipient") == NUMBER] == []
    log = stack.worker_log()
    assert "unknown_recipient" not in log and "opt keyword not applied" not in log
