"""State retention: each store's entries go when they stop mattering, written by the real writers of each store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from consumers.observe.metrics import Metrics
from consumers.pipeline.policy import cap_key
from consumers.state.conversations import Conversations, Question
from consumers.state.kvstore import MemoryStore
from consumers.state.retention import (
    Janitor,
    Rule,
    caps_expiry,
    dedupe_expiry,
    documents_expiry,
    questions_expiry,
    sends_expiry,
)
from consumers.state.sends import SendLedger
from schemas.catalog import Catalog, Category
from schemas.dispatch import Dispatch
from schemas.events import Recipient

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CATALOG = Catalog.model_validate({"frequency_caps": {"promotional": {"count": 3, "per": "1d"}}, "types": {
    "offer.loyalty": {"category": "promotional", "priority": "bulk", "channels": ["email"], "ttl": "2d",
                      "required": []}}})


def dispatch(message_id: str = "msg-1", expires_in: timedelta | None = DAY) -> Dispatch:
    return Dispatch(message_id=message_id, event_id="evt-1", event_type="offer.loyalty", event_time=T0,
                    channel="sms", category="promotional", priority="bulk", idempotency_key="k",
                    to=Recipient(id="u1", phone="+34600111222"), payload={},
                    expires_at=T0 + expires_in if expires_in is not None else None)


async def sweep_at(rule: Rule, now: datetime, owns: bool = True) -> int:
    janitor = Janitor([rule], clock=lambda: now, owns=lambda _key: owns)
    return (await janitor.sweep()).deleted[rule.name]


async def test_dedupe__a_key_goes_when_its_window_has_passed() -> None:
    store = MemoryStore()
    await store.put("k1", T0.isoformat().encode())
    rule = Rule("state.dedupe", store, dedupe_expiry(7 * DAY))
    assert await sweep_at(rule, T0 + 7 * DAY - timedelta(seconds=1)) == 0
    assert await sweep_at(rule, T0 + 7 * DAY) == 1
    assert store.get("k1") is None


@pytest.mark.parametrize(("category", "age", "deleted"), [
    (Category.PROMOTIONAL, timedelta(hours=13), 0),  # T0 is 10:00 UTC, the 1-day window ends at midnight UTC
    (Category.PROMOTIONAL, timedelta(hours=14), 1),
    (Category.TRANSACTIONAL, timedelta(0), 1),  # no longer capped: the counter means nothing
], ids=["window_open", "window_over", "category_uncapped"])
async def test_caps__a_counter_goes_when_its_window_ends(category: Category, age: timedelta, deleted: int) -> None:
    store = MemoryStore()
    await store.put(cap_key("user|with|bars", category, DAY, T0), b"2")
    assert await sweep_at(Rule("state.caps", store, caps_expiry(CATALOG)), T0 + age) == deleted


async def test_sends__a_record_is_kept_until_grace_after_the_message_expires() -> None:
    store = MemoryStore()
    ledger = SendLedger(store, lambda: T0)
    await ledger.sent(dispatch("msg-expiring", DAY), "twilio", "SM1")
    await ledger.sent(dispatch("msg-forever", None), "twilio", "SM2")  # no expiry: grace after its last update
    rule = Rule("state.sends", store, sends_expiry(3 * DAY))
    assert await sweep_at(rule, T0 + 3 * DAY - timedelta(seconds=1)) == 0
    assert await sweep_at(rule, T0 + 3 * DAY) == 1
    assert ledger.get("msg-forever") is None and ledger.get("msg-expiring") is not None
    assert await sweep_at(rule, T0 + 4 * DAY) == 1
    assert ledger.get("msg-expiring") is None


async def test_questions__an_open_question_goes_after_max_age() -> None:
    store = MemoryStore()
    conversations = Conversations(store, b"secret", max_age=7 * DAY)
    question = Question(message_id="m", recipient_id="u1", event_type="appointment.reminder", channel="sms",
                        asked_at=T0)
    await conversations.remember(question, "+34600111222")
    rule = Rule("state.contacts", store, questions_expiry(conversations.max_age))
    assert await sweep_at(rule, T0 + 6 * DAY) == 0
    assert await sweep_at(rule, T0 + 7 * DAY) == 1
    assert conversations.last_question("sms", "+34600111222") is None


async def test_documents__a_document_goes_when_its_message_expires() -> None:
    store = MemoryStore()
    await store.put("msg-doc", dispatch("msg-doc", DAY).model_dump_json().encode())
    await store.put("msg-kept", dispatch("msg-kept", None).model_dump_json().encode())
    assert await sweep_at(Rule("state.documents", store, documents_expiry), T0 + 2 * DAY) == 1
    assert store.get("msg-kept") is not None


async def test_janitor__leaves_unreadable_entries_keys_of_other_workers_and_unswept_stores() -> None:
    store, prefs = MemoryStore(), MemoryStore()
    await store.put("k-bad", b"not a time")
    await store.put("k-old", T0.isoformat().encode())
    await prefs.put("user-1", b"{}")
    metrics = Metrics()
    rules = [Rule("state.dedupe", store, dedupe_expiry(DAY)), Rule("preferences", prefs, None)]
    later = T0 + 30 * DAY
    theirs = await Janitor(rules, clock=lambda: later, owns=lambda key: key != "k-old").sweep()
    assert theirs.deleted == {"state.dedupe": 0, "preferences": 0}
    assert theirs.unreadable["state.dedupe"] == 1
    mine = await Janitor(rules, clock=lambda: later, owns=lambda _key: True, metrics=metrics).sweep()
    assert mine.deleted["state.dedupe"] == 1 and sorted(store.list_keys()) == ["k-bad"]
    assert prefs.get("user-1") == b"{}"
    assert metrics.state_entries.labels("state.dedupe")._value.get() == 1
    assert metrics.state_expired.labels("state.dedupe")._value.get() == 1
    assert metrics.state_entries.labels("preferences")._value.get() == 1


async def test_janitor__a_failing_sweep_is_logged_and_the_next_one_runs() -> None:
    class Flaky(MemoryStore):
        calls = 0

        def items(self) -> Iterator[tuple[str, bytes]]:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("broker hiccup")
            return super().items()

    janitor = Janitor([Rule("state.dedupe", Flaky(), dedupe_expiry(DAY))], clock=lambda: T0, owns=lambda _k: True)
    task = asyncio.create_task(janitor.run(0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    assert Flaky.calls >= 2
