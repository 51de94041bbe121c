"""Delivery, open, click and reply rates per event type and channel, from `herald.status` (status contract v1).

    python deploy/analytics/rates.py --bootstrap localhost:19092            # reads the topic from its beginning
    kcat -b host:9092 -t herald.status -C -e -q | python deploy/analytics/rates.py --file -

Reads every record once (no consumer group, nothing committed) and prints one row per (type, channel). Needs only
aiokafka when reading Kafka (`--file` needs nothing); for TLS or SASL, read with a client configured for them and
pipe JSON lines to `--file -`.

How it counts (README, "Consuming herald.status"):
- per message (`message_id`), never per record: a receipt repeated by a vendor's retry, or a second open, counts
  once;
- a message counts in its row once it was `sent` (a provider accepted it); the rates are over those messages;
- `read`, `opened`, `clicked` and `replied` imply delivery (a vendor may report an open and never a delivery);
- a message's type and channel are read off any of its records, so records without them (written before v1)
  still count;
- fields this script does not know are ignored, as the contract asks of every consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

SENT = "sent"
DELIVERED = frozenset({"delivered", "read", "opened", "clicked", "replied"})
ENGAGED = ("opened", "clicked", "replied")


@dataclass
class Message:
    """What the topic said about one message."""

    event_type: str | None = None
    channel: str | None = None
    statuses: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Row:
    """One (type, channel): messages sent, and the share of them delivered, opened, clicked and replied to."""

    event_type: str
    channel: str
    sent: int
    delivered: int
    opened: int
    clicked: int
    replied: int

    def rate(self, count: int) -> float:
        return count / self.sent if self.sent else 0.0


def rates(records: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Rows sorted by type and channel, from `herald.status` records (parsed JSON) in any order."""
    messages: dict[str, Message] = defaultdict(Message)
    for record in records:
        message_id, status = record.get("message_id"), record.get("status")
        if not isinstance(message_id, str) or not isinstance(status, str):
            continue  # not a status record
        message = messages[message_id]
        message.event_type = message.event_type or record.get("event_type")
        message.channel = message.channel or record.get("channel")
        message.statuses.add(status)
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * 5)
    for message in messages.values():
        if SENT not in message.statuses or not message.event_type or not message.channel:
            continue  # never reached a provider (suppressed, rejected…), or a status of a whole event
        row = counts[(message.event_type, message.channel)]
        seen = message.statuses
        for i, hit in enumerate((True, bool(seen & DELIVERED), *(s in seen for s in ENGAGED))):
            row[i] += hit
    return [Row(t, c, *n) for (t, c), n in sorted(counts.items())]


def table(rows: list[Row]) -> str:
    head = f"{'type':<32} {'channel':<9} {'sent':>7} {'delivered':>10} {'opened':>8} {'clicked':>8} {'replied':>8}"
    lines = [head]
    for r in rows:
        lines.append(f"{r.event_type:<32} {r.channel:<9} {r.sent:>7} {r.rate(r.delivered):>10.1%} "
                     f"{r.rate(r.opened):>8.1%} {r.rate(r.clicked):>8.1%} {r.rate(r.replied):>8.1%}")
    return "\n".join(lines)


def lines_of(stream: TextIO) -> Iterator[Mapping[str, Any]]:
    for line in stream:
        if line.strip():
            yield json.loads(line)


async def from_kafka(bootstrap: str, topic: str) -> list[Mapping[str, Any]]:
    """Every record of `topic`, from the beginning to the end it had when we started."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()  # metadata, so the partitions are known
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        records: list[Mapping[str, Any]] = []
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(json.loads(r.value) for r in batch if r.value)
        return records
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="localhost:9092", help="Kafka bootstrap servers")
    parser.add_argument("--topic", default="herald.status", help="the status topic (HERALD_TOPIC_PREFIX + status)")
    parser.add_argument("--file", help="JSON lines to read instead of Kafka ('-' for standard input)")
    args = parser.parse_args(argv)
    if args.file:
        with (open(args.file, encoding="utf-8") if args.file != "-" else sys.stdin) as stream:
            rows = rates(lines_of(stream))
    else:
        rows = rates(asyncio.run(from_kafka(args.bootstrap, args.topic)))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
