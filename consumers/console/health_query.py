"""The numbers of the console's health page, read where they live.

This worker's own, from its Prometheus registry (`Metrics`): each provider's circuit breaker, the seconds its sends
waited for rate-limit tokens, its share of every limit, the consumer lag of the partitions it owns, and its status
webhook outboxes per tenant (consumers/console/webhooks_health.py). The whole group's, from the status index every
worker keeps of `herald.status` (`TimelineIndex`): send attempts and errors per provider over the last 5 and 60
minutes, and the latency percentiles of event -> sent per lane over a chosen window. Both queries bound the time
range and use the indexed `at` column, so a week of statuses costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from channels.registry import parse_provider_spec
from consumers.console.webhooks_health import TenantWebhooks, tenant_webhooks
from consumers.observe.metrics import CIRCUIT_VALUES, Metrics, samples
from consumers.observe.timeline_index import TimelineIndex
from schemas.catalog import Catalog, Priority

LANES = ("normal", "critical")
WINDOWS = {"5m": 300, "1h": 3600, "24h": 86400}  # latency window choices, seconds
DEFAULT_WINDOW = "1h"
RATE_WINDOWS = (300, 3600)  # send counts and error rates: the last 5 and 60 minutes
PERCENTILES = (50, 95, 99)
MAX_LATENCY_SAMPLES = 100_000  # the latest sends of the window; a busy day is sampled, not read whole
ERROR_STATUSES = ("retrying", "failed")
BREAKER_STATES = {value: name for name, value in CIRCUIT_VALUES.items()}


@dataclass(frozen=True)
class SendCounts:
    """Send attempts that reached a status in a window: `sent`, and errors (`retrying` or `failed`)."""

    sent: int = 0
    errors: int = 0

    @property
    def attempts(self) -> int:
        return self.sent + self.errors

    @property
    def error_rate(self) -> float | None:
        """Errors per attempt (0..1); None without attempts."""
        return self.errors / self.attempts if self.attempts else None


@dataclass
class ProviderHealth:
    """One provider of one channel: this worker's breaker and rate-limit waits, the group's sends."""

    channel: str
    provider: str
    breaker: str | None = None  # closed, half_open, open; None when this worker has no breaker for it
    waited_seconds: float = 0.0
    sends: dict[int, SendCounts] = field(default_factory=dict)  # by window, seconds

    @property
    def breaker_badge(self) -> str:
        return {"closed": "ok", "half_open": "warn", "open": "bad"}.get(self.breaker or "", "")


def providers(metrics: Metrics, provider_spec: str) -> dict[tuple[str, str], ProviderHealth]:
    """Every configured provider (`HERALD_PROVIDERS`, in failover order) and any other the metrics name, with this
    worker's breaker state and rate-limit waits."""
    found: dict[tuple[str, str], ProviderHealth] = {}
    try:
        configured = parse_provider_spec(provider_spec)
    except ValueError:  # the worker would not have started with it; the page still shows what the metrics know
        configured = {}
    for channel, vendors in configured.items():
        for vendor in vendors:
            found[(channel, vendor)] = ProviderHealth(channel, vendor)
    for labels, value in samples(metrics.circuit_state, "herald_provider_circuit_state"):
        key = (labels["channel"], labels["provider"])
        found.setdefault(key, ProviderHealth(*key)).breaker = BREAKER_STATES.get(int(value))
    for labels, value in samples(metrics.rate_limit_wait_seconds, "herald_rate_limit_wait_seconds_total"):
        key = (labels["channel"], labels["provider"])
        found.setdefault(key, ProviderHealth(*key)).waited_seconds = value
    return found


def rate_limit_share(metrics: Metrics) -> float:
    """This worker's share of every provider rate limit (the fraction of the partitions it owns)."""
    return next((value for _, value in samples(metrics.rate_limit_share, "herald_rate_limit_share")), 0.0)


def send_counts(index: TimelineIndex, now: float, windows: Sequence[int] = RATE_WINDOWS
                ) -> dict[tuple[str, str], dict[int, SendCounts]]:
    """Sent and error statuses per (channel, provider) over each window ending `now` (epoch seconds), for the
    whole group: one range scan of the `at` index over the longest window."""
    longest = max(windows)
    sums = ", ".join("SUM(at >= ?)" for _ in windows)
    rows = index.query(
        f"SELECT channel, provider, status, {sums} FROM statuses "
        f"WHERE at >= ? AND status IN ('sent', {', '.join('?' * len(ERROR_STATUSES))}) "
        "AND provider IS NOT NULL AND channel IS NOT NULL GROUP BY channel, provider, status",
        [*(now - w for w in windows), now - longest, *ERROR_STATUSES])
    tallies: dict[tuple[str, str], dict[int, list[int]]] = {}
    for channel, provider, status, *counts in rows:
        by_window = tallies.setdefault((str(channel), str(provider)), {w: [0, 0] for w in windows})
        for window, count in zip(windows, counts, strict=True):
            by_window[window][0 if status == "sent" else 1] += int(count or 0)
    return {key: {w: SendCounts(sent, errors) for w, (sent, errors) in by_window.items()}
            for key, by_window in tallies.items()}


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values: the smallest value with at least p% of them at or below it."""
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class LaneLatency:
    """Event -> sent latency of one lane's sends in the window (milliseconds)."""

    lane: str
    count: int
    percentiles: dict[int, float]  # empty without sends
    sampled: bool = False  # only the latest MAX_LATENCY_SAMPLES sends of the window were read


