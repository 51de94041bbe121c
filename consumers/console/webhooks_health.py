"""The status webhooks part of the console's health page: per tenant with a registered endpoint, this worker's
outbox for it (waiting statuses, whether the endpoint is paused) and what became of its statuses since the worker
started, read from the worker's Prometheus registry. A pause is per worker (each worker's outbox has its own
circuit per endpoint), so the page says whose numbers they are, as the rest of it does."""

from __future__ import annotations

from dataclasses import dataclass, field

from consumers.observe.metrics import Metrics, samples

OUTCOMES = ("delivered", "retried", "dead_lettered", "dropped")


@dataclass
class TenantWebhooks:
    """One tenant's endpoint as this worker sees it."""

    tenant: str
    pending: int = 0
    paused: bool = False
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    dead_letters: dict[str, int] = field(default_factory=dict)  # by reason


def tenant_webhooks(metrics: Metrics) -> list[TenantWebhooks]:
    """Every tenant the worker's status webhook metrics name, by name."""
    found: dict[str, TenantWebhooks] = {}

    def tenant(labels: dict[str, str]) -> TenantWebhooks:
        name = labels["tenant"]
        return found.setdefault(name, TenantWebhooks(name))

    for labels, value in samples(metrics.status_webhook_pending, "herald_status_webhook_pending"):
        tenant(dict(labels)).pending = int(value)
    for labels, value in samples(metrics.status_webhook_paused, "herald_status_webhook_paused"):
        tenant(dict(labels)).paused = value >= 1
    for labels, value in samples(metrics.status_webhook_deliveries, "herald_status_webhook_deliveries_total"):
        tenant(dict(labels)).outcomes[labels["outcome"]] = int(value)
    for labels, value in samples(metrics.status_webhook_dead_letters, "herald_status_webhook_dead_letters_total"):
        tenant(dict(labels)).dead_letters[labels["reason"]] = int(value)
    return sorted(found.values(), key=lambda t: t.tenant)
