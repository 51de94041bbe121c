"""Issue 16.1 on the real pipeline: a promotional SMS turned off through the preferences API is `suppressed` and never
reaches the provider while the same person's shipping email goes out; the link in a promotional email opens the
preference page, and what the person saves there is in the ledger and stops the next offer."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from consumers.cli.publish import make_event
from consumers.dev.simulator.app import SimServer
from consumers.state.kvstore import TopicStore
from consumers.state.preferences import PreferenceLedger
from schemas.settings import Settings
from schemas.status import DeliveryStatus, Status
from tests.integration.harness import Stack
from tests.integration.test_channels import CATALOG, SIM_ENV, sim_requests

pytestmark = pytest.mark.integration

KEY = "it-acme-preferences-key-7c1d9e20"
RITA = {"id": "user-rita", "email": "rita@example.org", "phone": "+34600777111", "locale": "es-ES",
        "timezone": "Europe/Madrid", "name": "Rita"}
CARL = {"id": "user-carl", "phone": "+34600777222", "locale": "es-ES", "timezone": "Europe/Madrid", "name": "Carl"}


@asynccontextmanager
async def ledger(settings: Settings) -> AsyncIterator[PreferenceLedger]:
    """The ledger over `herald.preferences`, as `herald prefs set` opens it."""
    store = TopicStore(settings, "preferences")
    try:
        opened = PreferenceLedger(store)
        await opened.ready()
        yield opened
        await store.flush()
    finally:
        await store.stop()


def final(statuses: list[DeliveryStatus], event_id: str) -> DeliveryStatus | None:
    done = [s for s in statuses if s.event_id == event_id and s.status in (Status.SUPPRESSED, Status.SENT)]
    return done[-1] if done else None


@pytest.mark.parametrize("sim_stack", ["email=smtp;sms=twilio"], indirect=True)
async def test_preferences_api__promotional_sms_turned_off_is_suppressed_while_the_shipping_email_goes(
        sim_stack: tuple[Stack, SimServer]) -> None:
    stack, sim = sim_stack
    async with ledger(stack.settings) as prefs:  # both consented to promotional SMS (`herald prefs set`)
        for person in (RITA, CARL):
            await prefs.set_promotional(person["id"], "sms", True, source="cli")
    stack.start_worker(**SIM_ENV, HERALD_API_KEYS=f"acme={KEY}")
    url = f"{stack.settings.public_url}/v1/recipients/{RITA['id']}/preferences"
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {KEY}"}) as client:
        changed = await client.patch(url, json={"topics": {"promotions": {"channels": {"sms": False}}}})
        assert changed.status_code == 200, changed.text
        assert (await client.get(url)).json()["topics"] == {"promotions": {"enabled": True, "channels": {"sms": False}}}
        refused = await client.put(url, json={"topics": {"account": {"enabled": False}}})
        assert refused.status_code == 422 and refused.json()["errors"][0]["error"] == "required_topic"

    offer, shipping = CATALOG.types["offer.loyalty"].sample, CATALOG.types["shipping.dispatched"].sample
    rita_offer = make_event("offer.loyalty", {**RITA, "email": None}, offer, source="it", tenant="acme")
    carl_offer = make_event("offer.loyalty", CARL, offer, source="it", tenant="acme")  # the same offer, no choice
    rita_shipping = make_event("shipping.dispatched", RITA, shipping, source="it", tenant="acme", channels=["email"])
    events = [rita_offer, carl_offer, rita_shipping]
    await stack.publish(events)
    await stack.wait_statuses(lambda ss: all(final(ss, e["id"]) for e in events), timeout=60)

    suppressed = final(stack.statuses, rita_offer["id"])
    assert suppressed is not None and suppressed.status is Status.SUPPRESSED
    assert (suppressed.detail, suppressed.tenant) == ("preference:promotions/sms", "acme")
    carl_sent, rita_sent = final(stack.statuses, carl_offer["id"]), final(stack.statuses, rita_shipping["id"])
    assert carl_sent is not None and (carl_sent.status, carl_sent.channel) == (Status.SENT, "sms")
    assert rita_sent is not None and (rita_sent.status, rita_sent.channel) == (Status.SENT, "email")
    texts = await sim_requests(sim, vendor="twilio")
    assert [r for r in texts if r.get("recipient") == RITA["phone"]] == []
    assert len([r for r in texts if r.get("recipient") == CARL["phone"]]) == 1
    [mail] = stack.sink.snapshot()
    assert mail["To"].addresses[0].addr_spec == RITA["email"]


async def test_preference_page__link_in_a_promotional_email_opens_the_page_and_a_saved_choice_is_in_the_ledger(
        stack: Stack) -> None:
    stack.settings = stack.settings.model_copy(update={"public_url": f"http://127.0.0.1:{stack.settings.web_port}"})
    async with ledger(stack.settings) as prefs:
        await prefs.set_promotional(RITA["id"], "email", True, source="cli")
    stack.start_worker()
    first = make_event("offer.loyalty", {**RITA, "phone": None}, CATALOG.types["offer.loyalty"].sample,
                       source="it", tenant="acme")
    await stack.publish([first])
    await stack.wait_statuses(lambda ss: final(ss, first["id"]) is not None, timeout=60)
    [mail] = stack.sink.snapshot()
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"(http://\S+/preferences/\S+)", text)
    assert found, text
    link = found.group(1)

    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(link)
        assert page.status_code == 200 and '<html lang="es">' in page.text, page.text
        assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
        ticked = re.findall(r'<input type="checkbox" name="on" value="([^"]+)" checked>', page.text)
        assert nonce and "promotions/email" in ticked
        token = link.rsplit("/", 1)[1]
        form = [("token", token), ("nonce", nonce.group(1)), *(("on", v) for v in ticked if v != "promotions/email")]
        saved = await client.post(link, content=urlencode(form).encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded", "Origin": "null", "Sec-Fetch-Site": "same-origin"})
        assert saved.status_code == 200 and "Tus preferencias se han guardado." in saved.text, saved.text

    stored = {r.key.decode(): orjson.loads(r.value) for r in await stack.read("preferences") if r.value}
    acme = stored[f"@acme/{RITA['id']}"]
    assert (acme["tenant"], acme["source"]) == ("acme", "page")
    assert acme["topics"] == {"promotions": {"enabled": True, "channels": {"email": False}}}

    second = make_event("offer.loyalty", {**RITA, "phone": None}, CATALOG.types["offer.loyalty"].sample,
                        source="it", tenant="acme")
    await stack.publish([second])
    await stack.wait_statuses(lambda ss: final(ss, second["id"]) is not None, timeout=60)
    stopped = final(stack.statuses, second["id"])
    assert stopped is not None and (stopped.status, stopped.detail) == (Status.SUPPRESSED,
                                                                        "preference:promotions/email")
    assert len(stack.sink.snapshot()) == 1
