"""The senders a worker has: one per configured channel, each provider behind its vendor's rate limit and a circuit
breaker, in a failover chain when a channel has several (HERALD_PROVIDERS), and the providers that hear back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from channels.base import Sender, WebhookReceiver
from channels.registry import parse_provider_spec, provider_class
from channels.resilience.breaker import BreakerSender, CircuitBreaker
from channels.resilience.chain import ProviderChain
from channels.resilience.priority import priority_gated
from channels.resilience.ratelimit import declared_metering, effective_limits, rate_limited
from consumers.observe.metrics import CIRCUIT_VALUES, Metrics
from schemas.settings import Settings


def build_senders(settings: Settings, metrics: Metrics | None = None,
                  share: Callable[[], float] | None = None) -> dict[str, Sender]:
    """One `Sender` per configured channel: its provider(s), each behind a circuit breaker (outside) and the
    vendor's rate limit (inside), in a failover chain when there are several.

    The limits are the whole worker group's: this worker paces at `share()` of each (the fraction of the
    partitions it owns, read at every send); None, the default, is a share of 1 (one worker, tools, tests)."""
    limits = effective_limits(settings.rate_limits)
    if metrics is not None:
        metrics.rate_limit_share.set_function(share or (lambda: 1.0))
    senders: dict[str, Sender] = {}
    for channel, vendors in parse_provider_spec(settings.providers).items():
        providers: list[Sender] = []
        for vendor in vendors:
            key = f"{channel}.{vendor}"
            provider = provider_class(key).from_settings(settings)
            per_sender, cost = declared_metering(provider)  # e.g. Twilio: each "From" number, in segments
            waits = metrics.rate_limit_wait_seconds.labels(channel, provider.name).inc if metrics else None
            limited = rate_limited(key, priority_gated(provider), limits=limits, per_sender=per_sender, cost=cost,
                                   share=share, on_wait=waits)
            breaker = CircuitBreaker(key, failure_threshold=settings.breaker_failure_threshold,
                                     reset_after=settings.breaker_reset_after)
            hook = None
            if metrics is not None:
                gauge = metrics.circuit_state.labels(channel, provider.name)
                gauge.set(CIRCUIT_VALUES["closed"])

                def hook(name: str, state: str, gauge: Any = gauge) -> None:
                    gauge.set(CIRCUIT_VALUES[state])
            providers.append(BreakerSender(limited, breaker, on_state_change=hook))
        senders[channel] = providers[0] if len(providers) == 1 else ProviderChain(channel, providers)
    return senders


def webhook_receivers(senders: Mapping[str, Sender]) -> dict[tuple[str, str], WebhookReceiver]:
    """Every provider that hears back, by (channel, vendor): the web server routes `/webhooks/{channel}/{vendor}`."""
    receivers: dict[tuple[str, str], WebhookReceiver] = {}
    for sender in senders.values():
        for provider in getattr(sender, "providers", [sender]):
            if isinstance(provider, WebhookReceiver):
                receivers[(provider.channel, provider.name)] = provider
    return receivers
