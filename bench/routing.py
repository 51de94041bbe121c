"""Routing: events per second through Herald's ingest stage (event in; dispatch, `accepted` status and state out),
next to raw aiokafka consume -> produce of the same records on the same broker, in the same run.

Herald's side is a worker without its delivery agents (`bench.worker --without send_email`), so the event loop
routes and nothing else; the time runs from the first event published to the last dispatch on
`herald.dispatch.email`. The bare side is `bench.relay` in a process of its own: a consumer group copying each record
to another topic, committing once the broker acknowledged a batch's copies. Both sides are fed by the same
producer code and counted by the same reader.

Run: `make bench` (the whole table) or `.venv/bin/python -m bench.routing --events 5000`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from bench.common import Row, bench_stack, count_records, create_topics, order_events, rate_row, start_helper
from consumers.cli.publish import EventProducer

GOAL = 0.5


async def herald_routing(n: int) -> float:
    """Seconds from the first of `n` events published to the last of their dispatches on the dispatch topic."""
    batch = order_events(n)
    async with bench_stack(without=["send_email"]) as stack:
        settings = stack.settings
        dispatches = settings.topic("dispatch.email")
        async with EventProducer(settings) as producer:
            await producer.publish(order_events(1, offset=n)[0] | {"id": "warm-up"}, wait=True)
            await count_records(settings.kafka_bootstrap, dispatches, 1, 60)
            counter = asyncio.create_task(count_records(settings.kafka_bootstrap, dispatches, n + 1, 600))
            await asyncio.sleep(0.5)  # the counter is reading before the first event goes
            started = time.perf_counter()
            for event in batch:
                await producer.publish(event)
            await producer.flush()
            return await counter - started


async def raw_relay(n: int) -> float:
    """Seconds from the first of `n` records published to the last of their copies on the relay's target topic."""
    batch = order_events(n)
    async with bench_stack(workers=0) as stack:
        bootstrap = stack.settings.kafka_bootstrap
        tag = uuid.uuid4().hex[:6]
        source, target = f"relay-in-{tag}", f"relay-out-{tag}"
        await create_topics(bootstrap, [source, target], stack.settings.partitions)
        relay = await start_helper("relay", bootstrap, source, target, str(n))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)  # as EventProducer
        await producer.start()
        try:
            counter = asyncio.create_task(count_records(bootstrap, target, n, 600))
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            for event in batch:
                await producer.send(source, orjson.dumps(event), key=str(event["data"]["to"]["id"]).encode())
            await producer.flush()
            elapsed = await counter - started
        finally:
            await producer.stop()
        await relay.wait()
        return elapsed


async def run(n: int) -> Row:
    herald = await herald_routing(n)
    bare = await raw_relay(n)
    return rate_row("routing", n / herald, n / bare, GOAL, unit="events/s", bare_unit="records/s aiokafka relay",
                    notes=[f"routing: {n} events -> dispatches on herald.dispatch.email (worker without delivery "
                           "agents); bare: aiokafka consume -> produce -> commit of the same records, own process"])


async def main(n: int) -> None:
    row = await run(n)
    print(f"events                 {n}")
    print(f"Herald routing         {row.herald}")
    print(f"raw aiokafka relay     {row.bare}")
    print(f"ratio                  {row.ratio} (goal {GOAL})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    asyncio.run(main(parser.parse_args().events))
