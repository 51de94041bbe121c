"""`herald forget`: one person's state erased from every store, written by the stores' real writers; the rest kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumers.observe.metrics import Metrics
from consumers.pipeline.policy import cap_key
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.status import StatusEmitter
from consumers.state.conversations import Conversations, Question
from consumers.state.erasure import forget
from consumers.state.kvstore import MemoryStore
from consumers.state.sends import SendLedger
from consumers.state.stores import State
from schemas.catalog import Category
from schemas.dispatch import Dispatch
from schemas.events import Recipient
from schemas.status import Status
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SECRET = b"erasure-secret"


def dispatch(recipient: str, n: int, channel: str = "sms") -> Dispatch:
    to = Recipient(id=recipient, email=f"{recipient}@example.org", phone="+34600111222" if recipient == "ana"
                   else "+34600999888", name=recipient.title())
    return Dispatch(message_id=f"msg-{recipient}-{n}", event_id=f"evt-{n}", event_type="appointment.reminder",
                    event_time=NOW, channel=channel, category="transactional", priority="normal",
                    idempotency_key=f"k-{recipient}-{n}", to=to, payload={"appointment_id": f"APT-{n}"})


async def filled_state() -> tuple[State, RecordingPublisher]:
    state, publisher = State.in_memory(), RecordingPublisher()
    statuses = StatusEmitter(publisher, Metrics(), SECRET, lambda: NOW)
    scheduler = Scheduler(state.schedules, publisher, statuses, clock=lambda: NOW)
    sends = SendLedger(state.sends, lambda: NOW)
    conversations = Conversations(state.contacts, SECRET)
    for who in ("ana", "bob"):
        await scheduler.add(NOW + timedelta(days=1), dispatch(who, 1), "reminder")
        await sends.sent(dispatch(who, 2), "twilio", "SM1")
        await state.documents.put(dispatch(who, 3).message_id, dispatch(who, 3).model_dump_json().encode())
        question = Question.for_dispatch(dispatch(who, 2), _entry(), NOW)
        await conversations.remember(question, dispatch(who, 2).to.phone or "")
        await state.caps.put(cap_key(who, Category.TRANSACTIONAL, timedelta(days=1), NOW), b"2")
        await state.preferences.put(who, b'{"recipient_id": "%s"}' % who.encode())
    publisher.records.clear()
    return state, publisher


def _entry():  # type: ignore[no-untyped-def]
    from consumers.app import BUNDLED_CATALOG
    from schemas.catalog import Catalog

    return Catalog.load(BUNDLED_CATALOG).types["appointment.reminder"]


def stores(state: State) -> dict[str, MemoryStore]:
    return {name: getattr(state, name) for name in ("preferences", "caps", "schedules", "sends", "documents",
                                                    "contacts")}


async def test_erasure__every_store_loses_the_person_and_keeps_everyone_else() -> None:
    state, publisher = await filled_state()
    before = {name: set(store.list_keys()) for name, store in stores(state).items()}
    statuses = StatusEmitter(publisher, Metrics(), SECRET, lambda: NOW)

    erased = await forget(stores(state), "ana", secret=SECRET,
                          cancelled=lambda d: statuses.for_dispatch(d, Status.CANCELLED, detail="erased"))

    assert erased.deleted == {"preferences": 1, "caps": 1, "schedules": 1, "sends": 1, "documents": 1,
                              "contacts": 1}
    for name, store in stores(state).items():
        left = set(store.list_keys())
        assert len(left) == len(before[name]) - 1, name
        assert not any("ana" in (store.get(k) or b"").decode(errors="replace") or "ana" in k for k in left), name
    # The scheduled message will not go: it says so on herald.status, without the person's address.
    [cancelled] = publisher.statuses()
    assert (cancelled.message_id, cancelled.status, cancelled.detail) == ("msg-ana-1", Status.CANCELLED, "erased")
    assert b"+34600111222" not in publisher.on("status")[0].value


async def test_erasure__an_address_given_clears_its_questions_when_no_record_names_it() -> None:
    state = State.in_memory()
    conversations = Conversations(state.contacts, SECRET)
    question = Question.for_dispatch(dispatch("carol", 1), _entry(), NOW)
    await conversations.remember(question.model_copy(update={"recipient_id": "someone-else"}), "+34600777666")

    erased = await forget(stores(state), "carol", secret=SECRET, addresses=[("sms", "+34 600 77 76 66")])

    assert erased.deleted["contacts"] == 1
    assert list(state.contacts.list_keys()) == []


async def test_erasure__nobody_known_deletes_nothing() -> None:
    state, _ = await filled_state()
    erased = await forget(stores(state), "nobody", secret=SECRET)
    assert erased.total == 0
    assert erased.cancelled == []


async def test_erasure__address_opt_outs_stay_without_the_person_in_them() -> None:
    from consumers.state.preferences import PROMOTIONAL_PREFIX, AddressConsent, AddressConsents

    store = MemoryStore()
    consents = AddressConsents(store, SECRET, clock=lambda: NOW)
    key = consents.key("sms", "+34600111222")
    await consents.stop(key, "sms", "ana")
    await consents.stop(key, "sms", "bob")
    await consents.promotional_given("ana", [], NOW)
    state = State.in_memory()

    erased = await forget({**stores(state), "consent": store}, "ana", secret=SECRET)

    assert erased.deleted["consent"] == 2  # the opt-in times, and the STOP's list of recipients
    record = AddressConsent.model_validate_json(store.get(key) or b"")
    assert record.stopped["sms"].recipients == ["bob"]  # the number stays stopped
    assert store.get(PROMOTIONAL_PREFIX + "ana") is None
