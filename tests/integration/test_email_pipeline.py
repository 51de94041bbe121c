"""Issue 3 acceptance, black-box: events in on Kafka, emails out over SMTP, statuses and dead letters back."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from consumers.cli.publish import make_event
from schemas.catalog import Catalog
from schemas.status import Status
from tests.integration.harness import Stack, last_by_message

pytestmark = pytest.mark.integration

PEOPLE = [
    ({"locale": "es-ES", "timezone": "Europe/Madrid"}, "es"),
    ({"locale": "de-DE", "timezone": "Europe/Berlin"}, "de"),
    ({"locale": "en-GB", "timezone": "Europe/London"}, "en"),
    ({"locale": "es-MX", "timezone": "America/Mexico_City"}, "es"),
    ({"locale": "fr-FR", "timezone": "Europe/Paris"}, "en"),
]


def valid_events(catalog: Catalog, n: int) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, str]]:
    """n events over every type with email, cycling locales; returns them, the expected locale and the type by
    address."""
    # Promotional types need consent (issue 5) and the people here gave none: transactional types only; a digest
    # type's events wait for their digest (tests/integration/test_digests.py).
    types = [t for t, e in catalog.types.items()
             if "email" in e.channels and e.category == "transactional" and e.digest is None]
    events, expected, kinds = [], {}, {}
    for i, (event_type, (person, lang)) in enumerate(zip(itertools.cycle(types), itertools.cycle(PEOPLE))):
        if i == n:
            break
        email = f"person{i}@example.org"
        to = {"id": f"user-{i}", "email": email, "name": f"Person {i}", **person}
        payload = dict(catalog.types[event_type].sample)
        if event_type == "appointment.reminder":  # due within 24 h, so the reminder goes now
            payload["appointment_at"] = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
        events.append(make_event(event_type, to, payload, source="it/test"))
        expected[email] = lang
        kinds[email] = event_type
    return events, expected, kinds


async def test_email_pipeline__100_events_and_5_bad_inputs(stack: Stack) -> None:
    catalog = Catalog.load(__import__("consumers.app", fromlist=["BUNDLED_CATALOG"]).BUNDLED_CATALOG)
    events, expected, kinds = valid_events(catalog, 100)
    bad_envelope = make_event("order.confirmed", {"id": "x"}, {})
    del bad_envelope["type"]
    bad = {
        "invalid_json": None,
        "invalid_envelope": bad_envelope,
        "unknown_type": make_event("pizza.delivered", {"id": "u", "email": "a@example.org"}, {}),
        "invalid_recipient": make_event("order.confirmed", {"id": "u", "email": "not-an-address"},
                                        catalog.types["order.confirmed"].sample),
        "missing_payload_field": make_event("order.confirmed", {"id": "u", "email": "b@example.org"},
                                            {"order_id": "1"}),
    }
    stack.start_worker()
    await stack.publish(events[:50])
    await stack.publish_raw(b"\x00not json{", key=b"u")
    await stack.publish([e for e in bad.values() if e is not None])
    await stack.publish(events[50:])

    def settled(statuses: list) -> bool:
        sent = sum(1 for s in statuses if s.status is Status.SENT)
        dead = sum(1 for s in statuses if s.status is Status.DEAD_LETTERED)
        return sent >= 100 and dead >= 5

    await stack.wait_statuses(settled, timeout=90)

    # Exactly one email per event, to data.to.email, in the recipient's language.
    mails = stack.sink.snapshot()
    assert len(mails) == 100
    by_address = {m["To"].addresses[0].addr_spec: m for m in mails}
    assert set(by_address) == set(expected)
    for address, mail in by_address.items():
        assert mail["Content-Language"] == expected[address], address
        if kinds[address] in ("invoice.issued", "payment.due", "policy.issued"):  # types with a PDF document
            [pdf] = list(mail.iter_attachments())
            assert pdf.get_content_type() == "application/pdf" and pdf.get_content().startswith(b"%PDF")
        else:
            assert mail.get_content_type() == "multipart/alternative"

    # accepted, then sent, for every message; the five bad inputs rejected with their reasons.
    per_message: dict[str, list[Status]] = {}
    for s in stack.statuses:
        per_message.setdefault(s.message_id, []).append(s.status)
    sent_ids = [m for m, seq in per_message.items() if Status.SENT in seq]
    assert len(sent_ids) == 100
    assert all(per_message[m] == [Status.ACCEPTED, Status.SENT] for m in sent_ids)
    rejected = [s for s in stack.statuses if s.status is Status.REJECTED]
    assert sorted(s.error for s in rejected) == sorted(bad)
    # …and each is dead-lettered, as its final status.
    assert {m: s.status for m, s in last_by_message(stack.statuses).items() if m in {r.message_id for r in rejected}
            } == {r.message_id: Status.DEAD_LETTERED for r in rejected}

    # Dead letters keep the original bytes and say why.
    letters = await stack.read("deadletter")
    reasons = sorted(dict(r.headers)["herald-error"].decode() for r in letters)
    assert reasons == sorted(bad)
    raw = next(r for r in letters if dict(r.headers)["herald-error"] == b"invalid_json")
    assert raw.value == b"\x00not json{"
    assert dict(raw.headers)["herald-source-topic"] == stack.settings.topic("events").encode()

    # No clear address, name or body on the status topic.
    status_bytes = b"".join(r.value for r in await stack.read("status"))
    for address in expected:
        assert address.encode() not in status_bytes
    assert b"Person 1" not in status_bytes and b"<html" not in status_bytes
    assert all(s.recipient is None or s.recipient.startswith("sha256:") for s in stack.statuses)

    # Critical types went through the critical lane; the worker is still running.
    critical = await stack.read("dispatch.email.critical")
    critical_types = {orjson.loads(r.value)["event_type"] for r in critical}
    assert critical_types == {t for t, e in catalog.types.items() if e.priority == "critical" and "email" in e.channels}
    assert all(p.poll() is None for p in stack.workers)

    # The same story in metrics, with bounded labels.
    metrics = httpx.get(f"http://127.0.0.1:{stack.settings.admin_port}/metrics").text
    assert 'herald_sends_total{channel="email",provider="smtp",result="sent"} 100.0' in metrics
    assert 'herald_events_total{event_type="unknown",outcome="rejected"} 4.0' in metrics
    assert 'herald_dead_letters_total{reason="invalid_json",source="router"} 1.0' in metrics
