"""Several providers behind one channel: the next one takes over when one fails for a transient reason.

Also the base of the guards that wrap one provider (rate limit, circuit breaker): a wrapper stands where its
provider stood, so a chain, the webhook routes and the metrics see the same `name`, `channel` and webhook methods.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from channels.base import OutboundMessage, Sender, SendResult
from channels.errors import DeliveryError

log = logging.getLogger(__name__)

# What a wrapper copies from the provider it wraps when the provider has it (the `WebhookReceiver` protocol).
WEBHOOK_ATTRIBUTES = ("STATUS_MAP", "verify_webhook", "parse_webhook")


def unwrap(sender: Sender) -> Sender:
    """The provider inside any number of wrappers (the sender itself when it wraps nothing)."""
    return getattr(sender, "unwrapped", sender)


class ProviderWrapper:
    """A `Sender` around one provider: same `name` and `channel`, every other attribute delegated to it.

    Subclasses override `send`. The webhook attributes are also copied onto the instance: a runtime-checkable
    Protocol on Python >= 3.12 looks members up with `inspect.getattr_static`, which never calls `__getattr__`,
    so `isinstance(wrapper, WebhookReceiver)` would otherwise turn False on an upgrade.
    """

    def __init__(self, inner: Sender) -> None:
        self.inner = inner
        self.name = inner.name
        self.channel = inner.channel
        for attr in WEBHOOK_ATTRIBUTES:
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))

    def __getattr__(self, attr: str) -> Any:
        # Only reached when normal lookup fails; guard `inner` so a half-built instance cannot recurse.
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    @property
    def unwrapped(self) -> Sender:
        """The provider inside every wrapper."""
        return unwrap(self.inner)

    async def start(self) -> None:
        await self.inner.start()

    async def send(self, message: OutboundMessage) -> SendResult:
        return await self.inner.send(message)

    async def close(self) -> None:
        await self.inner.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class ProviderChain:
    """A `Sender` over providers in failover order. A permanent error stops the chain: another provider
    would refuse the same recipient or content too. A retriable one (timeout, 5xx, 429, or `circuit_open` from a
    breaker that did not even call its provider) goes to the next provider at once.

    `providers` are the senders as given, wrappers included: the app finds webhook receivers through them.
    """

    def __init__(self, channel: str, providers: Sequence[Sender]) -> None:
        if not providers:
            raise ValueError(f"channel {channel} has no provider")
        self.channel = channel
        self.providers = list(providers)
        self.name = "+".join(p.name for p in self.providers)

    async def start(self) -> None:
        for provider in self.providers:
            await provider.start()

    async def send(self, message: OutboundMessage) -> SendResult:
        last: DeliveryError | None = None
        for provider in self.providers:
            try:
                return await provider.send(message)
            except DeliveryError as exc:
                if exc.provider is None:
                    exc.provider = provider.name
                if not exc.retriable:
                    raise
                # An open circuit skips its provider on every send for as long as it is open: one line per send
                # would flood the log during an outage, and the breaker logs its own transitions.
                level = logging.DEBUG if exc.code == "circuit_open" else logging.INFO
                log.log(level, "provider failed over", extra={"channel": self.channel, "provider": provider.name,
                                                              "reason": exc.reason})
                last = exc
        assert last is not None
        raise last

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()
