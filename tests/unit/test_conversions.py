"""Conversion attribution: a goal event converts the last reminder sent to the same person within the window, once,
and nothing of anyone else's; the ledger's entries expire with the window and leave with `herald forget`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from consumers.cli.publish import make_event
from consumers.observe.metrics import Metrics
from consumers.pipeline.conversions import LATE_GOALS, Attribution, last_touch, message_ids
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.fallback import next_dispatch
from consumers.pipeline.ingest import IngestStage
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import AFTER_ACKS, Record
from consumers.pipeline.router import Router
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.status import StatusEmitter
from consumers.state.conversions import SentTouch, Touch, goals_expiry
from consumers.state.erasure import forget
from consumers.state.kvstore import MemoryStore
from consumers.state.retention import Janitor
from consumers.state.stores import PARTITIONED, State
from schemas.catalog import Catalog, CatalogError
from schemas.dispatch import Dispatch
from schemas.experiments import Conversion
from schemas.status import DeliveryStatus, Status
from tests.fakes import FakeClock, RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
CATALOG = Catalog.model_validate({"types": {
    "payment.due": {"category": "transactional", "priority": "normal", "channels": ["email", "sms"], "ttl": "7d",
                    "quiet_hours": "ignore", "required": ["invoice_number"],
                    "conversion": {"goal": "payment.completed", "within": "7d", "match": "invoice_number"},
                    "variants": {"a": {"weight": 1}, "b": {"weight": 1}}},
    "invoice.issued": {"category": "transactional", "priority": "normal", "channels": ["email"], "ttl": "7d",
                       "quiet_hours": "ignore", "conversion": {"goal": "payment.completed", "within": "30d"}},
    "payment.completed": {"category": "transactional", "priority": "normal", "channels": [], "ttl": "7d"}}})
ANA = {"id": "user-42", "email": "ana@example.com", "phone": "+34600111222"}
BOB = {"id": "user-7", "email": "bob@example.com"}


class Rig:
    """The ingest stage with attribution, on memory stores and a clock the test moves; sends are simulated by
    calling the delivery hook with the dispatches the stage published."""

    def __init__(self) -> None:
        self.clock = FakeClock(NOW)
        self.publisher, metrics = RecordingPublisher(), Metrics()
        self.statuses = StatusEmitter(self.publisher, metrics, b"secret", self.clock)
        self.store = MemoryStore()
        self.goals = Attribution(self.store, CATALOG, self.statuses, self.clock, partitions=3)
        router = Router(CATALOG, ("email", "sms"), clock=self.clock)
        scheduler = Scheduler(MemoryStore(), self.publisher, self.statuses, clock=self.clock)
        outlets = Outlets(self.publisher, self.statuses, DeadLetters(self.publisher, metrics, self.statuses), metrics)
        self.ingest = IngestStage(router, outlets, scheduler, goals=self.goals)
        self.offset = 0

    def record(self, event_type: str, to: dict[str, Any], payload: dict[str, Any], *,
               at: datetime | None = None) -> Record:
        event = make_event(event_type, to, payload)
        event["time"] = (at or self.clock()).isoformat()
        self.offset += 1
        return Record(topic="herald.events", partition=0, offset=self.offset, key=to["id"].encode(),
                      value=orjson.dumps(event), headers={}, timestamp=None)

    async def publish(self, event_type: str, to: dict[str, Any], payload: dict[str, Any], *,
                      at: datetime | None = None) -> Record:
        record = self.record(event_type, to, payload, at=at)
        await self.ingest.handle(record)
        return record

    def dispatches(self) -> list[Dispatch]:
        return [Dispatch.model_validate_json(r.value) for r in self.publisher.records
                if r.topic.startswith("dispatch.")]

    async def send_all(self) -> list[Dispatch]:
        """Every dispatch published so far, sent now (the delivery stage's after_send hook)."""
        sent = self.dispatches()
        for d in sent:
            await self.goals.after_send(d, "smtp")
        self.publisher.records = [r for r in self.publisher.records if not r.topic.startswith("dispatch.")]
        return sent

    def converted(self) -> list[DeliveryStatus]:
        return [s for s in self.publisher.statuses() if s.status is Status.CONVERTED]


@pytest.mark.parametrize(("goal_after", "converts"), [
    (timedelta(0), True),  # the same instant
    (timedelta(hours=1), True),
    (WEEK, True),  # the window's last instant counts
    (WEEK + timedelta(seconds=1), False),  # just past it
    (-timedelta(seconds=1), False),  # paid before the reminder was sent: the reminder did nothing
], ids=["at-send", "an-hour-later", "window-edge", "past-the-window", "before-the-send"])
async def test_attribution__window_edges(goal_after: timedelta, converts: bool) -> None:
    rig = Rig()
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    [reminder] = await rig.send_all()
    rig.clock.advance(days=8)  # the goal's own time decides, not when it is read
    await rig.publish("payment.completed", ANA, {"invoice_number": "INV-1"}, at=NOW + goal_after)

    assert [s.message_id for s in rig.converted()] == ([reminder.message_id] if converts else [])


async def test_attribution__the_converted_status_describes_the_message_and_names_the_goal() -> None:
    rig = Rig()
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    [reminder] = await rig.send_all()
    sent_status = rig.statuses.describe(reminder, Status.SENT)
    rig.clock.advance(hours=5)
    goal = await rig.publish("payment.completed", ANA, {"invoice_number": "INV-1"})

    [converted] = rig.converted()
    goal_id = orjson.loads(goal.value or b"")["id"]
    assert converted.detail == f"goal:payment.completed {goal_id}"
    assert (converted.event_id, converted.event_type, converted.channel, converted.provider, converted.recipient,
            converted.variant, converted.template) == (
        reminder.event_id, "payment.due", "email", "smtp", sent_status.recipient, reminder.variant,
        "payment.due/email")
    assert converted.variant in {"a", "b"} and converted.at == NOW + timedelta(hours=5)
    # The goal itself sends nothing and says nothing of itself.
    assert [s.status for s in rig.publisher.statuses()] == [Status.ACCEPTED, Status.CONVERTED]


async def test_attribution__a_goal_for_another_recipient_converts_nothing() -> None:
    rig = Rig()
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    await rig.send_all()
    await rig.publish("payment.completed", BOB, {"invoice_number": "INV-1"})
    assert rig.converted() == []


async def test_attribution__a_conversion_is_published_once_under_redelivery() -> None:
    rig = Rig()
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    await rig.send_all()
    goal = rig.record("payment.completed", ANA, {"invoice_number": "INV-1"})
    # Twice in one batch (its marks wait for the batch's acknowledgements), then once more after a restart.
    later: list[Callable[[], Awaitable[None]]] = []
    token = AFTER_ACKS.set(later)
    try:
        await rig.ingest.handle(goal)
        await rig.ingest.handle(goal)
    finally:
        AFTER_ACKS.reset(token)
    for step in later:
        await step()
    await rig.ingest.handle(goal)
    assert len(rig.converted()) == 1 and rig.goals.pending == set()


async def test_attribution__a_failed_batch_converts_again_when_it_is_handled_again() -> None:
    rig = Rig()
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    await rig.send_all()
    goal = rig.record("payment.completed", ANA, {"invoice_number": "INV-1"})
    later: list[Callable[[], Awaitable[None]]] = []
    token = AFTER_ACKS.set(later)
    try:
        await rig.ingest.handle(goal)
    finally:
        AFTER_ACKS.reset(token)
    rig.goals.pending.clear()  # the acknowledgements failed: the batch's undo, its marks never written
    await rig.ingest.handle(goal)
    assert len(rig.converted()) == 2  # at least once: the status was not known to be out


async def test_attribution__last_touch_converts_the_last_event_and_match_keeps_invoices_apart() -> None:
    rig = Rig()
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    [first] = await rig.send_all()
    rig.clock.advance(days=1)
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    [second] = await rig.send_all()
    rig.clock.advance(days=1)
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-2"})
    [other] = await rig.send_all()
    rig.clock.advance(hours=1)

    await rig.publish("payment.completed", ANA, {"invoice_number": "INV-1"})
    assert [s.message_id for s in rig.converted()] == [second.message_id]  # not the first, not INV-2's
    await rig.publish("payment.completed", ANA, {"invoice_number": "INV-1"})  # paid twice: the last one converted
    assert [s.message_id for s in rig.converted()] == [second.message_id]
    # A goal that does not name the invoice converts the person's last reminder of any.
    await rig.publish("payment.completed", ANA, {})
    assert [s.message_id for s in rig.converted()] == [second.message_id, other.message_id]
    assert first.message_id not in {s.message_id for s in rig.converted()}


async def test_attribution__each_type_whose_goal_it_is_gets_its_own_last_touch() -> None:
    rig = Rig()
    await rig.publish("invoice.issued", ANA, {"invoice_number": "INV-1"})
    rig.clock.advance(days=1)
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    sent = await rig.send_all()
    await rig.publish("payment.completed", ANA, {"invoice_number": "INV-1"})
    assert {s.event_type for s in rig.converted()} == {"invoice.issued", "payment.due"}
    assert {s.message_id for s in rig.converted()} == {d.message_id for d in sent}


async def test_attribution__a_fallback_message_converts_in_place_of_the_failed_one() -> None:
    rig = Rig()
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    [email] = rig.dispatches()
    sms = next_dispatch(email)
    assert sms is not None and message_ids(email) == [email.message_id, sms.message_id]
    await rig.goals.after_send(sms, "twilio")  # the email failed; its SMS went out
    await rig.publish("payment.completed", ANA, {"invoice_number": "INV-1"})
    [converted] = rig.converted()
    assert (converted.message_id, converted.channel, converted.variant) == (sms.message_id, "sms", email.variant)


async def test_attribution__a_message_never_sent_never_converts() -> None:
    rig = Rig()
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    await rig.publish("payment.completed", ANA, {"invoice_number": "INV-1"})
    assert rig.converted() == []


def test_last_touch__pure_choice_over_touches_and_sent_records() -> None:
    conversion = Conversion(goal="g.g", within=timedelta(days=2))
    touches = [Touch(event_id=f"e{i}", event_type="t.t", ids=[f"m{i}", f"m{i}-sms"], until=NOW + WEEK)
               for i in range(3)]
    sent = {f"m{i}": SentTouch(message_id=f"m{i}", event_id=f"e{i}", event_type="t.t", event_time=NOW,
                               channel="email", sent_at=NOW + timedelta(days=i), until=NOW + WEEK) for i in range(3)}
    sent["m2-sms"] = sent["m2"].model_copy(update={"message_id": "m2-sms", "channel": "sms"})

    def chosen(at: datetime) -> list[str]:
        return [s.message_id for s in last_touch(touches, sent.get, event_type="t.t", goal_at=at,
                                                 conversion=conversion, goal_match=None)]

    assert chosen(NOW + timedelta(days=2, hours=1)) == ["m2", "m2-sms"]  # every message of the last event
    assert chosen(NOW + timedelta(days=1, hours=1)) == ["m1"]  # m2 not sent yet
    assert chosen(NOW + timedelta(days=5)) == []  # past every window
    sent["m2"] = sent["m2"].model_copy(update={"converted": "evt-x"})
    assert chosen(NOW + timedelta(days=2, hours=1)) == ["m2-sms"]


async def test_ledger__entries_expire_with_their_window_and_the_janitor_sweeps_them() -> None:
    rig = Rig()
    await rig.publish("payment.due", ANA, {"invoice_number": "INV-1"})
    await rig.send_all()
    assert sorted(k.split("|")[1] for k in rig.store.list_keys()) == ["goal", "sent"]
    janitor = Janitor([Attribution.retention(rig.store)], clock=lambda: NOW + WEEK + LATE_GOALS - timedelta(seconds=1),
                      owns=lambda _k: True)
    assert (await janitor.sweep()).deleted == {"state.conversions": 0}
    # The sent record goes a week after the send (and a day for late goal events); the list when its last message
    # can no longer convert (the message's own expiry, a week, plus the window and the day).
    janitor.clock = lambda: NOW + WEEK + LATE_GOALS
    assert (await janitor.sweep()).deleted == {"state.conversions": 1}
    janitor.clock = lambda: NOW + 2 * WEEK + LATE_GOALS
    assert (await janitor.sweep()).deleted == {"state.conversions": 1}
    assert list(rig.store.list_keys()) == []
    assert goals_expiry("k", b'{"until": "2026-11-24T10:00:00"}') == NOW  # naive times are UTC


async def test_ledger__forget_erases_the_person_and_no_one_else() -> None:
    rig = Rig()
    for person in (ANA, BOB):
        await rig.publish("payment.due", person, {"invoice_number": "INV-1"})
    await rig.send_all()
    state = State.in_memory()
    state.conversions = rig.store
    erased = await forget({**{n: getattr(state, n) for n in ("preferences", "caps", "schedules", "sends", "documents",
                                                             "contacts")}, "conversions": rig.store},
                          "user-42", secret=b"secret")
    assert erased.deleted["conversions"] == 2
    assert {k.split("|")[0] for k in rig.store.list_keys()} == {"user-7"}
    assert "conversions" in PARTITIONED


@pytest.mark.parametrize(("types", "problem"), [
    ({"a.due": {"conversion": {"goal": "nope.nope", "within": "7d"}}}, "conversion goal nope.nope is not a type"),
    ({"a.due": {"conversion": {"goal": "a.due", "within": "7d"}}}, "cannot be its own conversion goal"),
    ({"a.due": {"conversion": {"goal": "a.paid", "within": "7d", "match": "invoice"}}},
     "conversion.match 'invoice' must be one of the required fields"),
    ({"a.due": {"conversion": {"goal": "a.paid", "within": "0s"}}}, "within must be positive"),
    ({"a.due": {}, "a.other": {"channels": []}}, "types.a.other: channels must list at least one channel"),
], ids=["unknown-goal", "own-goal", "match-not-required", "empty-window", "channel-less-non-goal"])
def test_catalog__conversions_are_validated(types: dict[str, dict[str, Any]], problem: str, tmp_path: Any) -> None:
    base = {"category": "transactional", "priority": "normal", "channels": ["email"], "ttl": "1d"}
    raw = {"types": {"a.paid": base, **{k: {**base, **v} for k, v in types.items()}}}
    path = tmp_path / "catalog.yaml"
    path.write_text(orjson.dumps(raw).decode())
    with pytest.raises(CatalogError, match=problem):
        Catalog.load(path)


def test_catalog__a_goal_type_may_have_no_channels_and_routes_to_nothing() -> None:
    router = Router(CATALOG, ("email",), clock=lambda: NOW)
    event = make_event("payment.completed", ANA, {})
    result = router.route(orjson.dumps(event))
    assert (result.rejection, result.dispatches, result.scheduled, result.outcome) == (None, [], [], "accepted")
