"""Outbound status webhooks on a running worker: two tenants register an endpoint each through the HTTP API, events
of both are published, and each endpoint (a real HTTP server on loopback) receives every status record of its own
tenant, byte for byte and validly signed, and none of the other's; an endpoint that answers 503 twice still gets
every one of its statuses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
from aiohttp import web

from consumers.cli.publish import make_event
from consumers.dev.broker import free_port
from consumers.pipeline.status_webhooks import webhook_id
from schemas.catalog import Catalog
from schemas.settings import Settings
from schemas.status import DeliveryStatus, Status
from tests.integration.harness import Stack
from tests.unit.test_status_webhooks import reference_verify

pytestmark = pytest.mark.integration

KEYS = {"acme": "it-acme-status-hooks-3f9c2a71d0b8", "globex": "it-globex-status-hooks-77a1e0c94b2d"}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Endpoints:
    """One loopback HTTP server; `/acme` and `/globex` record what they get. `/globex` answers 503 to its first two
    requests."""

    port: int
    got: dict[str, list[Received]] = field(default_factory=lambda: {"acme": [], "globex": []})
    delivered: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"acme": {}, "globex": {}})  # 2xx, by id
    refusals: dict[str, int] = field(default_factory=lambda: {"acme": 0, "globex": 2})

    async def handle(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        self.got[tenant].append(Received(dict(request.headers), await request.read()))
        if self.refusals[tenant] > 0:
            self.refusals[tenant] -= 1
            return web.Response(status=503)
        self.delivered[tenant][request.headers["webhook-id"]] = self.got[tenant][-1].body
        return web.Response(status=204)

    def url(self, tenant: str) -> str:
        return f"http://127.0.0.1:{self.port}/{tenant}"


@pytest.fixture
async def endpoints() -> AsyncIterator[Endpoints]:
    served = Endpoints(free_port())
    application = web.Application()
    application.router.add_post("/{tenant}", served.handle)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", served.port).start()
    yield served
    await runner.cleanup()


async def test_status_webhooks__each_tenant_receives_exactly_its_own_statuses_signed(stack: Stack,
                                                                                       endpoints: Endpoints) -> None:
    stack.start_worker(HERALD_API_KEYS=",".join(f"{t}={k}" for t, k in KEYS.items()),
                       HERALD_WEBHOOK_ALLOW_PRIVATE="true")
    base = f"http://127.0.0.1:{stack.settings.web_port}"
    assert stack.settings.catalog is not None
    catalog = Catalog.load(stack.settings.catalog)
    secrets: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for tenant, key in KEYS.items():
            auth = {"Authorization": f"Bearer {key}"}
            created = await client.put(f"{base}/v1/webhooks/status", json={"url": endpoints.url(tenant)},
                                       headers=auth)
            assert created.status_code == 201, created.text
            secrets[tenant] = created.json()["secret"]
            shown = await client.get(f"{base}/v1/webhooks/status", headers=auth)
            assert shown.json()["url"] == endpoints.url(tenant) and "secret" not in shown.json()
        for tenant, key in KEYS.items():
            batch = [make_event(event_type, {"id": f"{tenant}-{n}", "email": f"{tenant}{n}@example.org"},
                                catalog.types[event_type].sample, source="it/status-hooks")
                     for n, event_type in enumerate(["order.confirmed", "shipping.dispatched", "password.reset"])]
            answer = await client.post(f"{base}/v1/events", json=batch, headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 202, answer.text

    def all_sent(statuses: list[DeliveryStatus]) -> bool:
        return sum(s.status is Status.SENT for s in statuses) >= 6

    await stack.wait_statuses(all_sent, timeout=40)

    # Every status record of herald.status, by tenant, under the webhook id its record's place gives it.
    expected: dict[str, dict[str, bytes]] = {"acme": {}, "globex": {}}
    deadline = time.monotonic() + 40
    while True:
        expected = {"acme": {}, "globex": {}}
        for record in await stack.read("status"):
            tenant = orjson.loads(record.value).get("tenant")
            expected[tenant][webhook_id(record.topic, record.partition, record.offset)] = record.value
        got = endpoints.delivered
        if got == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    for tenant, records in expected.items():  # each tenant's 3 messages, accepted then sent (at least)
        kinds = [orjson.loads(value)["status"] for value in records.values()]
        assert kinds.count("accepted") >= 3 and kinds.count("sent") == 3, (tenant, kinds)
    assert got == expected, stack.worker_log()  # each its own, all of them, byte for byte, none of the other's
    assert {r.headers["webhook-id"] for rs in endpoints.got.values() for r in rs} == {*got["acme"], *got["globex"]}
    for tenant, received in endpoints.got.items():
        for request in received:
            assert reference_verify(secrets[tenant], httpx.Headers(request.headers), request.body)
            assert not reference_verify(secrets["globex" if tenant == "acme" else "acme"],
                                        httpx.Headers(request.headers), request.body)
    # The two 503s were retried: two more requests than statuses, under ids it had already been sent.
    assert len(endpoints.got["globex"]) == len(expected["globex"]) + 2
    assert len(endpoints.got["acme"]) == len(expected["acme"])
    assert await stack.read("webhooks.deadletter") == []


async def test_status_webhooks__dead_letters_of_a_gone_endpoint_are_listed_and_replayed_under_their_ids(
        stack: Stack) -> None:
    gone = True
    received: list[tuple[str, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        if gone:
            return web.Response(status=410)
        received.append((request.headers["webhook-id"], await request.read()))
        return web.Response(status=204)

    application = web.Application()
    application.router.add_post("/acme", handle)
    runner = web.AppRunner(application)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        stack.start_worker(HERALD_API_KEYS=f"acme={KEYS['acme']}", HERALD_WEBHOOK_ALLOW_PRIVATE="true")
        base = f"http://127.0.0.1:{stack.settings.web_port}"
        auth = {"Authorization": f"Bearer {KEYS['acme']}"}
        assert stack.settings.catalog is not None
        sample = Catalog.load(stack.settings.catalog).types["order.confirmed"].sample
        async with httpx.AsyncClient(timeout=10) as client:
            created = await client.put(f"{base}/v1/webhooks/status", json={"url": f"http://127.0.0.1:{port}/acme"},
                                       headers=auth)
            assert created.status_code == 201, created.text
            event = make_event("order.confirmed", {"id": "acme-1", "email": "acme1@example.org"}, sample)
            assert (await client.post(f"{base}/v1/events", json=[event], headers=auth)).status_code == 202
        await stack.wait_statuses(lambda ss: any(s.status is Status.SENT for s in ss), timeout=30)

        # 410 is final: every status of the message (accepted, sent) is dead-lettered at once.
        env = {**os.environ, **Settings.as_env(stack.settings)}

        async def herald(*args: str) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "consumers", *args], env=env,
                                           capture_output=True, text=True, timeout=60)

        letters: list[dict[str, object]] = []
        for _ in range(40):
            listed = await herald("dlq", "webhooks", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            letters = [orjson.loads(line) for line in listed.stdout.splitlines()]
            if {letter["status"] for letter in letters} >= {"accepted", "sent"}:
                break
            await asyncio.sleep(0.5)
        assert letters and all(letter["tenant"] == "acme" and letter["reason"] == "gone" for letter in letters)

        gone = False  # the endpoint is back
        replayed = await herald("dlq", "webhooks", "replay", "--tenant", "acme")
        assert replayed.returncode == 0, replayed.stderr
        assert f"replayed {len(letters)} status webhook dead letter" in replayed.stdout
        deadline = time.monotonic() + 30  # the owning worker reads its outbox every 10 s
        while len(received) < len(letters) and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        assert sorted(received) == sorted((str(letter["webhook_id"]), str(letter["body"]).encode())
                                          for letter in letters), stack.worker_log()
    finally:
        await runner.cleanup()
