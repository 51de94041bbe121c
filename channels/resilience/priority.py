"""A bounded pool of slots that serves urgent waiters first (a code before an order confirmation).

`asyncio.Semaphore` is first come, first served: with 32 ordinary sends queued for 8 SMTP connections, a
password reset would wait for all 32. Here it waits only for the next slot to come free.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

import httpx

from channels.base import OutboundMessage, Sender, SendResult
from channels.http import MAX_CONNECTIONS
from channels.resilience.chain import ProviderWrapper


class PrioritySlots:
    """Up to `size` holders at once; among waiters, urgent ones first, each class in arrival order."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._free = size
        self._waiters: tuple[collections.deque[asyncio.Future[None]], ...] = (collections.deque(), collections.deque())

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiters)

    async def acquire(self, *, urgent: bool = False) -> None:
        if self._free and not self.waiting:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters[0 if urgent else 1]
        queue.append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot at the moment it was cancelled: pass it on
            else:
                queue.remove(future)
            raise

    def release(self) -> None:
        for queue in self._waiters:
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)  # the slot passes straight to the waiter
                    return
        self._free += 1

    @contextlib.asynccontextmanager
    async def slot(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release()


class PriorityGate(ProviderWrapper):
    """An HTTP provider behind as many slots as its client has connections, so httpx's own pool (first come,
    first served) never has a queue for a critical send to wait in."""

    def __init__(self, inner: Sender, size: int = MAX_CONNECTIONS) -> None:
        super().__init__(inner)
        self.slots = PrioritySlots(size)

    async def send(self, message: OutboundMessage) -> SendResult:
        async with self.slots.slot(urgent=message.options.get("priority") == "critical"):
            return await self.inner.send(message)


def priority_gated(provider: Sender) -> Sender:
    """`provider` behind a `PriorityGate` when it sends over a pooled `httpx` client (SMTP has its own slots)."""
    return PriorityGate(provider) if isinstance(getattr(provider, "client", None), httpx.AsyncClient) else provider
