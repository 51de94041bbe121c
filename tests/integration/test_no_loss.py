"""Issue 10: a record that cannot be processed never takes its neighbours with it.

Seen on wave 1: a 5 MB event and an event whose dispatch is over the producer's limit, published among 200 good
events to a running worker, lost 135-173 of the good emails (the dead-letter write failed inside the agent's
error path, the agent died, and Faust committed the offsets it had taken); a year-9999 `time` got a dead letter
and no status.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from consumers.cli.publish import make_event
from consumers.topics import kafka_client_kwargs
from schemas.status import FINAL_STATUSES, Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

PAYLOAD = {"order_id": "1001", "total": "59.90", "currency": "EUR", "items": []}
REFUSED = {Status.REJECTED, Status.DEAD_LETTERED}


def good(i: int) -> dict[str, Any]:
    return make_event("order.confirmed", {"id": f"user-{i}", "email": f"p{i}@example.org"}, PAYLOAD)


def many_items() -> dict[str, Any]:
    """20,000 items: about 1.3 MB, so its dispatch (which carries the payload) is over the producer's limit."""
    items = [{"sku": f"S{i:05d}", "name": f"Item {i:05d}", "qty": 1, "price": "9.99"} for i in range(20_000)]
    return make_event("order.confirmed", {"id": "user-many", "email": "many@example.org"}, {**PAYLOAD, "items": items})


async def publish_among_good(stack: Stack, bad: list[dict[str, Any]], n_good: int = 200) -> list[dict[str, Any]]:
    """`n_good` good events with the bad ones spread among them, on a producer that takes records of any size."""
    goods = [good(i) for i in range(n_good)]
    order: list[dict[str, Any]] = list(goods)
    for k, event in enumerate(bad):
        order.insert((k + 1) * n_good // (len(bad) + 1), event)
    producer = AIOKafkaProducer(**kafka_client_kwargs(stack.settings), linger_ms=5,
                                max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        for event in order:
            await producer.send(stack.settings.topic("events"), orjson.dumps(event),
                                key=event["data"]["to"]["id"].encode())
        await producer.flush()
    finally:
        await producer.stop()
    return goods


async def wait_for_mail(stack: Stack, count: int, timeout: float = 30) -> None:
    for _ in range(int(timeout * 10)):
        if len(stack.sink) >= count:
            return
        await asyncio.sleep(0.1)


async def settle(stack: Stack, goods: list[dict[str, Any]], bad: list[dict[str, Any]]) -> None:
    good_ids, bad_ids = {e["id"] for e in goods}, {e["id"] for e in bad}

    def done(statuses: list) -> bool:
        sent = {s.event_id for s in statuses if s.status is Status.SENT}
        refused = {s.event_id for s in statuses if s.status in REFUSED}
        return good_ids <= sent and bad_ids <= refused

    await stack.wait_statuses(done, timeout=120)
    await wait_for_mail(stack, len(goods))


async def test_no_loss__oversized_events_among_200_good_ones_lose_nothing(stack: Stack) -> None:
    # Events up to 4 MiB are read, so the 20,000-item one gets as far as its dispatch, which is over the 1 MiB
    # record limit; the 5 MB one is refused at the door.
    stack.start_worker(HERALD_MAX_EVENT_BYTES=str(4 * 1024 * 1024))
    huge = make_event("order.confirmed", {"id": "user-huge", "email": "huge@example.org"},
                      {**PAYLOAD, "note": "x" * 5_000_000})
    many = many_items()
    goods = await publish_among_good(stack, [huge, many])
    await settle(stack, goods, [huge, many])

    assert len(stack.sink) == 200
    by_event = {s.event_id: s for s in stack.statuses if s.status in REFUSED}
    assert by_event[huge["id"]].error == "event_too_large"
    assert by_event[many["id"]].error == "dispatch_too_large"
    for s in stack.statuses:  # every refusal is final and explained; nothing good was refused
        assert s.status not in REFUSED or s.event_id in {huge["id"], many["id"]}
    assert not [s for s in stack.statuses if s.event_id == many["id"] and s.status is Status.ACCEPTED]

    letters = {r.headers_dict["herald-error"]: r for r in await read_dead_letters(stack)}
    assert set(letters) == {b"event_too_large", b"dispatch_too_large"}
    for reason, event in ((b"event_too_large", huge), (b"dispatch_too_large", many)):
        letter, original = letters[reason], orjson.dumps(event)
        assert len(letter.value) < stack.settings.max_record_bytes
        assert original.startswith(letter.value)
        assert letter.headers_dict["herald-truncated"] == b"true"
        assert letter.headers_dict["herald-original-size"] == str(len(original)).encode()
        assert letter.headers_dict["herald-original-sha256"] == hashlib.sha256(original).hexdigest().encode()
        assert letter.headers_dict["herald-source-topic"] == stack.settings.topic("events").encode()


async def test_no_loss__impossible_times_are_rejected_with_a_status(stack: Stack) -> None:
    stack.start_worker()
    dated = make_event("order.confirmed", {"id": "user-t", "email": "t@example.org"}, PAYLOAD)
    dated["time"] = "9999-12-31T23:59:59Z"
    later = make_event("order.confirmed", {"id": "user-s", "email": "s@example.org"}, PAYLOAD,
                       sendat="9999-12-31T23:59:59Z")
    goods = await publish_among_good(stack, [dated, later], n_good=50)
    await settle(stack, goods, [dated, later])

    assert len(stack.sink) == 50
    refused = {s.event_id: s for s in stack.statuses if s.status is Status.REJECTED}
    assert refused[dated["id"]].error == refused[later["id"]].error == "invalid_time"
    assert all(s.status in FINAL_STATUSES | {Status.ACCEPTED, Status.SENT} for s in stack.statuses)
    errors = sorted(r.headers_dict["herald-error"] for r in await read_dead_letters(stack))
    assert errors == [b"invalid_time", b"invalid_time"]


class DeadLetter:
    def __init__(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.value = value
        self.headers_dict = dict(headers)


async def read_dead_letters(stack: Stack) -> list[DeadLetter]:
    return [DeadLetter(r.value, list(r.headers)) for r in await stack.read("deadletter")]
