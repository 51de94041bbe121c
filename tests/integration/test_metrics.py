"""Issue 14 acceptance, metrics: after a mixed run (normal and critical sends, a dead letter, a scheduled message),
a worker's admin `/metrics` carries every family an SRE needs, with the values the run implies."""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from consumers.cli.publish import make_event
from consumers.observe.metrics import herald_version
from schemas.catalog import Catalog
from schemas.status import DeliveryStatus, Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

Samples = dict[str, list[Sample]]


def scrape(url: str) -> Samples:
    """Every sample of /metrics by name."""
    samples: Samples = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    found = [s.value for s in samples.get(name, []) if labels.items() <= s.labels.items()]
    return sum(found) if found else None


async def scrape_until(url: str, settled: Callable[[Samples], bool], timeout: float) -> Samples:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        samples = await asyncio.to_thread(scrape, url)
        if settled(samples) or asyncio.get_running_loop().time() > deadline:
            return samples
        await asyncio.sleep(0.3)


async def test_metrics__every_family_present_with_its_values_after_a_mixed_run(stack: Stack) -> None:
    settings = stack.settings
    assert settings.catalog is not None
    catalog = Catalog.load(settings.catalog)
    stack.start_worker(HERALD_STATE_METRICS_INTERVAL="0.5")
    metrics_url = f"http://127.0.0.1:{settings.admin_port}/metrics"
    order = catalog.types["order.confirmed"].sample
    reset = catalog.types["password.reset"].sample
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    await stack.publish([make_event("order.confirmed", {"id": f"u{i}", "email": f"u{i}@example.org"}, order)
                         for i in range(3)]
                        + [make_event("password.reset", {"id": "u9", "email": "u9@example.org"}, reset),
                           make_event("order.confirmed", {"id": "u5", "email": "u5@example.org"}, order,
                                      sendat=later)])
    await stack.publish_raw(b"{not json", key=b"u7")

    def settled(statuses: list[DeliveryStatus]) -> bool:
        seen = [s.status for s in statuses]
        return (seen.count(Status.SENT) >= 4 and Status.DEAD_LETTERED in seen and Status.SCHEDULED in seen)

    await stack.wait_statuses(settled, timeout=20)

    events, critical = settings.topic("events"), settings.topic("dispatch.email.critical")

    def drained(s: Samples) -> bool:
        lag = s.get("herald_consumer_lag", [])
        return (value(s, "herald_dead_letters_pending") == 1 and value(s, "herald_consumer_lag", topic=events) == 0
                and value(s, "herald_scheduled_pending", kind="dispatch") == 1
                and len({x.labels["partition"] for x in lag if x.labels["topic"] == critical}) == settings.partitions
                and sum(x.value for x in lag) == 0 and held(s))

    def held(s: Samples) -> bool:
        # A partition this worker owns but has not caught up on since its latest assignment is not counted: a
        # rebalance under load (a missed heartbeat) makes the gauge dip until the store has read up to its fence.
        keys = {x.labels["store"]: x.value for x in s.get("herald_state_keys", [])}
        return keys.get("schedules") == 1 and keys.get("sends", 0) >= 4

    s = await scrape_until(metrics_url, drained, timeout=15)
    partitions = {str(p) for p in range(settings.partitions)}

    # Lag per lane, topic and partition: every owned partition (one worker owns them all), 0 once drained.
    lag = s["herald_consumer_lag"]
    assert {x.labels["partition"] for x in lag if x.labels["lane"] == "normal" and x.labels["topic"] == events
            } == partitions
    assert {x.labels["partition"] for x in lag if x.labels["lane"] == "critical" and x.labels["topic"] == critical
            } == partitions
    assert {x.labels["lane"] for x in lag} == {"normal", "critical"}
    assert all(x.value == 0 for x in lag), [x for x in lag if x.value]
    # The dead-lettered bad JSON, the scheduled dispatch, nothing in flight, the worker's first join.
    assert value(s, "herald_dead_letters_pending") == 1
    assert value(s, "herald_scheduled_pending", kind="dispatch") == 1
    assert value(s, "herald_scheduled_pending", kind="receipt_check") == 0
    assert value(s, "herald_sends_in_flight", channel="email") == 0
    rebalances = value(s, "herald_rebalances_total")
    assert rebalances is not None and rebalances >= 1
    assert value(s, "herald_partitions_owned") == settings.partitions
    assert value(s, "herald_rate_limit_share") == 1.0
    assert value(s, "herald_rate_limit_wait_seconds_total") is not None
    keys = {x.labels["store"]: x.value for x in s["herald_state_keys"]}
    assert keys.get("schedules") == 1 and keys.get("sends", 0) >= 4, (keys, rebalances)
    # Build and process.
    assert value(s, "herald_build_info", version=herald_version(), python=platform.python_version()) == 1
    resident = value(s, "process_resident_memory_bytes")
    assert resident is not None and resident > 10_000_000
    assert value(s, "process_cpu_seconds_total") is not None and value(s, "python_info") == 1
