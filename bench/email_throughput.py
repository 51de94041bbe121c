"""Events per second from publish to the SMTP sink, next to the raw Kafka round trip on the same broker.

Run: `make bench` (or `.venv/bin/python -m bench.email_throughput --events 1000`).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson

from bench.common import bench_stack, kafka_round_trip
from consumers.app import BUNDLED_CATALOG
from consumers.cli.publish import EventProducer, make_event
from consumers.dev.mailsink import MailSink
from schemas.catalog import Catalog

LOCALES = ("es-ES", "de-DE", "en-GB")


def events(n: int) -> list[dict[str, Any]]:
    sample = Catalog.load(BUNDLED_CATALOG).types["order.confirmed"].sample
    return [make_event("order.confirmed", {"id": f"user-{i}", "email": f"p{i}@example.org",
                                           "locale": LOCALES[i % 3], "name": f"P {i}"}, sample, source="bench")
            for i in range(n)]


async def wait_for_mail(sink: MailSink, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(sink) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(sink)}/{count} emails after {timeout}s")
        await asyncio.sleep(0.01)


async def main(n: int) -> None:
    batch = events(n)
    async with bench_stack() as stack:
        async with EventProducer(stack.settings) as producer:
            await producer.publish(events(1)[0] | {"id": "warm-up"}, wait=True)
            await wait_for_mail(stack.sink, 1, 60)
            started = time.perf_counter()
            for event in batch:
                await producer.publish(event)
            await producer.flush()
            await wait_for_mail(stack.sink, n + 1, 300)
            herald = time.perf_counter() - started
        baseline = await kafka_round_trip(stack.settings.kafka_bootstrap, [orjson.dumps(e) for e in batch])
    print(f"events                      {n}")
    print(f"raw Kafka produce+consume   {n / baseline:8.0f} records/s ({baseline:.2f} s)")
    print(f"Herald publish -> SMTP sink {n / herald:8.0f} events/s  ({herald:.2f} s)")
    print(f"ratio Herald / raw Kafka    {baseline / herald:8.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    asyncio.run(main(parser.parse_args().events))
