"""Offsets held back when a worker stops mid-record: Faust acknowledges every event an agent leaves, even one it
was cancelled on, so the agents mark those as settled without telling the consumer, and no commit passes them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

import pytest
from faust.types.tuples import TP, ConsumerMessage, Message

from consumers.observe.metrics import Metrics
from consumers.pipeline.agents import batched_agent, guarded_agent, hold_back
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.records import Record
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.unit


@dataclass
class FakeConsumer:
    """Stands in for Faust's consumer: `ack` is how an offset becomes safe to commit."""

    acked: list[int] = field(default_factory=list)

    def ack(self, message: Message) -> bool:
        self.acked.append(message.offset)
        message.acked = True
        return True


@dataclass
class FakeEvent:
    message: Message


def message(offset: int, kind: type[Message] = ConsumerMessage) -> Message:
    return kind("herald.events", 0, offset, 1_764_000_000.0, 0, [], b"user-42", b"{}", None, tp=TP("herald.events", 0))


@pytest.mark.parametrize("kind", [ConsumerMessage, Message], ids=["consumer_message", "message"])
def test_hold_back__faust_ack_then_does_nothing_and_the_consumer_never_hears_of_it(kind: type[Message]) -> None:
    consumer, event = FakeConsumer(), FakeEvent(message(5, kind))
    hold_back([event])  # type: ignore[list-item]
    assert event.message.ack(consumer) is False  # type: ignore[arg-type]
    assert consumer.acked == []


def test_hold_back__without_it_faust_ack_tells_the_consumer() -> None:
    # The control: what hold_back prevents is what a plain ack does.
    consumer, event = FakeConsumer(), FakeEvent(message(5))
    assert event.message.ack(consumer) is True  # type: ignore[arg-type]
    assert consumer.acked == [5]


def test_hold_back__every_event_given_and_no_other() -> None:
    consumer, events = FakeConsumer(), [FakeEvent(message(o)) for o in range(3)]
    hold_back(events[:2])  # type: ignore[arg-type]
    assert [e.message.ack(consumer) for e in events] == [False, False, True]  # type: ignore[arg-type]
    assert consumer.acked == [2]


@dataclass
class FakeStream:
    """The part of a Faust stream the agents use, acknowledging as Faust does: each event the agent moves past
    or leaves, in a `finally`, whatever happened."""

    events_in: list[FakeEvent]
    consumer: FakeConsumer = field(default_factory=FakeConsumer)
    opened: list[AsyncGenerator[object, None]] = field(default_factory=list)

    async def close(self) -> None:
        """Run the iterators' `finally` now, as Faust does when the agent stops, not when they are collected."""
        for iterator in self.opened:
            await iterator.aclose()

    def events(self) -> AsyncIterator[FakeEvent]:
        iterator = self._events()
        self.opened.append(iterator)
        return iterator

    def take_events(self, max_: int, within: float) -> AsyncIterator[list[FakeEvent]]:
        iterator = self._take_events(max_)
        self.opened.append(iterator)
        return iterator

    async def _events(self) -> AsyncGenerator[FakeEvent, None]:
        for event in self.events_in:
            try:
                yield event
            finally:
                event.message.ack(self.consumer)  # type: ignore[arg-type]

    async def _take_events(self, max_: int) -> AsyncGenerator[list[FakeEvent], None]:
        for start in range(0, len(self.events_in), max_):
            batch = self.events_in[start:start + max_]
            try:
                yield batch
            finally:
                for event in batch:
                    event.message.ack(self.consumer)  # type: ignore[arg-type]


AGENTS = [batched_agent, guarded_agent]


@pytest.mark.parametrize("make", AGENTS, ids=["batched_agent", "guarded_agent"])
async def test_agents__stopped_mid_record_the_offset_is_not_acknowledged(make: object) -> None:
    stream = FakeStream([FakeEvent(message(o)) for o in range(3)])
    reached, never = asyncio.Event(), asyncio.Event()

    async def handler(r: Record) -> None:
        if r.offset == 1:
            reached.set()
            await never.wait()

    publisher = RecordingPublisher()
    agent = make(handler, DeadLetters(publisher, Metrics()), "route_events")  # type: ignore[operator]
    task = asyncio.create_task(agent(stream))
    await asyncio.wait_for(reached.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.close()
    # One record at a time, the one it was stopped on is held back; a batch is held back whole.
    assert stream.consumer.acked == ([0] if make is guarded_agent else [])
    assert publisher.records == []  # stopping is not a failure of the record: no dead letter


@pytest.mark.parametrize("make", AGENTS, ids=["batched_agent", "guarded_agent"])
async def test_agents__a_record_that_fails_is_dead_lettered_and_acknowledged(make: object) -> None:
    stream = FakeStream([FakeEvent(message(o)) for o in range(3)])

    async def handler(r: Record) -> None:
        if r.offset == 1:
            raise RuntimeError("bug")

    publisher = RecordingPublisher()
    agent = make(handler, DeadLetters(publisher, Metrics()), "route_events")  # type: ignore[operator]
    await asyncio.wait_for(agent(stream), timeout=5)
    assert stream.consumer.acked == [0, 1, 2]
    [letter] = publisher.on("deadletter")
    assert (letter.headers["herald-error"], letter.headers["herald-source-offset"]) == (b"internal_error", b"1")
