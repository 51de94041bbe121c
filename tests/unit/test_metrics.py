"""The metrics an SRE pages on: consumer lag per lane and partition, dead-letter depth, sends in flight, scheduler
backlog, rebalances, build and process information."""

from __future__ import annotations

import asyncio
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import faust
import pytest
from aiokafka import TopicPartition
from faust.types import TP

import consumers.app as app_module
from channels.base import OutboundMessage, SendResult
from channels.errors import ProviderUnavailable
from consumers.app import create_app
from consumers.observe.lag import LagMonitor, Lane, depth, partition_lag
from consumers.observe.metrics import Metrics, herald_version
from consumers.pipeline.scheduler import Scheduler
from consumers.state.kvstore import MemoryStore
from consumers.state.stores import State
from tests.conftest import unique_settings
from tests.fakes import FakeClock, RecordingPublisher, ScriptedSender
from tests.unit.test_delivery import dispatch, record, stage

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
EVENTS, EMAIL, CRITICAL, DEAD = "h.events", "h.dispatch.email", "h.events.critical", "h.deadletter"


def tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


@dataclass
class FakeOffsets:
    """The broker's offsets as the monitor asks for them."""

    ends: dict[TopicPartition, int] = field(default_factory=dict)
    starts: dict[TopicPartition, int] = field(default_factory=dict)
    commits: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)
    failures: list[Exception] = field(default_factory=list)
    closed: bool = False

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        if self.failures:
            raise self.failures.pop(0)
        return {p: self.ends.get(p, 0) for p in partitions}

    async def start_offsets(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        return {p: self.starts.get(p, 0) for p in partitions}

    async def committed(self, group: str, partitions: Sequence[TopicPartition]
                        ) -> Mapping[TopicPartition, int | None]:
        return {p: self.commits.get(group, {}).get(p) for p in partitions}

    async def partitions(self, topic: str) -> set[int]:
        return {p.partition for p in self.ends if p.topic == topic}

    async def close(self) -> None:
        self.closed = True


def gauge(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def lag_series(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    (family,) = [f for f in metrics.registry.collect() if f.name == "herald_consumer_lag"]
    return {(s.labels["lane"], s.labels["topic"], s.labels["partition"]): s.value for s in family.samples}


LANES = [Lane("normal", "herald", (EVENTS, EMAIL)), Lane("critical", "herald-critical", (CRITICAL,))]


# ---------------------------------------------------------------------------------------------------- lag


def test_lag__end_minus_committed_or_minus_the_log_start_without_a_commit_never_negative() -> None:
    ends = {tp(EVENTS, 0): 120, tp(EVENTS, 1): 50, tp(EVENTS, 2): 10}
    committed: dict[TopicPartition, int | None] = {tp(EVENTS, 0): 100, tp(EVENTS, 1): None, tp(EVENTS, 2): 11}
    starts = {tp(EVENTS, 1): 20}
    assert partition_lag(ends, committed, starts) == {tp(EVENTS, 0): 20, tp(EVENTS, 1): 30, tp(EVENTS, 2): 0}


def test_lag__dead_letter_depth_sums_end_minus_start_over_partitions() -> None:
    assert depth({tp(DEAD, 0): 5, tp(DEAD, 1): 0}, {tp(DEAD, 0): 8, tp(DEAD, 1): 4}) == 7
    assert depth({}, {}) == 0


async def test_lag__monitor_sets_each_lane_topic_and_owned_partition() -> None:
    offsets = FakeOffsets(
        ends={tp(EVENTS, 0): 100, tp(EVENTS, 1): 40, tp(EVENTS, 2): 999, tp(EMAIL, 0): 7, tp(EMAIL, 1): 3,
              tp(CRITICAL, 0): 2, tp(CRITICAL, 1): 5},
        starts={tp(CRITICAL, 1): 1},
        commits={"herald": {tp(EVENTS, 0): 90, tp(EVENTS, 1): 40, tp(EMAIL, 0): 7, tp(EMAIL, 1): 1},
                 "herald-critical": {tp(CRITICAL, 0): 2}})
    metrics = Metrics()
    monitor = LagMonitor(metrics, offsets, LANES, owned=lambda: {0, 1}, dead_letter_topic=DEAD)
    await monitor.measure_lag()
    assert lag_series(metrics) == {
        ("normal", EVENTS, "0"): 10, ("normal", EVENTS, "1"): 0, ("normal", EMAIL, "0"): 0,
        ("normal", EMAIL, "1"): 2, ("critical", CRITICAL, "0"): 0, ("critical", CRITICAL, "1"): 4}


async def test_lag__partitions_let_go_lose_their_series_and_owning_none_leaves_none() -> None:
    offsets = FakeOffsets(ends={tp(EVENTS, 0): 5, tp(EVENTS, 1): 6})
    owned = {0, 1}
    metrics = Metrics()
    monitor = LagMonitor(metrics, offsets, [Lane("normal", "herald", (EVENTS,))], owned=lambda: owned,
                         dead_letter_topic=None)
    await monitor.measure_lag()
    assert lag_series(metrics) == {("normal", EVENTS, "0"): 5, ("normal", EVENTS, "1"): 6}
    owned = {1}
    offsets.commits["herald"] = {tp(EVENTS, 1): 6}
    await monitor.measure_lag()
    assert lag_series(metrics) == {("normal", EVENTS, "1"): 0}
    owned = set()
    await monitor.measure_lag()
    assert lag_series(metrics) == {}


async def test_lag__dead_letters_pending_counts_every_partition_of_the_topic() -> None:
    offsets = FakeOffsets(ends={tp(DEAD, 0): 10, tp(DEAD, 1): 3, tp(DEAD, 2): 0}, starts={tp(DEAD, 0): 4})
    metrics = Metrics()
    monitor = LagMonitor(metrics, offsets, LANES, owned=lambda: {0}, dead_letter_topic=DEAD)
    await monitor.measure_dead_letters()
    assert gauge(metrics, "herald_dead_letters_pending") == 9


async def test_lag__run_survives_a_broker_error_reads_dead_letters_every_nth_time_and_closes() -> None:
    offsets = FakeOffsets(ends={tp(EVENTS, 0): 3, tp(DEAD, 0): 2}, failures=[OSError("broker away")])
    metrics = Metrics()
    monitor = LagMonitor(metrics, offsets, [Lane("normal", "herald", (EVENTS,))], owned=lambda: {0},
                         dead_letter_topic=DEAD, interval=0.001, dead_letter_every=2)
    task = asyncio.create_task(monitor.run())
    for _ in range(200):
        await asyncio.sleep(0.001)
        if lag_series(metrics) and gauge(metrics, "herald_dead_letters_pending") == 2:
            break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert lag_series(metrics) == {("normal", EVENTS, "0"): 3}  # the reading after the failed one
    assert gauge(metrics, "herald_dead_letters_pending") == 2
    assert offsets.closed


# ---------------------------------------------------------------------------------------------------- in flight


@dataclass
class GatedSender(ScriptedSender):
    """Holds each send until `gate` opens; then fails as scripted, raises `bug`, or succeeds."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    bug: Exception | None = None

    async def send(self, message: OutboundMessage) -> SendResult:
        self.entered.set()
        await self.gate.wait()
        if self.bug is not None:
            raise self.bug
        return await super().send(message)


async def in_flight_during_and_after(sender: GatedSender) -> tuple[float | None, float | None, BaseException | None]:
    rig = stage(sender)
    handling = asyncio.create_task(rig.stage.handle(record(dispatch())))
    await sender.entered.wait()
    during = gauge(rig.metrics, "herald_sends_in_flight", channel="email")
    sender.gate.set()
    (outcome,) = await asyncio.gather(handling, return_exceptions=True)
    return during, gauge(rig.metrics, "herald_sends_in_flight", channel="email"), outcome


async def test_in_flight__one_while_the_provider_works_zero_once_it_answered() -> None:
    sender = GatedSender()
    assert await in_flight_during_and_after(sender) == (1, 0, None)
    assert len(sender.sent) == 1


async def test_in_flight__back_to_zero_after_a_provider_error_and_after_a_bug() -> None:
    assert await in_flight_during_and_after(GatedSender(script=[ProviderUnavailable("timeout")])) == (1, 0, None)
    during, after, outcome = await in_flight_during_and_after(GatedSender(bug=RuntimeError("bug")))
    assert (during, after) == (1, 0) and isinstance(outcome, RuntimeError)


def test_in_flight__every_channel_starts_at_zero() -> None:
    rig = stage(ScriptedSender())
    assert gauge(rig.metrics, "herald_sends_in_flight", channel="email") == 0
    assert gauge(rig.metrics, "herald_sends_in_flight", channel="sms") == 0


# ---------------------------------------------------------------------------------------------------- scheduler


async def test_scheduler_backlog__counts_entries_by_kind_with_every_kind_present() -> None:
    publisher = RecordingPublisher()
    scheduler = Scheduler(MemoryStore(), publisher, stage(ScriptedSender()).stage.statuses, clock=FakeClock(NOW))
    assert scheduler.pending_by_kind() == {"dispatch": 0, "receipt_check": 0}
    later = NOW + timedelta(hours=1)
    await scheduler.add(later, dispatch(message_id="m1"), "sendat")
    await scheduler.add(later, dispatch(message_id="m2"), "retry")
    await scheduler.add(later, dispatch(message_id="m1"), "receipt_wait", kind="receipt_check")
    assert scheduler.pending_by_kind() == {"dispatch": 2, "receipt_check": 1}


# ---------------------------------------------------------------------------------------------------- app wiring


def app_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[faust.App, Metrics]:
    made: list[Metrics] = []

    def keep() -> Metrics:
        made.append(Metrics())
        return made[-1]

    monkeypatch.setattr(app_module, "Metrics", keep)
    app = create_app(unique_settings(tmp_path), senders={"email": ScriptedSender()}, publisher=RecordingPublisher(),
                     state=State.in_memory())
    (metrics,) = made
    return app, metrics


async def test_rebalances__every_assignment_counts_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app, metrics = app_and_metrics(tmp_path, monkeypatch)
    assert gauge(metrics, "herald_rebalances_total") == 0
    await app.on_partitions_assigned.send(assigned={TP("elsewhere", 0)})
    await app.on_partitions_assigned.send(assigned=set())  # an empty assignment is a rebalance too
    assert gauge(metrics, "herald_rebalances_total") == 2


def test_build_and_process__build_info_is_one_with_version_and_python_and_process_metrics_are_there() -> None:
    metrics = Metrics()
    assert herald_version() not in {"", "unknown"}  # the checkout is installed (pip install -e)
    assert gauge(metrics, "herald_build_info", version=herald_version(), python=platform.python_version()) == 1
    resident = gauge(metrics, "process_resident_memory_bytes")
    assert resident is not None and resident > 1_000_000
    assert gauge(metrics, "process_cpu_seconds_total") is not None
    assert gauge(metrics, "process_open_fds") is not None
    assert gauge(metrics, "python_info", implementation=platform.python_implementation(),
                 major=str(sys.version_info.major), minor=str(sys.version_info.minor),
                 patchlevel=str(sys.version_info.micro), version=platform.python_version()) == 1
    text = metrics.render().decode()
    assert "herald_build_info{" in text and "process_start_time_seconds" in text
