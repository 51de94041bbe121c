"""Which partitions this worker owns. Herald's unit of scale is the partition: every topic Herald creates has
`HERALD_PARTITIONS` partitions, and Faust's assignor gives a worker the same partition numbers of every topic its
agents read (co-partitioned), so "partition p" names one slice of recipients (events keyed by recipient id) and one
slice of messages (dispatches keyed by message id) at once. State is partitioned the same way, the critical lane
reads the same partition numbers of its topics, and provider rate limits are shared in proportion.

`Ownership` is told of every rebalance by the app (Faust's `on_partitions_revoked` / `on_partitions_assigned`
signals) and tells its listeners in turn: revocations first, awaited, in the reverse order of registration (what
reads a store lets go before the store does), so a partition is let go everywhere before the group hands it to
another worker; then assignments, in the order of registration.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

log = logging.getLogger(__name__)

# (assigned, revoked): the partitions gained and lost in one change.
Listener = Callable[[frozenset[int], frozenset[int]], Awaitable[None]]

_PARTITIONER = DefaultPartitioner()


@functools.lru_cache(maxsize=8192)
def partition_for(key: str, partitions: int) -> int:
    """The partition the Kafka producers' default partitioner (murmur2, as Java's) puts `key` in."""
    every = list(range(partitions))
    return int(_PARTITIONER(key.encode(), every, every))


class Ownership:
    """The partition numbers this worker owns out of `total`, and who to tell when they change."""

    def __init__(self, total: int, partitions: Iterable[int] | None = None) -> None:
        """`partitions` None: the worker owns every partition until told otherwise (one worker, tools, tests)."""
        self.total = total
        self.partitions: frozenset[int] = frozenset(range(total) if partitions is None else partitions)
        self._listeners: list[Listener] = []

    @property
    def share(self) -> float:
        """The fraction of the partitions this worker owns: its share of what the group may do together."""
        return len(self.partitions) / self.total if self.total else 0.0

    def owns_partition(self, partition: int) -> bool:
        return partition in self.partitions

    def owns(self, key: str) -> bool:
        """Whether the partition `key` hashes to (a recipient id, a message id) is this worker's."""
        return partition_for(key, self.total) in self.partitions

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def set(self, partitions: Iterable[int]) -> None:
        """The new full set; listeners hear what was gained and lost (nothing, when nothing changed)."""
        new = frozenset(partitions)
        assigned, revoked = new - self.partitions, self.partitions - new
        if not assigned and not revoked:
            return
        self.partitions = new
        log.info("partitions changed", extra={"owned": sorted(new), "assigned": sorted(assigned),
                                                "revoked": sorted(revoked)})
        # What is let go is let go in the reverse order of taking: the critical lane (which listens after the
        # stores it reads) finishes its batches on a partition before the stores release it.
        if revoked:
            for listener in reversed(self._listeners):
                await listener(frozenset(), revoked)
        if assigned:
            for listener in self._listeners:
                await listener(assigned, frozenset())

    async def revoke(self, partitions: Iterable[int]) -> None:
        """Let these go now (a rebalance starts): listeners finish what they do with them first."""
        await self.set(self.partitions - frozenset(partitions))


def follow_rebalances(app: faust.App, partitions: int, topic: str) -> Ownership:
    """An `Ownership` of `topic`'s partitions in this worker's group, kept up to date from Faust's rebalances. It
    owns nothing until the group assigns it partitions. Revocations are awaited inside Faust's own revoke callback,
    so a partition is let go before another worker is given it."""
    ownership = Ownership(partitions, partitions=())

    # mode's SignalHandlerT rejects every function, even one of exactly its signature: a typing bug of the library.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def let_go(app: faust.App, revoked: set[TP], **kwargs: object) -> None:
        await ownership.revoke({tp.partition for tp in revoked if tp.topic == topic})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def take(app: faust.App, assigned: set[TP], **kwargs: object) -> None:
        await ownership.set({tp.partition for tp in assigned if tp.topic == topic})

    return ownership
