"""Issue 5 acceptance: a critical message is never stuck behind a backlog of normal ones."""

from __future__ import annotations

import os

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from consumers.publish import make_event
from consumers.topics import kafka_client_kwargs
from schemas.status import Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

BACKLOG = int(os.environ.get("HERALD_TEST_BACKLOG", "20000"))
PAYLOAD = {"order_id": "1", "total": "1.00", "currency": "EUR", "items": []}


async def test_priority__critical_events_overtake_20000_queued_normal_ones(stack: Stack) -> None:
    producer = AIOKafkaProducer(**kafka_client_kwargs(stack.settings), linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        normal_topic = stack.settings.topic("events")
        for i in range(BACKLOG):
            event = make_event("order.confirmed", {"id": f"u{i}", "email": f"u{i}@example.org"}, PAYLOAD)
            await producer.send(normal_topic, orjson.dumps(event), key=f"u{i}".encode())
        await producer.flush()
        critical = [make_event("otp.requested", {"id": f"c{i}", "email": f"c{i}@example.org"},
                               {"code": "123456", "expires_minutes": 10}) for i in range(5)]
        for event in critical:
            await producer.send(stack.settings.topic("events.critical"), orjson.dumps(event),
                                key=event["data"]["to"]["id"].encode())
        await producer.flush()
    finally:
        await producer.stop()

    stack.start_worker()
    critical_ids = {e["id"] for e in critical}

    def critical_sent(statuses: list) -> bool:
        accepted = {s.message_id for s in statuses if s.event_id in critical_ids and s.status is Status.ACCEPTED}
        return len(accepted) == 5 and sum(s.message_id in accepted and s.status is Status.SENT
                                          for s in statuses) == 5

    await stack.wait_statuses(critical_sent, timeout=120)
    critical_messages = {s.message_id for s in stack.statuses if s.event_id in critical_ids}
    last_critical = max(s.at for s in stack.statuses if s.message_id in critical_messages and s.status is Status.SENT)
    normal_before = sum(1 for s in stack.statuses
                        if s.status is Status.SENT and s.message_id not in critical_messages and s.at <= last_critical)
    print(f"normal messages sent before the last critical one: {normal_before} of {BACKLOG}")
    assert normal_before < BACKLOG * 0.10
