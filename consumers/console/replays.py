"""What the dead-letter page reads and replays through, apart from HTTP: the dead-letter topic (`DeadLetterSource`,
on Kafka or a fake in tests) and this worker's `ReplayLedger` of what it sent back.

A replay sends the exact positions its confirmation page listed, never a fresh reading of "all with reason R", and
the ledger refuses a position this worker already replayed: a double submit, a reload of the form, or a second
tab sends nothing twice. The ledger lives in the worker's memory (it starts empty after a restart, and another
worker's console does not see it); `herald dlq replay` keeps no ledger at all.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from aiokafka import AIOKafkaProducer

from consumers.console.context import ConsoleContext
from consumers.pipeline.deadletter_replay import (
    DeadLetter,
    DeadLetterTail,
    Replay,
    Replayed,
    plan_replay,
    read_dead_letter,
    read_dead_letters,
    republish,
)
from consumers.topics import kafka_client_kwargs
from schemas.settings import Settings

NEWEST = 10_000  # dead letters read per page view: the newest, by time
READ_TIMEOUT = 15.0  # seconds a page waits for the dead-letter topic before it says Kafka did not answer
EXTRAS_KEY = "dead_letters"  # the `ConsoleContext.extras` entry of this page's `DeadLetterDesk`


class DeadLetterSource(Protocol):
    """The dead-letter topic, as the page uses it."""

    async def tail(self, newest: int) -> DeadLetterTail: ...

    async def one(self, partition: int, offset: int) -> DeadLetter | None: ...

    async def republish(self, letters: Sequence[DeadLetter], sent: list[Replayed]) -> None:
        """Send `letters` back, appending each one sent to `sent` (so a failure part way is known)."""


class KafkaDeadLetters:
    """The dead-letter topic on the configured Kafka: a consumer without a group per reading, a producer per
    replay (both rare, and short)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def tail(self, newest: int) -> DeadLetterTail:
        return await asyncio.wait_for(read_dead_letters(self.settings, newest=newest), READ_TIMEOUT)

    async def one(self, partition: int, offset: int) -> DeadLetter | None:
        return await asyncio.wait_for(read_dead_letter(self.settings, partition, offset), READ_TIMEOUT)

    async def republish(self, letters: Sequence[DeadLetter], sent: list[Replayed]) -> None:
        producer = AIOKafkaProducer(**kafka_client_kwargs(self.settings))
        try:
            await producer.start()
            await republish(producer, letters, sent)
        finally:
            await producer.stop()


@dataclass
class Batch:
    """One confirmed replay: what went back where, and what was refused or not found."""

    id: str
    at: datetime
    sent: list[Replayed] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (position, why)
    missing: list[str] = field(default_factory=list)  # positions not in the topic's newest records
    error: str | None = None  # why the sending stopped, if it did

    @property
    def topics(self) -> dict[str, int]:
        """How many went back to each topic."""
        counts: dict[str, int] = {}
        for r in self.sent:
            counts[r.topic] = counts.get(r.topic, 0) + 1
        return counts


class ReplayLedger:
    """The positions this worker replayed (position -> what became of it) and its recent replays, bounded."""

    def __init__(self, *, positions: int = 100_000, batches: int = 200) -> None:
        self.replayed: OrderedDict[str, str] = OrderedDict()
        self.batches: OrderedDict[str, Batch] = OrderedDict()
        self.lock = asyncio.Lock()  # one replay at a time: the check and the sending are one step
        self._positions, self._batches = positions, batches

    def mark(self, position: str, what: str) -> None:
        self.replayed[position] = what
        self.replayed.move_to_end(position)
        while len(self.replayed) > self._positions:
            self.replayed.popitem(last=False)

    def keep(self, batch: Batch) -> None:
        self.batches[batch.id] = batch
        while len(self.batches) > self._batches:
            self.batches.popitem(last=False)


@dataclass
class DeadLetterDesk:
    """The page's state in the worker: where dead letters come from, and the ledger of replays."""

    source: DeadLetterSource
    ledger: ReplayLedger = field(default_factory=ReplayLedger)


def desk(ctx: ConsoleContext) -> DeadLetterDesk:
    """This worker's desk, made on first use (tests put one with a fake source in `extras` first)."""
    found = ctx.extras.get(EXTRAS_KEY)
    if not isinstance(found, DeadLetterDesk):
        found = ctx.extras[EXTRAS_KEY] = DeadLetterDesk(KafkaDeadLetters(ctx.settings))
    return found


async def replay_positions(desk: DeadLetterDesk, wanted: set[str], now: datetime) -> Batch:
    """Replay exactly the dead letters at `wanted`, refusing those the ledger holds (and the truncated or
    sourceless ones), and record the outcome. Positions are marked before the sending starts, under the lock,
    so a second submit arriving meanwhile finds them taken; one whose sending failed is unmarked again."""
    batch = Batch(id=secrets.token_urlsafe(9), at=now)
    tail = await desk.source.tail(NEWEST)
    known = {d.where: d for d in tail.letters if d.where in wanted}
    # A position older than the newest records (chosen on its own page) is read on its own.
    for position in sorted(wanted - set(known) - set(desk.ledger.replayed)):
        partition, _, offset = position.partition("/")
        if (letter := await desk.source.one(int(partition), int(offset))) is not None:
            known[position] = letter
    async with desk.ledger.lock:
        ledger = desk.ledger.replayed
        plan: Replay = plan_replay(known.values(), offsets=wanted, reason=None, everything=False, replayed=ledger)
        batch.refused = [(d.where, why) for d, why in plan.refused]
        batch.refused += [(p, f"already replayed ({ledger[p]})") for p in sorted(wanted - set(known)) if p in ledger]
        batch.missing = sorted(wanted - set(known) - set(ledger))
        for d in plan.send:
            desk.ledger.mark(d.where, f"being sent to {d.source_topic}")
        try:
            await desk.source.republish(plan.send, batch.sent)
        except Exception as exc:  # Kafka refused or went away: say so; what did not go is not marked
            batch.error = f"{type(exc).__name__}: the replay stopped there; the rest was not sent"
        stamp = now.strftime("%Y-%m-%d %H:%M:%S UTC")
        for r in batch.sent:
            desk.ledger.mark(r.where, f"at {stamp} to {r.to}")
        gone = {r.where for r in batch.sent}
        for d in plan.send:
            if d.where not in gone:
                ledger.pop(d.where, None)
        desk.ledger.keep(batch)
    return batch
