"""Consumer lag and dead-letter depth, read from the broker beside the consumers, never through them.

Lag is what `kafka-consumer-groups.sh --describe` and KEDA's Kafka scaler report: a partition's end offset minus
its group's committed offset (the log start offset when the group has committed nothing there yet), for the
partitions this worker owns, so the gauges of all workers add up to the group's lag. It is read with a client of
its own (one ListOffsets and one OffsetFetch per group every interval) rather than from the consumers' fetch state:
a paused partition (a full buffer in the normal lane, a batch in flight in the critical lane) keeps a stale
high-water mark there, exactly when the lag matters, and Faust's consumer lives in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumers.observe.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lane:
    """A consumer group and the topics it reads: `name` is the `lane` label (`normal`, `critical`)."""

    name: str
    group: str
    topics: tuple[str, ...]


class Offsets(Protocol):
    """What the monitor asks the broker (a fake in tests)."""

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]: ...

    async def start_offsets(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]: ...

    async def committed(self, group: str, partitions: Sequence[TopicPartition]
                        ) -> Mapping[TopicPartition, int | None]: ...

    async def partitions(self, topic: str) -> set[int]: ...

    async def close(self) -> None: ...


def partition_lag(ends: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int | None],
                  starts: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """End minus committed offset per partition; from the log start where the group has no commit (it reads from
    the earliest record); never below 0 (offsets read a moment apart)."""
    lag = {}
    for tp, end in ends.items():
        done = committed.get(tp)
        if done is None or done < 0:
            done = starts.get(tp, 0)
        lag[tp] = max(0, end - done)
    return lag


def depth(starts: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]) -> int:
    """Records a topic holds: end minus start offset, summed over its partitions."""
    return sum(max(0, end - starts.get(tp, end)) for tp, end in ends.items())


class KafkaOffsets:
    """`Offsets` over a group-less consumer (end and start offsets, partitions) and an admin client (commits).
    Both connect on first use."""

    def __init__(self, client_kwargs: Mapping[str, Any]) -> None:
        self.client_kwargs = dict(client_kwargs)
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def _reader(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self.client_kwargs, enable_auto_commit=False, client_id="herald-lag")
            try:
                await consumer.start()
            except BaseException:  # its half-open connections closed now, not when it is collected
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        return dict(await (await self._reader()).end_offsets(list(partitions))) if partitions else {}

    async def start_offsets(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        return dict(await (await self._reader()).beginning_offsets(list(partitions))) if partitions else {}

    async def committed(self, group: str, partitions: Sequence[TopicPartition]
                        ) -> Mapping[TopicPartition, int | None]:
        if not partitions:
            return {}
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self.client_kwargs, client_id="herald-lag")
            try:
                await admin.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await admin.close()
                raise
            self._admin = admin
        found = await self._admin.list_consumer_group_offsets(group, partitions=list(partitions))
        return {tp: (meta.offset if meta.offset >= 0 else None) for tp, meta in found.items()}

    async def partitions(self, topic: str) -> set[int]:
        consumer = await self._reader()
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            await consumer.topics()  # refreshes the metadata (the topic may be new)
            numbers = consumer.partitions_for_topic(topic)
        return set(numbers or ())

    async def close(self) -> None:
        consumer, admin, self._consumer, self._admin = self._consumer, self._admin, None, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()


class LagMonitor:
    """Sets `herald_consumer_lag{lane,topic,partition}` for the partitions `owned()` returns, every `interval`
    seconds, and `herald_dead_letters_pending` every `dead_letter_every` readings. A partition this worker no longer
    owns loses its series. A broker error skips one reading (the gauges keep their last values) and never stops
    the worker."""

    def __init__(self, metrics: Metrics, offsets: Offsets, lanes: Iterable[Lane], *, owned: Callable[[], Iterable[int]],
                 dead_letter_topic: str | None, interval: float = 10.0, dead_letter_every: int = 3) -> None:
        self.metrics = metrics
        self.offsets = offsets
        self.lanes = tuple(lanes)
        self.owned = owned
        self.dead_letter_topic = dead_letter_topic
        self.interval = interval
        self.dead_letter_every = max(1, dead_letter_every)
        self._series: set[tuple[str, str, str]] = set()

    async def measure_lag(self) -> None:
        """One reading of every lane's lag on the owned partitions."""
        owned = sorted(set(self.owned()))
        series: dict[tuple[str, str, str], int] = {}
        for lane in self.lanes:
            tps = [TopicPartition(topic, p) for topic in lane.topics for p in owned]
            if not tps:
                continue
            ends = await self.offsets.end_offsets(tps)
            committed = await self.offsets.committed(lane.group, tps)
            uncommitted = [tp for tp in tps if committed.get(tp) is None]
            starts = await self.offsets.start_offsets(uncommitted) if uncommitted else {}
            for tp, lag in partition_lag(ends, committed, starts).items():
                series[(lane.name, tp.topic, str(tp.partition))] = lag
        gauge = self.metrics.consumer_lag
        for labels in self._series - series.keys():  # partitions let go since the last reading
            gauge.remove(*labels)
        for labels, lag in series.items():
            gauge.labels(*labels).set(lag)
        self._series = set(series)

    async def measure_dead_letters(self) -> None:
        """Records held in the dead-letter topic, all partitions (the same reading on every worker)."""
        if self.dead_letter_topic is None:
            return
        tps = [TopicPartition(self.dead_letter_topic, p)
               for p in sorted(await self.offsets.partitions(self.dead_letter_topic))]
        if not tps:
            return
        ends = await self.offsets.end_offsets(tps)
        starts = await self.offsets.start_offsets(tps)
        self.metrics.dead_letters_pending.set(depth(starts, ends))

    async def run(self) -> None:
        """Read for ever (a worker task); closes its clients when cancelled."""
        readings, failing = 0, False
        try:
            while True:
                try:
                    await self.measure_lag()
                    if readings % self.dead_letter_every == 0:
                        await self.measure_dead_letters()
                    failing = False
                except Exception as exc:  # a metric must never stop the worker; the next reading tries again
                    if not failing:  # once per outage, not every few seconds
                        log.warning("consumer lag not read", extra={"error_class": type(exc).__name__})
                    failing = True
                readings += 1
                await asyncio.sleep(self.interval)
        finally:
            await self.offsets.close()
