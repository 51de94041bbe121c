"""Several providers behind one channel: the next one takes over when one fails for a transient reason."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from channels.base import OutboundMessage, Sender, SendResult
from channels.errors import DeliveryError

log = logging.getLogger(__name__)


class ProviderChain:
    """A `Sender` over providers in failover order. A permanent error stops the chain: another provider
    would refuse the same recipient or content too."""

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
                log.info("provider failed over", extra={"channel": self.channel, "provider": provider.name,
                                                        "reason": exc.reason})
                last = exc
        assert last is not None
        raise last

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()
