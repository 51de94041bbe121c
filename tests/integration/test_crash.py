"""Issue 6 acceptance: workers SIGKILLed every few seconds while events flow: nothing lost, almost no duplicates.

The short variant (2,000 events) runs in `make test`; `make test-slow` runs 20,000 (HERALD_CRASH_EVENTS).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from consumers.cli.publish import make_event, parse_status, read_topic
from consumers.topics import kafka_client_kwargs
from schemas.status import Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

PAYLOAD = {"order_id": "1", "total": "1.00", "currency": "EUR", "items": []}
RESET = {"reset_url": "https://example.org/reset/abc", "expires_minutes": 30}


async def publish(stack: Stack, n: int, per_second: float) -> None:
    """Events keep flowing while workers die: `per_second` of them, in batches of a tenth of a second."""
    producer = AIOKafkaProducer(**kafka_client_kwargs(stack.settings), linger_ms=20)
    await producer.start()
    try:
        batch = max(1, int(per_second / 10))
        for i in range(n):
            # Every tenth is a password reset: the critical lane's own consumer dies mid-batch too.
            critical = i % 10 == 0
            event = make_event("password.reset" if critical else "order.confirmed",
                               {"id": f"u{i}", "email": f"u{i}@example.org"}, RESET if critical else PAYLOAD,
                               idempotencykey=f"crash-{i}")
            await producer.send(stack.settings.topic("events.critical" if critical else "events"),
                                orjson.dumps(event), key=f"u{i}".encode())
            if i % batch == batch - 1:
                await producer.flush()
                await asyncio.sleep(0.1)
        await producer.flush()
    finally:
        await producer.stop()


def delivered_ids(stack: Stack) -> Counter[str]:
    return Counter(raw.split(b"X-Herald-Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
                   for raw in list(stack.sink.raw))


async def quiet(stack: Stack, still: float = 3.0, limit: float = 60.0) -> None:
    """Wait until herald.status stops growing: the last worker has finished replaying what the dead left."""
    seen, since, started = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - started < limit:
        count = len(await stack.read("status"))
        if count != seen:
            seen, since = count, time.monotonic()
        elif time.monotonic() - since >= still:
            return
        await asyncio.sleep(0.5)


async def crash_run(stack: Stack, events: int, kill_every: float, deadline: float, per_second: float
                    ) -> dict[str, int]:
    flow = asyncio.create_task(publish(stack, events, per_second))
    started = time.monotonic()
    kills = 0
    while not flow.done() and time.monotonic() - started < deadline:
        # Started on this loop's thread: the flow pauses while a worker starts, so every worker meets events.
        worker = stack.start_worker()  # returns once the worker is ready
        await asyncio.sleep(kill_every)
        if len(delivered_ids(stack)) >= events:
            break
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        stack.workers.remove(worker)
        kills += 1
    await flow
    stack.start_worker()  # the flow is over: the last worker finishes the work
    while len(delivered_ids(stack)) < events and time.monotonic() - started < deadline:
        await asyncio.sleep(0.5)
    await quiet(stack)  # replayed events and dispatches settle; late duplicates, if any, arrive
    counts = delivered_ids(stack)
    return {"kills": kills, "unique": len(counts), "duplicates": sum(c - 1 for c in counts.values()),
            "seconds": int(time.monotonic() - started)}


BURST = 4  # emails the SMTP sink accepted in the moment before one kill, at most, in the runs measured


def duplicate_limit(events: int, kills: int) -> float:
    """0.1 % of the events: the acceptance bound, checked as such on 20,000 events (`make test-slow`).

    Duplicates come in bursts at kills: the sends a provider accepted in the milliseconds before the SIGKILL,
    whose `sent` record had not reached the broker yet (SMTP takes no idempotency key). A burst is 0 to 4 emails
    (runs of 2,000 with 5 kills: 2, 5, 8 and 8 in all, the 8s as 2 + 2 + 4 at three kills). Five kills over 2,000
    events cannot resolve 0.1 % (2 messages), so a short run also allows one burst of up to `BURST` per kill. A
    broken ledger resends the whole batch replayed after each kill (everything since the last commit: 50 and more
    at 100 events/s) and still fails it; `max(...) <= 2` catches a message sent three times.
    """
    return events * 0.001 + (kills * BURST if events < 20_000 else 0)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("events", [int(os.environ.get("HERALD_CRASH_EVENTS", "2000"))])
async def test_crash__sigkill_every_5_seconds_loses_nothing(stack: Stack, events: int) -> None:
    # About 20 s of flow per 2,000 events: several workers die mid-stream (each restart also waits out a
    # rebalance of the dead member).
    result = await crash_run(stack, events, kill_every=5.0, deadline=60 + events / 20, per_second=100)
    print(f"crash run: {result}")
    statuses = [parse_status(record) async for record in read_topic(stack.settings, "status")]
    histories: dict[str, list[str]] = {}
    for s in statuses:
        histories.setdefault(s.message_id, []).append(f"{s.status.value}/{s.attempt}/{s.detail}@{s.at:%S.%f}")
    twice = {m: histories.get(m) for m, c in delivered_ids(stack).items() if c > 1}
    print(f"sent twice: {twice}")
    assert result["kills"] >= 2
    assert result["unique"] == events  # 0 lost
    assert max(delivered_ids(stack).values()) <= 2, twice  # the lease lets a crash resend a message once at most
    assert result["duplicates"] <= duplicate_limit(events, result["kills"]), twice
    # Every message reached a final status: `sent` (final for email without receipts), or `deduplicated`
    # when a replayed event or dispatch found it already sent (a crash can land between the send ledger's
    # record and the `sent` status; then `deduplicated` is what is left).
    history: dict[str, list[Status]] = {}
    for status in statuses:
        if status.channel is None:  # a replayed event found deduplicated at the door: about the event
            assert status.status is Status.DEDUPLICATED
            continue
        history.setdefault(status.message_id, []).append(status.status)
    assert len(history) == events
    unsettled = {m: [x.value for x in h] for m, h in history.items()
                 if h[-1] not in (Status.SENT, Status.DEDUPLICATED)}
    assert not unsettled, f"{len(unsettled)} messages without a final status, e.g. {list(unsettled.items())[:3]}"
