"""Issue 13 acceptance: a provider rate limit holds for the whole worker group, measured at the simulator.

Two `herald worker` processes of one consumer group share `push.fcm=5/s`: each paces at the share of the
partitions it owns (`herald_rate_limit_share`; 3 partitions: 1/3 and 2/3), so together they stay at 5/s. Without
the share each would send 5/s and the simulator would see about 10/s while both have a backlog.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.cli.publish import make_event
from consumers.dev.simulator.app import SimServer
from schemas.catalog import Catalog
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

CATALOG = Catalog.load(Path(__file__).resolve().parents[2] / "templates" / "catalog.yaml")
LIMIT = 5.0  # sends per second, for the group
SENDS = 75  # about 15 s at the limit: it binds for the whole run
WINDOW = 3.0  # seconds
# The group's buckets hold one second of the limit between them (each worker its share of it), all of which may go
# at once on top of the rate; two more for the HTTP round trips bunching arrivals at the simulator.
BURST_ALLOWANCE = LIMIT * 1 + 2


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value in a /metrics page (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def scrape(client: httpx.AsyncClient, port: str) -> str:
    response = await client.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return response.text


async def shares(client: httpx.AsyncClient, ports: list[str], timeout: float = 30) -> list[float]:
    """Each worker's share once every worker owns partitions and the shares add up to the whole group."""
    deadline = time.monotonic() + timeout
    seen: list[float] = []
    while time.monotonic() < deadline:
        seen = [metric(await scrape(client, port), "herald_rate_limit_share") for port in ports]
        if all(s > 0 for s in seen) and sum(seen) == pytest.approx(1):
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"the workers never shared the partitions: shares {seen}")


def peak(times: list[float], window: float) -> int:
    """The most sends within any `window` seconds."""
    return max(sum(1 for t in times[i:] if t - start <= window) for i, start in enumerate(times))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sim_stack", ["email=smtp;push=fcm"], indirect=True)
async def test_rate_limit_group__two_workers_together_stay_within_5_per_second_at_the_simulator(
        sim_stack: tuple[Stack, SimServer]) -> None:
    stack, sim = sim_stack
    env = {"HERALD_RATE_LIMITS": "push.fcm=5/s"}
    other = stack.other_worker_env("worker-b")
    # In threads: the simulator serves on this loop, and a worker's readiness is waited for synchronously.
    await asyncio.to_thread(stack.start_worker, **env)
    await asyncio.to_thread(stack.start_worker, **env, **other)
    ports = [str(stack.settings.admin_port), other["HERALD_ADMIN_PORT"]]
    async with httpx.AsyncClient(timeout=5) as client:
        owned = await shares(client, ports)

        sample = CATALOG.types["alert.weather"].sample
        events = [make_event("alert.weather", {"id": f"user-{i}", "push_token": f"fcm-token-{i}", "locale": "en"},
                             sample, source="it/rate-limit-group", channels=["push"]) for i in range(SENDS)]
        await stack.publish(events)

        deadline = time.monotonic() + 45
        while len(requests := [r for r in sim.sim.requests if r["vendor"] == "fcm"]) < SENDS:
            assert time.monotonic() < deadline, f"{len(requests)} of {SENDS} sends in 45 s\n{stack.worker_log()}"
            await asyncio.sleep(0.2)
        pages = [await scrape(client, port) for port in ports]

    times = sorted(datetime.fromisoformat(r["received_at"]).timestamp() for r in requests)
    span = times[-1] - times[0]
    busiest = peak(times, WINDOW)
    per_worker = [metric(page, "herald_sends_total", channel="push", provider="fcm", result="sent")
                  for page in pages]
    waited = [metric(page, "herald_rate_limit_wait_seconds_total", channel="push", provider="fcm")
              for page in pages]
    print(f"shares {owned}, {len(times)} sends in {span:.1f} s, at most {busiest} in {WINDOW:.0f} s, "
          f"by worker {per_worker}, waited {waited} s")

    assert len(times) == SENDS and all(r["status"] == 200 for r in requests)
    assert busiest <= LIMIT * WINDOW + BURST_ALLOWANCE
    # The whole run, past the saved-up second: no faster than the limit.
    assert (SENDS - BURST_ALLOWANCE) / span <= LIMIT
    # Both workers sent, and the limit held back each of them.
    assert all(n > 0 for n in per_worker) and sum(per_worker) == SENDS
    assert all(w > 0 for w in waited)