def lane_of(catalog: Catalog, event_type: str | None) -> str:
    entry = catalog.get(event_type or "")
    return "critical" if entry is not None and entry.priority is Priority.CRITICAL else "normal"


def latencies(index: TimelineIndex, catalog: Catalog, now: float, window: int,
              limit: int = MAX_LATENCY_SAMPLES) -> dict[str, LaneLatency]:
    """p50/p95/p99 of `latency_ms` of the group's `sent` statuses with `at` in the window, per lane (the lane is the
    catalog priority of the status's type)."""
    rows = index.query(
        "SELECT event_type, json_extract(CAST(value AS TEXT), '$.latency_ms') FROM statuses "
        "WHERE at >= ? AND status = 'sent' ORDER BY at DESC LIMIT ?", [now - window, limit + 1])
    sampled = len(rows) > limit
    values: dict[str, list[float]] = {lane: [] for lane in LANES}
    for event_type, latency in rows[:limit]:
        if isinstance(latency, int | float):
            values[lane_of(catalog, event_type)].append(float(latency))
    found = {}
    for lane, lane_values in values.items():
        lane_values.sort()
        found[lane] = LaneLatency(lane, len(lane_values), {p: percentile(lane_values, p) for p in PERCENTILES}
                                  if lane_values else {}, sampled=sampled)
    return found


@dataclass(frozen=True)
class PartitionLag:
    """Records not handled yet on one partition of a lane, over its topics, by topic."""

    partition: int
    lag: int
    topics: dict[str, int]


def lags(metrics: Metrics) -> dict[str, list[PartitionLag]]:
    """This worker's consumer lag per lane and partition (its owned partitions only), from `herald_consumer_lag`."""
    by_lane: dict[str, dict[int, dict[str, int]]] = {lane: {} for lane in LANES}
    for labels, value in samples(metrics.consumer_lag, "herald_consumer_lag"):
        partition = int(labels["partition"]) if labels["partition"].isdigit() else -1
        topics = by_lane.setdefault(labels["lane"], {}).setdefault(partition, {})
        topics[labels["topic"]] = int(value)
    return {lane: [PartitionLag(p, sum(topics.values()), dict(sorted(topics.items())))
                   for p, topics in sorted(partitions.items())]
            for lane, partitions in by_lane.items()}


@dataclass
class Health:
    """Everything the health page shows."""

    at: datetime
    window: str
    providers: list[ProviderHealth]
    share: float
    latencies: dict[str, LaneLatency]
    lags: dict[str, list[PartitionLag]]
    webhooks: list[TenantWebhooks]


def read_health(metrics: Metrics, index: TimelineIndex | None, catalog: Catalog, provider_spec: str, at: datetime,
                window: str = DEFAULT_WINDOW) -> Health:
    """The page's numbers at `at`; without an index (no admin token) only this worker's."""
    now = at.timestamp()
    found = providers(metrics, provider_spec)
    counts = send_counts(index, now) if index is not None else {}
    for key, by_window in counts.items():
        found.setdefault(key, ProviderHealth(*key)).sends = by_window
    for health in found.values():
        for w in RATE_WINDOWS:
            health.sends.setdefault(w, SendCounts())
    lanes = (latencies(index, catalog, now, WINDOWS[window]) if index is not None
             else {lane: LaneLatency(lane, 0, {}) for lane in LANES})
    return Health(at, window, _ordered(found.values(), provider_spec), rate_limit_share(metrics), lanes,
                  lags(metrics), tenant_webhooks(metrics))


def _ordered(found: Iterable[ProviderHealth], provider_spec: str) -> list[ProviderHealth]:
    """Channels and providers in the configured (failover) order, others after them by name."""
    try:
        order = [(c, v) for c, vendors in parse_provider_spec(provider_spec).items() for v in vendors]
    except ValueError:
        order = []
    rank = {key: i for i, key in enumerate(order)}
    return sorted(found, key=lambda h: (rank.get((h.channel, h.provider), len(rank)), h.channel, h.provider))
