"""Every record gets an outcome: a handler's exception is dead-lettered, a dead letter that cannot be written is
tried until it is, and a batch whose writes were not acknowledged is handled again, its in-memory decisions undone
and what waits for the acknowledgements run once, after the pass that succeeded."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError

from consumers.cli.publish import make_event
from consumers.identity import record_message_id
from consumers.observe.metrics import Metrics
from consumers.pipeline import outcomes
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.ingest import IngestStage
from consumers.pipeline.outcomes import guarded, handle_batch, message_id_of
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import PENDING_ACKS, Record, once_durable
from consumers.pipeline.router import Router
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.status import StatusEmitter
from consumers.state.kvstore import MemoryStore
from schemas.catalog import Catalog
from schemas.status import Status
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
STAGE = "send_email"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes, "RETRY_FIRST", 0.001)


@dataclass
class AckingPublisher(RecordingPublisher):
    """Records every send; a durable one gets an acknowledgement as `FaustPublisher` gives it (collected for the
    batch, else awaited), the first `refuse` of them failing."""

    refuse: int = 0
    refuse_topic: str | None = None  # only durable sends to this topic are refused
    fail_sends: int = 0  # sends to `deadletter` that raise at once, as a producer that cannot take them

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Mapping[str, bytes] | None = None, *, durable: bool = False) -> None:
        if topic == "deadletter" and self.fail_sends:
            self.fail_sends -= 1
            raise KafkaTimeoutError()
        await super().send(topic, key, value, headers, durable=durable)
        if not durable:
            return
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.refuse and self.refuse_topic in (None, topic):
            self.refuse -= 1
            ack.set_exception(KafkaTimeoutError())
        else:
            ack.set_result(None)
        pending = PENDING_ACKS.get()
        if pending is not None:
            pending.append(ack)
        else:
            await ack


def dead_letters(publisher: RecordingPublisher | None = None) -> tuple[DeadLetters, RecordingPublisher, Metrics]:
    publisher, metrics = publisher or AckingPublisher(), Metrics()
    statuses = StatusEmitter(publisher, metrics, b"secret", lambda: NOW)
    return DeadLetters(publisher, metrics, statuses), publisher, metrics


def record(offset: int = 7, key: bytes | None = b"msg-0123456789abcdef01234567") -> Record:
    return Record(topic="herald.dispatch.email", partition=2, offset=offset, key=key, value=b'{"x": 1}')


async def broken(_record: Record) -> None:
    raise ZeroDivisionError("a bug")


WHERE = record_message_id("herald.dispatch.email", 2, 7)
MESSAGE_IDS = [
    ("dispatch_key_kept", b"msg-0123456789abcdef01234567", "msg-0123456789abcdef01234567"),
    ("recipient_key", b"user-42", WHERE),
    ("no_key", None, WHERE),
    ("absurd_msg_key", b"msg-" + b"x" * 60, WHERE),
    ("undecodable_msg_key", b"msg-\xff", "msg-\ufffd"),
]


@pytest.mark.parametrize(("key", "expected"), [c[1:] for c in MESSAGE_IDS], ids=[c[0] for c in MESSAGE_IDS])
async def test_guarded__a_handler_exception_is_dead_lettered_as_internal_error_under_the_message_id(
        key: bytes | None, expected: str) -> None:
    letters, publisher, metrics = dead_letters()
    rec = record(key=key)
    assert message_id_of(rec) == expected
    await guarded(broken, letters, STAGE, rec)
    [letter] = publisher.on("deadletter")
    assert (letter.key, letter.value) == (key, rec.value)
    assert {k: letter.headers[k] for k in ("herald-error", "herald-error-class", "herald-error-detail",
                                            "herald-stage", "herald-message-id", "herald-source-offset")} == {
        "herald-error": b"internal_error", "herald-error-class": b"ZeroDivisionError",
        "herald-error-detail": b"ZeroDivisionError", "herald-stage": STAGE.encode(),
        "herald-message-id": expected.encode(), "herald-source-offset": b"7"}
    [status] = publisher.statuses()
    assert (status.status, status.message_id, status.error) == (Status.DEAD_LETTERED, expected, "internal_error")
    assert metrics.dead_letters.labels(STAGE, "internal_error")._value.get() == 1
    assert metrics.dead_letter_failures.labels(STAGE)._value.get() == 0


async def test_guarded__a_handler_that_succeeds_leaves_no_trace() -> None:
    letters, publisher, _ = dead_letters()
    seen: list[Record] = []

    async def ok(r: Record) -> None:
        seen.append(r)

    await guarded(ok, letters, STAGE, record())
    assert seen == [record()] and publisher.records == []


async def test_guarded__a_dead_letter_that_fails_twice_is_written_on_the_third_try() -> None:
    letters, publisher, metrics = dead_letters(AckingPublisher(fail_sends=2))
    await asyncio.wait_for(guarded(broken, letters, STAGE, record()), timeout=5)
    [letter] = publisher.on("deadletter")
    assert letter.headers["herald-error"] == b"internal_error"
    assert [s.status for s in publisher.statuses()] == [Status.DEAD_LETTERED]
    assert metrics.dead_letter_failures.labels(STAGE)._value.get() == 2
    assert metrics.dead_letters.labels(STAGE, "internal_error")._value.get() == 1  # one dead letter, not three


async def test_guarded__a_dead_letter_never_written_keeps_trying_until_cancelled() -> None:
    letters, publisher, metrics = dead_letters(AckingPublisher(fail_sends=10**9))
    task = asyncio.create_task(guarded(broken, letters, STAGE, record()))
    while metrics.dead_letter_failures.labels(STAGE)._value.get() < 3:
        await asyncio.sleep(0.001)
    assert not task.done()  # the record has no outcome, so guarded does not return
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert publisher.records == []


async def test_guarded__cancellation_in_the_handler_is_not_dead_lettered() -> None:
    letters, publisher, _ = dead_letters()

    async def cancelled(_record: Record) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await guarded(cancelled, letters, STAGE, record())
    assert publisher.records == []


@dataclass
class Script:
    """A handler that publishes one durable record per record handled and defers a step with its undo."""

    publisher: AckingPublisher
    handled: list[int]
    undone: list[int]
    after: list[tuple[int, int]]  # (offset, records handled when the step ran)

    async def __call__(self, r: Record) -> None:
        self.handled.append(r.offset)
        await self.publisher.send("dispatch.email", r.key, r.value or b"", durable=True)

        async def step() -> None:
            self.after.append((r.offset, len(self.handled)))

        await once_durable(step, undo=lambda: self.undone.append(r.offset))


def script(refuse: int = 0) -> tuple[Script, DeadLetters, AckingPublisher, Metrics]:
    letters, publisher, metrics = dead_letters(AckingPublisher(refuse=refuse))
    assert isinstance(publisher, AckingPublisher)
    return Script(publisher, [], [], []), letters, publisher, metrics


RECORDS = [record(offset=o, key=f"msg-{o}".encode()) for o in range(3)]


async def test_handle_batch__acknowledged_writes_run_the_after_steps_once() -> None:
    handler, letters, publisher, metrics = script()
    await handle_batch(RECORDS, handler, stage=STAGE, dead_letters=letters)
    assert len(publisher.on("dispatch.email")) == 3
    assert handler.handled == [0, 1, 2] and handler.undone == []
    assert handler.after == [(0, 3), (1, 3), (2, 3)]  # after every record was handled, not after each
    assert metrics.batch_retries.labels(STAGE)._value.get() == 0


async def test_handle_batch__an_unacknowledged_write_undoes_and_handles_the_batch_again() -> None:
    handler, letters, publisher, metrics = script(refuse=1)
    await asyncio.wait_for(handle_batch(RECORDS, handler, stage=STAGE, dead_letters=letters), timeout=5)
    assert handler.handled == [0, 1, 2, 0, 1, 2]  # the whole batch, from its first record
    assert handler.undone == [2, 1, 0]  # once each, latest first
    assert handler.after == [(0, 6), (1, 6), (2, 6)]  # once, after the pass that was acknowledged
    assert len(publisher.on("dispatch.email")) == 6
    assert metrics.batch_retries.labels(STAGE)._value.get() == 1
    assert publisher.on("deadletter") == []


async def test_handle_batch__keeps_handling_until_acknowledged() -> None:
    handler, letters, _, metrics = script(refuse=4)  # four refused acks: passes 1 and 2 fail (3 acks a pass)
    await asyncio.wait_for(handle_batch(RECORDS, handler, stage=STAGE, dead_letters=letters), timeout=5)
    assert handler.handled == [0, 1, 2] * 3
    assert sorted(handler.undone) == [0, 0, 1, 1, 2, 2]
    assert [offset for offset, _ in handler.after] == [0, 1, 2]
    assert metrics.batch_retries.labels(STAGE)._value.get() == 2


async def test_handle_batch__a_dead_letter_not_acknowledged_is_written_again() -> None:
    letters, publisher, metrics = dead_letters(AckingPublisher(refuse=1, refuse_topic="deadletter"))
    await asyncio.wait_for(handle_batch([record()], broken, stage=STAGE, dead_letters=letters), timeout=5)
    assert len(publisher.on("deadletter")) == 2
    assert metrics.batch_retries.labels(STAGE)._value.get() == 1


async def test_handle_batch__a_failing_after_step_does_not_stop_the_others() -> None:
    letters, _, _ = dead_letters()
    ran: list[int] = []

    async def handle(r: Record) -> None:
        async def step() -> None:
            ran.append(r.offset)
            if r.offset == 0:
                raise RuntimeError("store down")

        await once_durable(step)

    await handle_batch(RECORDS, handle, stage=STAGE, dead_letters=letters)
    assert ran == [0, 1, 2]


async def test_handle_batch__concurrently_handles_every_record_at_once() -> None:
    letters, publisher, _ = dead_letters()
    in_flight, most, handled = 0, 0, []

    async def handle(r: Record) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01 * (3 - r.offset))  # the first record finishes last
        if r.offset == 1:
            raise RuntimeError("bug")
        handled.append(r.offset)
        in_flight -= 1

    await handle_batch(RECORDS, handle, stage=STAGE, dead_letters=letters, concurrently=True)
    assert sorted(handled) == [0, 2] and most == 3
    [letter] = publisher.on("deadletter")
    assert letter.headers["herald-message-id"] == b"msg-1"


@pytest.mark.parametrize("concurrently", [False, True], ids=["in_order", "concurrently"])
async def test_handle_batch__cancellation_propagates_and_nothing_after_runs(concurrently: bool) -> None:
    handler, letters, publisher, metrics = script()
    started, never = asyncio.Event(), asyncio.Event()

    async def stuck(r: Record) -> None:
        await handler(r)
        if r.offset == 1:
            started.set()
            await never.wait()

    task = asyncio.create_task(handle_batch(RECORDS, stuck, stage=STAGE, dead_letters=letters,
                                            concurrently=concurrently))
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert handler.after == [] and handler.undone == []
    assert publisher.on("deadletter") == []
    assert metrics.batch_retries.labels(STAGE)._value.get() == 0


async def test_handle_batch__cancellation_while_waiting_to_retry_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes, "RETRY_FIRST", 60.0)
    handler, letters, _, metrics = script(refuse=1)
    task = asyncio.create_task(handle_batch(RECORDS, handler, stage=STAGE, dead_letters=letters))
    while metrics.batch_retries.labels(STAGE)._value.get() < 1:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert handler.handled == [0, 1, 2] and handler.after == []


# --- the ingest stage under handle_batch: undoing its pending decisions keeps a retried event from being lost ----

CATALOG = Catalog.model_validate({"frequency_caps": {"promotional": {"count": 5, "per": "1d"}}, "types": {
    "offer.loyalty": {"category": "promotional", "priority": "bulk", "channels": ["email"], "ttl": "2d",
                      "quiet_hours": "ignore", "required": []}}})


async def test_handle_batch__a_retried_ingest_batch_is_not_taken_for_its_own_duplicate() -> None:
    publisher, metrics, dedupe, caps = AckingPublisher(refuse=1, refuse_topic="dispatch.email"), Metrics(), \
        MemoryStore(), MemoryStore()
    statuses = StatusEmitter(publisher, metrics, b"secret", lambda: NOW)
    router = Router(CATALOG, ("email",), clock=lambda: NOW, dedupe=dedupe, caps=caps)
    letters = DeadLetters(publisher, metrics, statuses)
    ingest = IngestStage(router, Outlets(publisher, statuses, letters, metrics),
                         Scheduler(MemoryStore(), publisher, statuses, clock=lambda: NOW))
    events = []
    for offset, key in enumerate(["promo-1", "promo-2"]):
        e = {**make_event("offer.loyalty", {"id": "user-42", "email": "ana@example.com"}, {}, idempotencykey=key),
             "time": NOW.isoformat()}
        events.append(Record(topic="herald.events", partition=0, offset=offset, key=b"user-42", value=orjson.dumps(e)))
    await asyncio.wait_for(handle_batch(events, ingest.handle, stage="route_events", dead_letters=letters), 5)
    # Two passes, each sending both: the second is not deduplicated against the first, which was never durable.
    assert [s.status for s in publisher.statuses()] == [Status.ACCEPTED] * 4
    assert len(publisher.on("dispatch.email")) == 4
    assert len({r.key for r in publisher.on("dispatch.email")}) == 2  # the same two messages, sent again
    assert len(list(dedupe.list_keys())) == 2
    assert [caps.get(k) for k in caps.list_keys()] == [b"2"]  # counted once, not for the failed pass too
    assert not router.pending.dedupe and not router.pending.caps
