"""The bare-client side of the routing row: raw aiokafka consume -> produce, in a process of its own.

`python -m bench.relay BOOTSTRAP SOURCE TARGET RECORDS` joins a consumer group on SOURCE, prints `ready` once it
has partitions, then copies each record (key and value) to TARGET. Like a Herald worker under at-least-once, it
commits a batch's offsets only after the broker acknowledged what the batch produced. Exits after RECORDS records.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def relay(bootstrap: str, source: str, target: str, records: int) -> None:
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"relay-{source}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        copied = 0
        while copied < records:
            batch = await consumer.getmany(timeout_ms=100, max_records=200)
            acks = [await producer.send(target, r.value, key=r.key) for rs in batch.values() for r in rs]
            if acks:
                await asyncio.gather(*acks)
                await consumer.commit()
                copied += len(acks)
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("records", type=int)
    args = parser.parse_args()
    asyncio.run(relay(args.bootstrap, args.source, args.target, args.records))
    sys.exit(0)
