"""Prometheus metrics, one registry per app so tests can build many apps. Every label set is bounded."""

from __future__ import annotations

import platform
from collections.abc import Iterator, Mapping
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def herald_version() -> str:
    """The installed distribution's version ("unknown" when run from a tree that was never installed)."""
    try:
        return metadata.version("herald")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """Herald's metrics. Labels take catalog types, channel names, statuses and reasons: all bounded sets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("herald_events_total", "Events read by the router, by type and outcome.",
                              ["event_type", "outcome"], registry=r)
        self.statuses = Counter("herald_status_total", "Status records published.",
                                ["channel", "status"], registry=r)
        self.sends = Counter("herald_sends_total", "Send attempts by channel, provider and result.",
                             ["channel", "provider", "result"], registry=r)
        self.send_seconds = Histogram("herald_send_duration_seconds", "Time a provider took to accept a send.",
                                      ["channel", "provider"], buckets=LATENCY_BUCKETS, registry=r)
        self.end_to_end_seconds = Histogram("herald_end_to_end_seconds", "Event time to provider acceptance.",
                                            ["channel", "priority"], buckets=LATENCY_BUCKETS, registry=r)
        self.dead_letters = Counter("herald_dead_letters_total", "Records sent to the dead-letter topic.",
                                    ["source", "reason"], registry=r)
        self.dead_letter_failures = Counter("herald_dead_letter_write_failures_total",
                                            "Dead letters the broker did not take; each is tried again, and its "
                                            "partition waits meanwhile.", ["stage"], registry=r)
        self.batch_retries = Counter("herald_batch_retries_total",
                                     "Batches handled again because the broker did not acknowledge their writes.",
                                     ["stage"], registry=r)
        self.provider_errors = Counter("herald_provider_errors_total", "Provider errors by class.",
                                       ["channel", "provider", "reason"], registry=r)

        self.webhooks = Counter("herald_webhooks_total", "Provider webhook requests by result: ok, replay (every "
                                "receipt in it was applied before), forbidden (signature or timestamp), "
                                "bad_request, malformed (input that raised where it should not: a bug, answered "
                                "400), too_large, error (failed after verification: answered 500 so the vendor "
                                "retries), unknown_provider.", ["channel", "provider", "result"], registry=r)
        self.webhook_replays = Counter("herald_webhook_replays_total",
                                       "Webhook deliveries dropped because the vendor's id was already applied: a "
                                       "whole request (Twilio token, Vonage nonce) counts once, each replayed "
                                       "event of a batch (SendGrid, Meta) once.", ["channel", "provider"],
                                       registry=r)
        self.unmapped_statuses = Counter("herald_unmapped_vendor_statuses_total",
                                         "Receipts whose vendor status is not in the provider's STATUS_MAP.",
                                         ["channel", "provider"], registry=r)
        self.replies = Counter("herald_replies_total", "Inbound replies and keypad digits published.",
                               ["channel", "provider"], registry=r)
        self.keywords = Counter("herald_keywords_total",
                                "Inbound STOP/START/HELP keywords; result `unknown_recipient` means no ledger change.",
                                ["channel", "keyword", "result"], registry=r)
        self.ratings = Counter("herald_ratings_total", "Survey ratings published to herald.replies (`<type>.rated`), "
                               "by type, channel and score (1 to the survey's scale, at most 9).",
                               ["event_type", "channel", "score"], registry=r)
        self.links_refused = Counter("herald_link_requests_refused_total",
                                     "Requests to /unsubscribe and /documents refused before any work: too_large "
                                     "(413) or malformed (input that raised where it should not: a bug, answered "
                                     "400).", ["route", "reason"], registry=r)
        self.unsubscribes = Counter("herald_unsubscribes_total", "One-click unsubscribes (RFC 8058) by channel.",
                                    ["channel"], registry=r)
        self.preference_updates = Counter("herald_preference_updates_total", "Preference topic choices saved, by "
                                          "where: api (the preferences API) or page (the hosted preference page).",
                                          ["source"], registry=r)
        self.tracking = Counter("herald_tracking_total", "Email open pixels (`open`) and click links (`click`) "
                                "requested, by result: ok (status published), repeated (same one within the "
                                "repeat window: not published again), forbidden (unsigned or tampered: 403), "
                                "expired (403), malformed (raised: 400, a bug), error (status not published).",
                                ["kind", "result"], registry=r)

        # Outbound status webhooks (consumers/pipeline/status_outbox.py): tenants are HERALD_API_KEYS' (bounded).
        self.status_webhook_deliveries = Counter(
            "herald_status_webhook_deliveries_total", "Statuses POSTed to tenants' registered endpoints, by "
            "outcome: delivered (2xx), retried (an attempt failed and another is due), dead_lettered (given up: "
            "herald.webhooks.deadletter), dropped (the registration was deleted or its filter changed meanwhile).",
            ["tenant", "outcome"], registry=r)
        self.status_webhook_latency_seconds = Histogram(
            "herald_status_webhook_latency_seconds", "From the status record's publication to its endpoint's 2xx, "
            "retries included.", ["tenant"], buckets=LATENCY_BUCKETS, registry=r)
        self.status_webhook_dead_letters = Counter(
            "herald_status_webhook_dead_letters_total", "Statuses given up on, by reason (the dead letter's "
            "`herald-error`).", ["tenant", "reason"], registry=r)
        self.status_webhook_paused = Gauge(
            "herald_status_webhook_paused", "1 while a tenant's endpoint is paused on this worker (its circuit is "
            "open after consecutive failed attempts; statuses wait in the outbox), else 0.", ["tenant"], registry=r)
        self.status_webhook_pending = Gauge(
            "herald_status_webhook_pending", "Statuses waiting in this worker's outbox for a tenant's endpoint.",
            ["tenant"], registry=r)

        self.duplicates_prevented = Counter("herald_duplicate_sends_prevented_total",
                                            "Dispatches not sent again because the send ledger had them sent.",
                                            ["channel"], registry=r)

        self.resends = Counter("herald_resends_after_lease_total",
                                "Sends retried after a lease expired: the earlier try may have gone out too.",
                                ["channel"], registry=r)

        self.circuit_state = Gauge("herald_provider_circuit_state",
                                   "Circuit breaker per provider: 0 closed, 1 half-open, 2 open.",
                                   ["channel", "provider"], registry=r)
        self.rate_limit_share = Gauge("herald_rate_limit_share",
                                      "This worker's share of every provider rate limit: the fraction of the "
                                      "partitions it owns (0 while it owns none; the group's shares sum to 1).",
                                      registry=r)
        self.rate_limit_wait_seconds = Counter("herald_rate_limit_wait_seconds_total",
                                               "Seconds sends waited for rate-limit tokens (this worker's share "
                                               "of the provider's limit, and of each sending number's).",
                                               ["channel", "provider"], registry=r)

        self.state_entries = Gauge("herald_state_entries",
                                   "Entries in each state store after the last retention sweep.", ["store"],
                                   registry=r)
        self.state_keys = Gauge("herald_state_keys",
                                "Keys each state store holds on this worker, read every few seconds: its own "
                                "partitions for a partitioned store, everything for a replicated one.", ["store"],
                                registry=r)
        self.partitions_owned = Gauge("herald_partitions_owned",
                                      "Partitions of each topic this worker owns (the same numbers for every topic).",
                                      registry=r)
        self.state_expired = Counter("herald_state_expired_total",
                                     "State entries deleted by the retention sweep because they expired.",
                                     ["store"], registry=r)

        self.consumer_lag = Gauge("herald_consumer_lag",
                                  "Records not handled yet per lane (normal: the app's group; critical: its own), "
                                  "topic and partition, for the partitions this worker owns: the end offset minus "
                                  "the group's committed offset, read from the broker every "
                                  "HERALD_STATE_METRICS_INTERVAL.", ["lane", "topic", "partition"], registry=r)
        self.sends_in_flight = Gauge("herald_sends_in_flight",
                                     "Sends handed to a provider and not answered yet, waits for rate-limit tokens "
                                     "included.", ["channel"], registry=r)
        self.dead_letters_pending = Gauge("herald_dead_letters_pending",
                                          "Records held in herald.deadletter (end minus start offsets over its "
                                          "partitions; the same reading on every worker), read with the lag, "
                                          "every third reading.", registry=r)
        self.scheduled_pending = Gauge("herald_scheduled_pending",
                                       "Scheduled entries this worker holds: dispatches waiting for their time "
                                       "(quiet hours, sendat, reminders, retries) and receipt waits.", ["kind"],
                                       registry=r)
        self.rebalances = Counter("herald_rebalances_total",
                                  "Consumer group rebalances this worker took part in, its first join included.",
                                  registry=r)
        self.build_info = Gauge("herald_build_info", "Always 1: Herald's version and the Python running it.",
                                ["version", "python"], registry=r)
        self.build_info.labels(herald_version(), platform.python_version()).set(1)
        # process_* (CPU, memory, open files, start time), python_info and python_gc_*, as the default registry has.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def samples(metric: MetricWrapperBase, name: str) -> Iterator[tuple[Mapping[str, str], float]]:
    """(labels, value) of every sample called `name` of a metric (a counter's `_total`, not its `_created`)."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels, sample.value
