"""Issue 16 acceptance (surveys by keypad and text): a `service.survey` call answered with keypad 4 and a
`service.survey` SMS answered "5", through the provider simulator's Twilio, both land on herald.replies as
`service.survey.rated` with scores 4 and 5 (keyed by the recipient id, with the address only as its keyed hash),
the SMS is thanked, and the console's rates page shows the distribution read back from the topic."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

import httpx
import orjson
import pytest

from consumers.cli.asyncapi_topics import rating_model
from consumers.cli.publish import make_event
from consumers.dev.samples import ANA, JONAS
from consumers.dev.simulator.app import SimServer
from consumers.state.preferences import address_key
from schemas.catalog import Catalog
from schemas.status import Status
from tests.integration.harness import Stack
from tests.integration.test_channels import SIM_ENV, configure

pytestmark = pytest.mark.integration

SURVEY = "service.survey"


async def ratings(stack: Stack, wanted: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The `<type>.rated` records on herald.replies, once there are `wanted` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for r in await stack.read("replies") if (e := orjson.loads(r.value))["type"].endswith(".rated")]
        if len(found) >= wanted or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("sim_stack", ["sms=twilio;voice=twilio"], indirect=True)
async def test_surveys__keypad_4_and_sms_5_are_published_as_ratings(sim_stack: tuple[Stack, SimServer]) -> None:
    stack, sim = sim_stack
    # Jonas presses 4 on the call; Ana texts "5" to the survey (only once: not to its thank-you too).
    await configure(sim, {"recipients": {JONAS["phone"]: {"reply_digits": "4"},
                                         ANA["phone"]: {"reply_text": "5", "reply_times": 1}}})
    token = secrets.token_urlsafe(32)
    stack.start_worker(**SIM_ENV, HERALD_ADMIN_TOKEN=token)
    sample = Catalog.load(stack.settings.catalog).types[SURVEY].sample  # type: ignore[arg-type]
    call = make_event(SURVEY, JONAS, {**sample, "ticket_id": "T-1"}, source="it/surveys", channels=["voice"],
                      tenant="acme")
    text = make_event(SURVEY, ANA, {**sample, "ticket_id": "T-2"}, source="it/surveys", channels=["sms"],
                      tenant="acme")
    await stack.publish([call, text])

    found = await ratings(stack, 2)
    assert len(found) == 2, stack.worker_log()
    by_ticket = {e["data"]["ticket_id"]: e for e in found}
    keypad, sms = by_ticket["T-1"], by_ticket["T-2"]
    for rating in found:
        rating_model().model_validate(rating)  # the shape herald asyncapi documents
        assert rating["type"] == "service.survey.rated" and rating["tenant"] == "acme"
        assert (rating["data"]["scale"], rating["data"]["event_id"]) == (5, call["id"] if rating is keypad
                                                                         else text["id"])
    assert (keypad["data"]["score"], keypad["data"]["channel"], keypad["data"]["answer"]) == (4, "voice", "4")
    assert (sms["data"]["score"], sms["data"]["channel"], sms["data"]["answer"]) == (5, "sms", "5")
    secret = stack.settings.secret.get_secret_value().encode()
    assert keypad["data"]["recipient"] == address_key(secret, "voice", JONAS["phone"])
    assert sms["data"]["recipient"] == address_key(secret, "sms", ANA["phone"])
    records = [r for r in await stack.read("replies") if b".rated" in r.value]
    assert sorted(r.key for r in records) == sorted([JONAS["id"].encode(), ANA["id"].encode()])
    assert not any(p.lstrip("+").encode() in r.value for r in records for p in (JONAS["phone"], ANA["phone"]))

    # Both messages were replied to; Ana is thanked by SMS (the call thanked Jonas before hanging up).
    def settled(statuses: list[Any]) -> bool:
        replied = {s.message_id for s in statuses if s.status is Status.REPLIED and s.event_type == SURVEY}
        return len(replied) == 2 and any(s.event_type == "reply.acknowledged" and s.status is Status.SENT
                                         for s in statuses)

    await stack.wait_statuses(settled, timeout=30)
    thanked = [s for s in stack.statuses if s.event_type == "reply.acknowledged" and s.status is Status.SENT]
    assert [s.channel for s in thanked] == ["sms"]

    # The console's rates page reads them back from herald.replies.
    admin = f"http://127.0.0.1:{stack.settings.admin_port}"
    async with httpx.AsyncClient(base_url=admin, timeout=10,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        deadline, html = time.monotonic() + 20, ""
        while time.monotonic() < deadline and 'data-ratings="service.survey · sms"' not in html:
            html = (await client.get("/console/rates", params={"window": "1h", "group": "channel",
                                                                "grouped": "1"})).text
            await asyncio.sleep(0.5)
    for channel, score in (("voice", 4), ("sms", 5)):
        row = re.search(rf'<tr data-ratings="service.survey · {channel}">(.*?)</tr>', html, re.DOTALL)
        assert row, html[-3000:]
        assert re.search(r'data-count="ratings">1<', row.group(1))
        assert re.search(rf'data-score="{score}">1\s*<span class="rates-n">100.0%', row.group(1))
