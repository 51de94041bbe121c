"""The HTTP trigger API on a running worker: events POSTed to the public port reach the SMTP sink, on both lanes,
under the message ids the answer gave, and a retry with the same Idempotency-Key sends nothing again."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from consumers.cli.publish import make_event
from schemas.catalog import Catalog
from schemas.status import DeliveryStatus, Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

KEY = "it-acme-api-key-3f9c2a71d0b84e56"


async def test_http_api__posted_batch_is_emailed_once_under_the_answered_ids(stack: Stack) -> None:
    assert stack.settings.catalog is not None
    catalog = Catalog.load(stack.settings.catalog)
    batch = [make_event(event_type, {"id": f"user-{n}", "email": f"api{n}@example.org"},
                        catalog.types[event_type].sample, source="it/http")
             for n, event_type in enumerate(["order.confirmed", "password.reset"])]  # normal and critical lane
    stack.start_worker(HERALD_API_KEYS=f"acme={KEY}")
    url = f"http://127.0.0.1:{stack.settings.web_port}/v1/events"
    headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": "it-batch-1"}
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.post(url, json=batch, headers=headers)
        again = await client.post(url, json=batch, headers=headers)
        refused = await client.post(url, json=batch, headers={"Authorization": "Bearer nope"})
    assert first.status_code == 202, first.text
    assert again.status_code == 202 and again.json() == first.json()
    assert refused.status_code == 401
    answered: dict[str, Any] = {e["event_id"]: e["message_ids"]["email"] for e in first.json()["events"]}

    def sent(statuses: list[DeliveryStatus]) -> bool:
        return {s.message_id for s in statuses if s.status is Status.SENT} >= set(answered.values())

    await stack.wait_statuses(sent, timeout=25)
    by_event = {s.event_id: s.message_id for s in stack.statuses if s.status is Status.SENT}
    assert by_event == answered
    assert all(s.tenant == "acme" for s in stack.statuses if s.status is Status.SENT)
    await asyncio.sleep(0.5)  # a second copy, had the retry published one, would be on its way by now
    assert sorted(m["To"].addresses[0].addr_spec for m in stack.sink.snapshot()) == [
        "api0@example.org", "api1@example.org"]
