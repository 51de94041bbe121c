"""The message timeline on a running worker: a sent and a suppressed message, looked up on the admin port by
message id, event id and idempotency key within seconds of their statuses, and printed by `herald trace`."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from consumers.cli.publish import make_event
from consumers.identity import message_id
from schemas.catalog import Catalog
from schemas.settings import Settings
from schemas.status import Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

ANA = {"id": "user-ana", "email": "ana@example.com", "locale": "es-ES"}


def herald(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consumers", *args], env={**os.environ, **env, "COLUMNS": "100"},
                          capture_output=True, text=True, timeout=60)


async def poll(client: httpx.AsyncClient, url: str, done: Any, timeout: float = 10.0, **kwargs: Any
               ) -> httpx.Response:
    """GET `url` until `done(response)`; the last response."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(url, **kwargs)
        if done(response) or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


async def test_timeline__sent_and_suppressed_messages_on_the_admin_port_and_in_herald_trace(stack: Stack) -> None:
    token = secrets.token_urlsafe(32)
    stack.start_worker(HERALD_ADMIN_TOKEN=token)
    catalog = Catalog.load(stack.settings.catalog)  # type: ignore[arg-type]
    order = make_event("order.confirmed", ANA, catalog.types["order.confirmed"].sample, source="it",
                       idempotencykey="order-1001-confirmed", tenant="acme")
    offer = make_event("offer.loyalty", ANA, catalog.types["offer.loyalty"].sample, source="it",
                       idempotencykey="winter-offer-ana", tenant="acme")  # promotional, no consent: suppressed
    await stack.publish([order, offer])
    await stack.wait_statuses(lambda ss: {Status.SENT, Status.SUPPRESSED} <= {s.status for s in ss}, timeout=30)
    settled = time.monotonic()
    sent_id = message_id("acme", "order-1001-confirmed", "email")
    suppressed_id = message_id("acme", "winter-offer-ana", "event")

    admin = f"http://127.0.0.1:{stack.settings.admin_port}"
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=admin, timeout=10) as client:
        # Within seconds of the statuses being published.
        answer = await poll(client, f"/messages/{sent_id}", headers=auth,
                            done=lambda r: r.status_code == 200 and len(r.json()["statuses"]) >= 2)
        assert answer.status_code == 200, (answer.status_code, answer.text, stack.worker_log())
        assert time.monotonic() - settled < 10
        body = answer.json()
        assert (body["message_id"], body["event_id"], body["event_type"]) == (sent_id, order["id"],
                                                                              "order.confirmed")
        assert [s["status"] for s in body["statuses"]] == ["accepted", "sent"]
        assert body["statuses"][1]["provider"] == "smtp" and body["statuses"][1]["attempt"] == 1

        by_key = await poll(client, "/messages", headers=auth, params={"idempotency_key": "winter-offer-ana"},
                            done=lambda r: r.status_code == 200)
        [suppressed] = by_key.json()["messages"]
        assert suppressed["message_id"] == suppressed_id and suppressed["event_type"] == "offer.loyalty"
        assert [(s["status"], s["detail"]) for s in suppressed["statuses"]] == [("suppressed", "consent")]
        by_event = await client.get("/messages", headers=auth, params={"event_id": order["id"]})
        assert [m["message_id"] for m in by_event.json()["messages"]] == [sent_id]

        assert (await client.get(f"/messages/{sent_id}")).status_code == 401
        assert (await client.get(f"/messages/{sent_id}", headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await client.get("/messages/msg-000000000000000000000000", headers=auth)).status_code == 404

    # `herald trace` reads the topic itself: no worker or token needed.
    env = Settings.as_env(stack.settings)
    traced = await asyncio.to_thread(herald, "trace", sent_id, env=env)
    assert traced.returncode == 0, traced.stderr
    rows = [line for line in traced.stdout.splitlines() if line[:4].isdigit()]
    assert [row.split()[2] for row in rows] == ["accepted", "sent"], traced.stdout
    assert "smtp" in rows[1] and order["id"] in traced.stdout and "ana@example.com" not in traced.stdout
    by_key_trace = await asyncio.to_thread(herald, "trace", "--key", "winter-offer-ana", env=env)
    assert by_key_trace.returncode == 0 and "suppressed" in by_key_trace.stdout and "consent" in by_key_trace.stdout
    unknown = await asyncio.to_thread(herald, "trace", "msg-000000000000000000000000", env=env)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.strip().splitlines() == [
        f"error: no status of message msg-000000000000000000000000 in {stack.settings.topic('status')} over the "
        "last 7 days"]
