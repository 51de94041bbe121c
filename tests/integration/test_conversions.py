"""Issue 16, conversion attribution on the real pipeline: a `payment.due` reminder is emailed, a `payment.completed`
for the same person and invoice follows, and the reminder's message gets a `converted` status; a payment past the
window converts nothing (the bundled catalog: `conversion: {goal: payment.completed, within: 7d, match:
invoice_number}`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from consumers.app import BUNDLED_CATALOG
from consumers.cli.publish import make_event
from schemas.catalog import Catalog
from schemas.status import DeliveryStatus, Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

CATALOG = Catalog.load(BUNDLED_CATALOG)
ANA = {"id": "user-conv-ana", "email": "ana.conv@example.org", "locale": "es-ES", "timezone": "Europe/Madrid"}
BOB = {"id": "user-conv-bob", "email": "bob.conv@example.org", "locale": "en-GB", "timezone": "Europe/London"}


def reminder(person: dict[str, Any], invoice: str) -> dict[str, Any]:
    payload = {**CATALOG.types["payment.due"].sample, "invoice_number": invoice}
    payload["items"] = [{**item, "reference": invoice} for item in payload["items"]]
    return make_event("payment.due", person, payload, source="it/conversions")


def payment(person: dict[str, Any], invoice: str, **extensions: Any) -> dict[str, Any]:
    return make_event("payment.completed", person, {"invoice_number": invoice, "amount": "267.81",
                                                    "currency": "EUR"}, source="it/conversions", **extensions)


def of(statuses: list[DeliveryStatus], status: Status, event_id: str | None = None) -> list[DeliveryStatus]:
    return [s for s in statuses if s.status is status and (event_id is None or s.event_id == event_id)]


async def test_conversions__a_payment_after_a_reminder_converts_it_and_one_past_the_window_does_not(
        stack: Stack) -> None:
    stack.start_worker()
    ana_due, bob_due = reminder(ANA, "INV-A"), reminder(BOB, "INV-B")
    await stack.publish([ana_due, bob_due])
    await stack.wait_statuses(lambda ss: len(of(ss, Status.SENT)) == 2, timeout=60)
    sent = {s.event_id: s for s in of(stack.statuses, Status.SENT)}
    ana_sent, bob_sent = sent[ana_due["id"]], sent[bob_due["id"]]

    # Ana pays now. Bob's payment happened 7 days and an hour after his reminder (its `time` says so): too late to
    # count; then a payment of his within the window (a second event of the same person, so handled after the first).
    ana_paid = payment(ANA, "INV-A")
    bob_late = payment(BOB, "INV-B", time=(bob_sent.at + timedelta(days=7, hours=1)).isoformat())
    bob_paid = payment(BOB, "INV-B", time=(bob_sent.at + timedelta(days=6)).isoformat())
    stranger = payment({"id": "user-conv-nobody", "email": "nobody@example.org"}, "INV-A")
    await stack.publish([stranger, bob_late, ana_paid, bob_paid])

    await stack.wait_statuses(lambda ss: len(of(ss, Status.CONVERTED)) >= 2, timeout=60)
    converted = {s.message_id: s for s in of(stack.statuses, Status.CONVERTED)}
    assert set(converted) == {ana_sent.message_id, bob_sent.message_id}
    ana_converted, bob_converted = converted[ana_sent.message_id], converted[bob_sent.message_id]
    assert ana_converted.detail == f"goal:payment.completed {ana_paid['id']}"
    # The late payment was handled first (same person, same partition) and converted nothing.
    assert bob_converted.detail == f"goal:payment.completed {bob_paid['id']}"
    for mine, its_sent in ((ana_converted, ana_sent), (bob_converted, bob_sent)):
        assert (mine.event_id, mine.event_type, mine.channel, mine.recipient, mine.variant, mine.provider) == (
            its_sent.event_id, "payment.due", "email", its_sent.recipient, its_sent.variant, its_sent.provider)
        assert mine.variant in {"a", "b"}
    # The payments themselves send nothing and have no status of their own.
    goal_ids = {e["id"] for e in (ana_paid, bob_late, bob_paid, stranger)}
    assert [s for s in stack.statuses if s.event_id in goal_ids] == []
    assert len(stack.sink.snapshot()) == 2
