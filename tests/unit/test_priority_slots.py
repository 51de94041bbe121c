"""Connection slots that serve critical sends first (SMTP pool, HTTP providers' pools)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from channels.base import OutboundMessage, SendResult
from channels.rendering.render import Rendered
from channels.resilience.priority import PriorityGate, PrioritySlots, priority_gated

pytestmark = pytest.mark.unit


async def take_in_order(slots: PrioritySlots, waiters: list[tuple[str, bool]]) -> list[str]:
    """Hold the only slot, queue `waiters` (name, urgent) in that order, release: the order they got it in."""
    got: list[str] = []
    await slots.acquire()

    async def wait(name: str, urgent: bool) -> None:
        async with slots.slot(urgent=urgent):
            got.append(name)
            await asyncio.sleep(0)

    tasks = []
    for name, urgent in waiters:
        tasks.append(asyncio.create_task(wait(name, urgent)))
        await asyncio.sleep(0)  # queued in this order
    slots.release()
    await asyncio.gather(*tasks)
    return got


@pytest.mark.parametrize(("waiters", "expected"), [
    ([("a", False), ("b", False), ("c", False)], ["a", "b", "c"]),
    ([("a", False), ("b", False), ("code", True)], ["code", "a", "b"]),
    ([("a", False), ("code1", True), ("b", False), ("code2", True)], ["code1", "code2", "a", "b"]),
])
async def test_priority_slots__urgent_waiters_first_each_class_in_arrival_order(
        waiters: list[tuple[str, bool]], expected: list[str]) -> None:
    assert await take_in_order(PrioritySlots(1), waiters) == expected


async def test_priority_slots__never_more_holders_than_slots() -> None:
    slots, holding, most = PrioritySlots(3), 0, 0

    async def hold(urgent: bool) -> None:
        nonlocal holding, most
        async with slots.slot(urgent=urgent):
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.001)
            holding -= 1

    await asyncio.gather(*(hold(i % 4 == 0) for i in range(40)))
    assert most == 3
    assert slots.waiting == 0


async def test_priority_slots__a_cancelled_waiter_gives_its_place_back() -> None:
    slots = PrioritySlots(1)
    await slots.acquire()
    cancelled = asyncio.create_task(slots.acquire(urgent=True))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert slots.waiting == 0
    slots.release()
    await asyncio.wait_for(slots.acquire(), 1)  # the slot was not lost to the cancelled waiter


class SlowHttpProvider:
    name, channel = "fake", "sms"

    def __init__(self) -> None:
        self.client = httpx.AsyncClient()
        self.order: list[str] = []

    async def start(self) -> None: ...

    async def close(self) -> None:
        await self.client.aclose()

    async def send(self, message: OutboundMessage) -> SendResult:
        self.order.append(message.message_id)
        await asyncio.sleep(0.01)
        return SendResult(provider=self.name, provider_message_id=message.message_id)


def message(mid: str, priority: str) -> OutboundMessage:
    return OutboundMessage(message_id=mid, channel="sms", address="+34600111222", idempotency_key=mid,
                           rendered=Rendered(template="t/sms", locale="en", parts={"text": "hi"}),
                           options={"priority": priority})


async def test_priority_gate__a_code_overtakes_ordinary_sends_queued_for_the_pool() -> None:
    provider = SlowHttpProvider()
    gated = priority_gated(provider)
    assert isinstance(gated, PriorityGate)
    gated.slots = PrioritySlots(2)  # type: ignore[attr-defined]
    sends = [asyncio.create_task(gated.send(message(f"n{i}", "normal"))) for i in range(10)]
    await asyncio.sleep(0)
    sends.append(asyncio.create_task(gated.send(message("code", "critical"))))
    await asyncio.gather(*sends)
    assert provider.order.index("code") <= 2  # after the two already holding a connection, before the rest
    await provider.close()
