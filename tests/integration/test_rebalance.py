"""Issue 13 acceptance: workers join and leave while events flow, and state follows the partitions.

- A second worker joins while 5,000 events flow (a tenth of them password resets on the critical lane), then the
  first one is stopped (SIGTERM, as a supervisor does): nothing is lost, and at most `DUPLICATE_BOUND` messages go
  out twice (a graceful handover commits before it lets a partition go; README "Scaling" documents the bound).
- With two workers up, each holds only its own partitions' state (`herald_state_keys`), and a critical event finds
  the state its recipient's normal-lane events left (one assignment for both lanes): the same idempotency key on
  the critical lane is deduplicated, whichever worker owns the recipient.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import orjson
import pytest

from consumers.cli.publish import EventProducer, make_event, parse_status, read_topic
from schemas.status import Status
from tests.integration.harness import Stack
from tests.integration.test_crash import delivered_ids, quiet
from tests.integration.test_rate_limit_group import metric

pytestmark = pytest.mark.integration

EVENTS = int(os.environ.get("HERALD_REBALANCE_EVENTS", "5000"))
# A stopped worker's last `sent` records are written before it leaves; what a rebalance may still resend is a send
# whose record had not reached the broker when its partition moved: none in a graceful handover, a few at most.
DUPLICATE_BOUND = 5
RESET = {"reset_url": "https://example.org/reset/abc", "expires_minutes": 30}


PAYLOAD = {"order_id": "1", "total": "1.00", "currency": "EUR", "items": []}


async def publish(stack: Stack, n: int, per_second: float) -> None:
    """`per_second` events, every tenth a password reset on the critical lane; event ids `evt-rb-<i>`."""
    async with EventProducer(stack.settings) as producer:
        batch = max(1, int(per_second / 10))
        for i in range(n):
            critical = i % 10 == 0
            event = make_event("password.reset" if critical else "order.confirmed",
                               {"id": f"u{i}", "email": f"u{i}@example.org"}, RESET if critical else PAYLOAD,
                               idempotencykey=f"rb-{i}")
            event["id"] = f"evt-rb-{i}"
            await producer.publish_raw(orjson.dumps(event), key=f"u{i}".encode(),
                                       topic=stack.settings.topic("events.critical" if critical else "events"))
            if i % batch == batch - 1:
                await producer.flush()
                await asyncio.sleep(0.1)
        await producer.flush()


async def state_keys(stack: Stack, admin_port: int) -> float:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"http://127.0.0.1:{admin_port}/metrics")).text
    return metric(text, "herald_state_keys", store="sends")


@pytest.mark.timeout(600)
async def test_rebalance__a_worker_joins_and_one_leaves_while_events_flow(stack: Stack) -> None:
    first = await asyncio.to_thread(stack.start_worker)
    flow = asyncio.create_task(publish(stack, EVENTS, per_second=400))
    started = time.monotonic()
    while len(delivered_ids(stack)) < EVENTS // 5:  # the first worker alone for a while
        await asyncio.sleep(0.2)
    other = stack.other_worker_env("worker-b")
    await asyncio.to_thread(stack.start_worker, **other)  # joins: the group rebalances mid-flow
    while len(delivered_ids(stack)) < EVENTS // 2:
        await asyncio.sleep(0.2)
    first.send_signal(signal.SIGTERM)  # leaves: its partitions move to the other worker mid-flow
    await asyncio.to_thread(first.wait, 60)
    stack.workers.remove(first)
    await flow
    while len(delivered_ids(stack)) < EVENTS and time.monotonic() - started < 300:
        await asyncio.sleep(0.5)
    await quiet(stack)
    counts = delivered_ids(stack)
    duplicates = {m: c for m, c in counts.items() if c > 1}
    print(f"rebalance run: {len(counts)} unique, {sum(c - 1 for c in counts.values())} duplicates, "
          f"{time.monotonic() - started:.0f} s")
    if len(counts) != EVENTS:  # what happened to the lost ones
        sent_to = {raw.split(b"To: ", 1)[1].split(b"\r\n", 1)[0].decode() for raw in list(stack.sink.raw)}
        missing = [i for i in range(EVENTS) if f"u{i}@example.org" not in sent_to]
        statuses = [parse_status(r) async for r in read_topic(stack.settings, "status")]
        print("missing", missing[:10])
        for s in statuses:
            if s.event_id in {f"evt-rb-{i}" for i in missing}:
                print(s.model_dump_json())
        print(stack.worker_log()[-6000:])
    assert len(counts) == EVENTS  # 0 lost
    assert sum(c - 1 for c in duplicates.values()) <= DUPLICATE_BOUND, duplicates


@pytest.mark.timeout(300)
async def test_rebalance__two_workers_split_the_state_and_a_critical_event_finds_its_recipients(
        stack: Stack) -> None:
    fast = {"HERALD_STATE_METRICS_INTERVAL": "0.5"}
    await asyncio.to_thread(stack.start_worker, **fast)
    other = stack.other_worker_env("worker-b")
    await asyncio.to_thread(stack.start_worker, **other, **fast)
    people = [f"person-{i}" for i in range(12)]  # spread over every partition
    # Normal lane first: each reset is sent, and its idempotency key is recorded in the recipient's partition.
    await stack.publish(make_event("password.reset", {"id": p, "email": f"{p}@example.org"}, RESET,
                                   idempotencykey=f"reset-{p}") for p in people)
    await stack.wait_statuses(lambda ss: sum(s.status is Status.SENT for s in ss) >= len(people), timeout=90)
    # The same keys on the critical lane: read by whichever worker owns each recipient's partition.
    critical = stack.settings.topic("events.critical")
    async with asyncio.timeout(90):
        for p in people:
            event = make_event("password.reset", {"id": p, "email": f"{p}@example.org"}, RESET,
                               idempotencykey=f"reset-{p}")
            await stack.publish_raw(orjson.dumps(event), key=p.encode(), topic=critical)
    await stack.wait_statuses(
        lambda ss: sum(s.status is Status.DEDUPLICATED and s.channel is None for s in ss) >= len(people),
        timeout=90)
    assert len(delivered_ids(stack)) == len(people)  # not one sent twice
    # Each worker holds the send records of its own partitions only: about half each, together all of them.
    await asyncio.sleep(1)  # one more reading of the state size
    sizes = [await state_keys(stack, port) for port in (stack.settings.admin_port, int(other["HERALD_ADMIN_PORT"]))]
    assert sum(sizes) == len(people) and all(0 < size < len(people) for size in sizes), sizes
