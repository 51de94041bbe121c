"""The critical lane's loop over a fake consumer: partitions run side by side, commits follow outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from consumers.observe.metrics import Metrics
from consumers.pipeline.critical import CriticalLane, Route
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.records import Record
from tests.conftest import unique_settings

pytestmark = pytest.mark.unit

EMAIL, SMS = "t.dispatch.email.critical", "t.dispatch.sms.critical"


class FakeConsumer:
    """What the lane uses of `AIOKafkaConsumer`: each partition's records handed out once, from its position."""

    def __init__(self, records: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        self.records = {tp: list(rs) for tp, rs in records.items()}
        self.position = dict.fromkeys(self.records, 0)
        self.paused: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, int]] = []
        self.stopped = False

    async def start(self) -> None: ...

    def subscribe(self, topics: list[str], listener: object) -> None: ...

    def assignment(self) -> set[TopicPartition]:
        return set(self.records)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        out = {}
        for tp, rs in self.records.items():
            if tp not in self.paused and self.position[tp] < len(rs):
                out[tp] = rs[self.position[tp]:self.position[tp] + max_records]
                self.position[tp] += len(out[tp])
        await asyncio.sleep(0.001)
        return out

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.paused.discard(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp] = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    async def stop(self) -> None:
        self.stopped = True


def records(topic: str, n: int) -> list[ConsumerRecord]:
    return [ConsumerRecord(topic, 0, i, 0, 0, f"msg-{i}".encode(), b"{}", None, 0, 0, []) for i in range(n)]


def lane(tmp_path: Path, routes: Mapping[str, Route], consumer: FakeConsumer) -> CriticalLane:
    settings = unique_settings(tmp_path, critical_batch=3)
    critical = CriticalLane(settings, routes, DeadLetters(publisher=None, metrics=Metrics()))  # type: ignore[arg-type]
    critical._consumer = lambda: consumer  # type: ignore[method-assign]
    return critical


async def run_until(critical: CriticalLane, done: asyncio.Event, timeout: float = 5) -> None:
    task = asyncio.create_task(critical.run())
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_critical_lane__a_slow_partition_does_not_hold_up_another(tmp_path: Path) -> None:
    release_sms = asyncio.Event()
    emails: list[int] = []
    all_emails = asyncio.Event()

    async def send_sms(record: Record) -> None:
        await release_sms.wait()  # metered at one a second, say

    async def send_email(record: Record) -> None:
        emails.append(record.offset)
        if len(emails) == 7:
            all_emails.set()

    email_tp, sms_tp = TopicPartition(EMAIL, 0), TopicPartition(SMS, 0)
    consumer = FakeConsumer({email_tp: records(EMAIL, 7), sms_tp: records(SMS, 3)})
    critical = lane(tmp_path, {EMAIL: Route(send_email, concurrently=True, stage="e"),
                               SMS: Route(send_sms, concurrently=True, stage="s")}, consumer)
    await run_until(critical, all_emails)

    assert sorted(emails) == list(range(7))  # three batches of the email partition went while SMS waited
    assert {tp: off for c in consumer.commits for tp, off in c.items()} == {email_tp: 7}  # SMS: nothing yet
    assert [c[email_tp] for c in consumer.commits] == [3, 6, 7]  # whole batches, in order
    assert consumer.stopped


async def test_critical_lane__a_batch_cancelled_by_a_stop_is_not_committed(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def hang(record: Record) -> None:
        started.set()
        await asyncio.sleep(3600)

    tp = TopicPartition(EMAIL, 0)
    consumer = FakeConsumer({tp: records(EMAIL, 2)})
    await run_until(lane(tmp_path, {EMAIL: Route(hang, concurrently=False, stage="e")}, consumer), started)
    await asyncio.sleep(0.01)
    assert consumer.commits == []


async def test_critical_lane__events_of_a_partition_keep_their_order(tmp_path: Path) -> None:
    seen: list[int] = []
    done = asyncio.Event()

    async def route(record: Record) -> None:
        await asyncio.sleep(0.001 * (5 - record.offset))  # later records would finish first side by side
        seen.append(record.offset)
        if len(seen) == 5:
            done.set()

    consumer = FakeConsumer({TopicPartition(EMAIL, 0): records(EMAIL, 5)})
    await run_until(lane(tmp_path, {EMAIL: Route(route, concurrently=False, stage="e")}, consumer), done)
    assert seen == [0, 1, 2, 3, 4]
