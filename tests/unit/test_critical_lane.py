"""The critical lane's loop over a fake consumer: partitions run side by side, commits follow outcomes, and the lane
reads the partitions the worker owns, letting one go only once its batch is committed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from consumers.observe.metrics import Metrics
from consumers.ownership import Ownership
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
        self.assigned: set[TopicPartition] = set()
        self.assignments: list[set[TopicPartition]] = []
        self.stopped = False

    async def start(self) -> None: ...

    def assign(self, tps: list[TopicPartition]) -> None:
        """Like aiokafka: each partition resumes from its last commit, unpaused."""
        self.assigned = set(tps)
        self.assignments.append(set(tps))
        self.paused &= self.assigned
        committed = {tp: off for c in self.commits for tp, off in c.items()}
        for tp in self.assigned & set(self.records):
            self.position[tp] = committed.get(tp, 0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        out = {}
        for tp, rs in self.records.items():
            if tp in self.assigned and tp not in self.paused and self.position[tp] < len(rs):
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


def records(topic: str, n: int, partition: int = 0) -> list[ConsumerRecord]:
    return [ConsumerRecord(topic, partition, i, 0, 0, f"msg-{i}".encode(), b"{}", None, 0, 0, [])
            for i in range(n)]


def lane(tmp_path: Path, routes: Mapping[str, Route], consumer: FakeConsumer,
         ownership: Ownership | None = None) -> CriticalLane:
    settings = unique_settings(tmp_path, critical_batch=3)
    critical = CriticalLane(settings, routes, DeadLetters(publisher=None, metrics=Metrics()),  # type: ignore[arg-type]
                            ownership=ownership or Ownership(1))
    critical._consumer_for = lambda: consumer  # type: ignore[method-assign]
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


async def test_critical_lane__reads_the_partitions_the_worker_owns_and_follows_a_rebalance(tmp_path: Path) -> None:
    handled: list[tuple[int, int]] = []
    release = asyncio.Event()

    async def route(record: Record) -> None:
        if record.partition == 0 and record.offset == 0:
            await release.wait()  # a batch in flight on partition 0 when the rebalance takes it away
        handled.append((record.partition, record.offset))

    tp0, tp1, tp2 = (TopicPartition(EMAIL, p) for p in range(3))
    consumer = FakeConsumer({tp0: records(EMAIL, 2, 0), tp1: records(EMAIL, 2, 1), tp2: records(EMAIL, 2, 2)})
    ownership = Ownership(3, [0, 1])
    critical = lane(tmp_path, {EMAIL: Route(route, concurrently=False, stage="e")}, consumer, ownership)
    task = asyncio.create_task(critical.run())
    try:
        while (1, 1) not in handled:
            await asyncio.sleep(0.005)
        assert consumer.assigned == {tp0, tp1} and not any(p == 2 for p, _ in handled)
        rebalance = asyncio.create_task(ownership.set([1, 2]))  # partition 0 goes to another worker
        await asyncio.sleep(0.05)
        assert not rebalance.done()  # it waits for the batch in flight on partition 0...
        release.set()
        await asyncio.wait_for(rebalance, 2)
        assert {tp0: 2} in consumer.commits  # ...which is committed before the partition is let go
        assert consumer.assigned == {tp1, tp2}
        while (2, 1) not in handled:
            await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(handled) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]  # each once
