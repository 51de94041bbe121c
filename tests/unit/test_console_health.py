"""The console's health page: this worker's breakers, rate-limit waits and lag from its metrics, the group's sends,
error rates and latency percentiles from the status index, and the page that shows them."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from channels.rendering.render import BUNDLED_TEMPLATES
from consumers.console.health_query import (
    LaneLatency,
    lags,
    latencies,
    percentile,
    providers,
    read_health,
    send_counts,
)
from consumers.observe.metrics import Metrics
from consumers.observe.timeline_index import TimelineIndex
from schemas.catalog import Catalog
from schemas.status import DeliveryStatus
from tests.unit.test_console_auth import TOKEN, client_for, console_context

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SPEC = "email=smtp,sendgrid;sms=twilio,vonage"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CATALOG = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml")


def status(n: int, state: str, ago: float, *, channel: str = "email", provider: str | None = "smtp",
           event_type: str = "order.confirmed", latency_ms: int | None = None) -> bytes:
    return DeliveryStatus(message_id=f"msg-{n}", status=state, at=NOW - timedelta(seconds=ago), channel=channel,
                          provider=provider, event_type=event_type, latency_ms=latency_ms,
                          ).model_dump_json().encode()


def fill(index: TimelineIndex, values: list[bytes]) -> None:
    index.add([(0, offset, value) for offset, value in enumerate(values)], {0: len(values)})


def known_statuses() -> list[bytes]:
    """email/smtp: 8 sent and 2 failed in the last 5 minutes, 10 more sent before (within the hour); sms/twilio:
    3 retrying and 1 sent; and statuses that are not send attempts or are too old, which must not count."""
    values = [status(i, "sent", 60) for i in range(8)]
    values += [status(10 + i, "failed", 120) for i in range(2)]
    values += [status(20 + i, "sent", 1800) for i in range(10)]
    values += [status(40 + i, "retrying", 200, channel="sms", provider="twilio") for i in range(3)]
    values += [status(50, "sent", 3000, channel="sms", provider="twilio")]
    values += [status(60, "delivered", 30), status(61, "failed", 30, provider=None),
               status(62, "sent", 3700), status(63, "failed", 7200)]
    return values


@pytest.fixture
def index(tmp_path: Path) -> Iterator[TimelineIndex]:
    found = TimelineIndex(tmp_path / "index.sqlite")
    yield found
    found.close()


# --- the numbers ------------------------------------------------------------------------------------------------------

def test_percentile__nearest_rank_of_a_known_set() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([7.0], 99) == 7
    assert [percentile([100.0, 200.0, 300.0, 400.0], p) for p in (50, 95, 99)] == [200, 400, 400]


def test_send_counts__sends_and_errors_per_provider_over_5_and_60_minutes(index: TimelineIndex) -> None:
    fill(index, known_statuses())
    counts = send_counts(index, NOW.timestamp())
    smtp, twilio = counts[("email", "smtp")], counts[("sms", "twilio")]
    assert (smtp[300].sent, smtp[300].errors, smtp[300].error_rate) == (8, 2, 0.2)
    assert (smtp[3600].sent, smtp[3600].errors, smtp[3600].error_rate) == (18, 2, 0.1)
    assert (twilio[300].attempts, twilio[3600].attempts, twilio[3600].error_rate) == (3, 4, 0.75)
    assert set(counts) == {("email", "smtp"), ("sms", "twilio")}


def test_latencies__p50_p95_p99_per_lane_within_the_window(index: TimelineIndex) -> None:
    values = [status(i, "sent", 30 + i, latency_ms=i) for i in range(1, 101)]  # normal lane: 1..100 ms
    values += [status(200 + i, "sent", 40, event_type="otp.requested", latency_ms=ms, channel="sms", provider="twilio")
               for i, ms in enumerate((400, 100, 300, 200))]  # critical lane
    values += [status(300, "sent", 7200, latency_ms=10**6),  # before the window
               status(301, "delivered", 30, latency_ms=10**6)]  # not a send
    fill(index, values)
    found = latencies(index, CATALOG, NOW.timestamp(), 3600)
    assert found["normal"] == LaneLatency("normal", 100, {50: 50, 95: 95, 99: 99})
    assert found["critical"] == LaneLatency("critical", 4, {50: 200, 95: 400, 99: 400})
    recent = latencies(index, CATALOG, NOW.timestamp(), 60)  # sends of the last minute: 1..30 ms
    assert recent["normal"].count == 30 and recent["normal"].percentiles[99] == 30
    sampled = latencies(index, CATALOG, NOW.timestamp(), 3600, limit=10)
    assert sampled["normal"].sampled and sampled["normal"].count + sampled["critical"].count == 10


def test_latencies__a_lane_without_sends_has_no_percentiles(index: TimelineIndex) -> None:
    found = latencies(index, CATALOG, NOW.timestamp(), 3600)
    assert found["critical"] == LaneLatency("critical", 0, {})


def test_providers__every_configured_one_with_this_workers_breaker_and_waits() -> None:
    metrics = Metrics()
    metrics.circuit_state.labels("email", "smtp").set(0)
    metrics.circuit_state.labels("email", "sendgrid").set(2)
    metrics.circuit_state.labels("sms", "twilio").set(1)
    metrics.rate_limit_wait_seconds.labels("sms", "twilio").inc(2.5)
    found = providers(metrics, SPEC)
    assert list(found) == [("email", "smtp"), ("email", "sendgrid"), ("sms", "twilio"), ("sms", "vonage")]
    assert [(h.breaker, h.breaker_badge) for h in found.values()] == [
        ("closed", "ok"), ("open", "bad"), ("half_open", "warn"), (None, "")]
    assert found[("sms", "twilio")].waited_seconds == 2.5 and found[("email", "smtp")].waited_seconds == 0


def test_lags__per_lane_and_partition_summed_over_topics() -> None:
    metrics = Metrics()
    metrics.consumer_lag.labels("normal", "herald.events", "0").set(5)
    metrics.consumer_lag.labels("normal", "herald.dispatch.email", "0").set(2)
    metrics.consumer_lag.labels("normal", "herald.events", "2").set(0)
    metrics.consumer_lag.labels("critical", "herald.events.critical", "0").set(1)
    found = lags(metrics)
    assert [(p.partition, p.lag) for p in found["normal"]] == [(0, 7), (2, 0)]
    assert found["normal"][0].topics == {"herald.dispatch.email": 2, "herald.events": 5}
    assert [(p.partition, p.lag) for p in found["critical"]] == [(0, 1)]


def test_read_health__a_week_of_statuses_reads_fast(index: TimelineIndex) -> None:
    week, count = 7 * 86400, 40_000
    template = orjson.loads(status(0, "sent", 0))
    fill(index, [orjson.dumps({**template, "message_id": f"msg-{i}", "status": ("sent", "delivered", "accepted")[i % 3],
                               "at": (NOW - timedelta(seconds=week * i / count)).isoformat(), "latency_ms": i % 500})
                 for i in range(count)])
    started = time.perf_counter()
    health = read_health(Metrics(), index, CATALOG, SPEC, NOW, "24h")
    elapsed = time.perf_counter() - started
    assert health.latencies["normal"].count > 0
    assert elapsed < 1.0, f"{elapsed:.2f} s"


# --- the page ---------------------------------------------------------------------------------------------------------

async def test_health_page__providers_lanes_and_which_numbers_are_whose(tmp_path: Path) -> None:
    ctx = console_context(tmp_path)
    ctx.settings = ctx.settings.model_copy(update={"providers": SPEC})
    ctx.clock = lambda: NOW
    ctx.extras["catalog"] = CATALOG
    ctx.metrics.circuit_state.labels("email", "sendgrid").set(2)
    ctx.metrics.circuit_state.labels("email", "smtp").set(0)
    assert ctx.timeline is not None
    fill(ctx.timeline.index, known_statuses() + [status(100 + i, "sent", 10, channel="push", provider="fcm",
                                                        latency_ms=i) for i in range(1, 101)])
    client = await client_for(ctx)
    try:
        response = await client.get("/console/health", headers=BEARER)
        html = await response.text()
        fragment = await (await client.get("/console/health/fragment?window=bogus", headers=BEARER)).text()
    finally:
        await client.close()
    assert response.status == 200
    rows = dict(re.findall(r'<tr data-provider="([^"]+)">(.*?)</tr>', html, re.S))
    assert list(rows) == ["email/smtp", "email/sendgrid", "sms/twilio", "sms/vonage", "push/fcm"]
    assert 'class="badge ok breaker">closed<' in rows["email/smtp"]
    assert 'class="badge bad breaker">open<' in rows["email/sendgrid"]
    assert "not on this worker" in rows["sms/vonage"]
    cells = re.findall(r'<td class="num[^"]*">(.*?)</td>', rows["email/smtp"], re.S)
    assert [re.sub(r"<[^>]+>", "", c) for c in cells] == ["0.0 s", "10", "2 (20.0%)", "20", "2 (10.0%)"]
    assert 'data-percentile="50">50 ms<' in html and 'data-percentile="99">99 ms<' in html
    assert '<script src="/console/static/health.js" defer></script>' in html
    assert 'data-source="/console/health/fragment?window=1h"' in html
    assert "<html" not in fragment and 'data-provider="email/smtp"' in fragment and "last 1h" in fragment
    assert "this worker's own" in html and "every worker" in html


async def test_health_page__each_tenants_status_webhook_outbox_on_this_worker(tmp_path: Path) -> None:
    ctx = console_context(tmp_path)
    ctx.clock = lambda: NOW
    ctx.extras["catalog"] = CATALOG
    m = ctx.metrics
    m.status_webhook_pending.labels("globex").set(37)
    m.status_webhook_paused.labels("globex").set(1)
    m.status_webhook_deliveries.labels("globex", "retried").inc(12)
    m.status_webhook_deliveries.labels("globex", "dead_lettered").inc(3)
    m.status_webhook_dead_letters.labels("globex", "retries_exhausted").inc(2)
    m.status_webhook_dead_letters.labels("globex", "backlog_full").inc(1)
    m.status_webhook_paused.labels("acme").set(0)
    m.status_webhook_deliveries.labels("acme", "delivered").inc(250)
    client = await client_for(ctx)
    try:
        html = await (await client.get("/console/health", headers=BEARER)).text()
    finally:
        await client.close()
    rows = dict(re.findall(r'<tr data-tenant="([^"]+)">(.*?)</tr>', html, re.S))
    assert list(rows) == ["acme", "globex"]
    assert "paused" not in rows["acme"] and 'class="badge bad paused">paused<' in rows["globex"]
    cells = [re.sub(r"<[^>]+>", "", c).strip()
             for c in re.findall(r'<td class="(?:num|small)[^"]*"[^>]*>(.*?)</td>', rows["globex"], re.S)]
    # waiting, delivered, retried, dead lettered, dropped, dead letters by reason
    assert cells == ["37", "0", "12", "3", "0", "retries_exhausted 2, backlog_full 1"]
    assert 'data-outcome="delivered">250<' in rows["acme"]


async def test_health_page__without_status_webhooks_says_so(tmp_path: Path) -> None:
    ctx = console_context(tmp_path)
    ctx.clock = lambda: NOW
    ctx.extras["catalog"] = CATALOG
    client = await client_for(ctx)
    try:
        html = await (await client.get("/console/health", headers=BEARER)).text()
    finally:
        await client.close()
    assert "No tenant's status webhook has had a status from this worker yet." in html
