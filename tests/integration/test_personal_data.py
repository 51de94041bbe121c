"""Issue 11: no personal data leaves through observability. A full mixed stack runs with unique markers in names,
addresses, numbers, codes and bodies; every log line, status record, reply record, dead-letter header and metric
is scanned for them: 0 hits.

What may carry them, by design, is not scanned: the messages themselves (the SMTP sink, the simulator), the
dead letters' values (the original bytes, for operators) and Herald's own state topics.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from consumers.cli.publish import make_event
from consumers.dev.simulator.app import SimServer
from schemas.catalog import Catalog
from schemas.status import FINAL_STATUSES, Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

CATALOG = Catalog.load(Path(__file__).resolve().parents[2] / "templates" / "catalog.yaml")
TAG = uuid.uuid4().hex[:6]
NAME = f"Zqxname{TAG}"
EMAIL_LOCAL = f"zqxmail{TAG}"
PHONE = "+34611873902"  # a valid Spanish mobile number no other test uses
PHONE_DIGITS = "611873902"
CODE = "739251"
BODY = f"Zqxbody{TAG}"
MARKERS = {"name": NAME, "email": EMAIL_LOCAL, "phone": PHONE_DIGITS, "code": CODE, "body": BODY}


def person(suffix: str, **extra: str) -> dict[str, str]:
    return {"id": f"user-pii-{suffix}", "name": NAME, "email": f"{EMAIL_LOCAL}{suffix}@example.org",
            "phone": PHONE, "locale": "es-ES", "timezone": "Europe/Madrid", **extra}


def event(event_type: str, to: dict, channels: list[str], **payload: object) -> dict:
    return make_event(event_type, to, {**CATALOG.types[event_type].sample, **payload}, source="it/pii",
                      channels=channels)


def hits(text: str) -> list[str]:
    return [name for name, marker in MARKERS.items() if marker.lower() in text.lower()]


@pytest.mark.parametrize("sim_stack", ["email=smtp;sms=twilio;voice=twilio;whatsapp=meta;push=fcm"], indirect=True)
async def test_personal_data__no_marker_in_logs_statuses_replies_dead_letter_headers_or_metrics(
        sim_stack: tuple[Stack, SimServer]) -> None:
    stack, sim = sim_stack
    async with httpx.AsyncClient() as client:
        (await client.post(f"{sim.url}/_sim/config", json={"recipients": {PHONE: {"reply_text": "SI"}},
                                                           "rate_limit": {"count": 0}})).raise_for_status()
    appointment = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    good = [
        event("otp.requested", person("a"), ["sms"], code=CODE),
        event("otp.requested", person("b"), ["voice"], code=CODE),
        event("otp.requested", person("c"), ["email"], code=CODE),
        event("order.confirmed", person("d"), ["email"], order_id=BODY),
        event("appointment.reminder", person("e"), ["whatsapp"], appointment_at=appointment, clinic=BODY),
        event("alert.weather", person("f", push_token=f"tok-{BODY}"), ["push"]),
    ]
    refused = [
        make_event("pizza.delivered", person("g"), {"note": BODY}, source="it/pii"),  # unknown type
        make_event("order.confirmed", {**person("h"), "email": f"not-an-address-{EMAIL_LOCAL}"},
                   {"order_id": BODY}, source="it/pii"),  # invalid recipient
        make_event("order.confirmed", person("i"), {"note": BODY}, source="it/pii"),  # missing fields
    ]
    stack.start_worker(HERALD_WEBHOOK_ALLOW_PRIVATE="true", HERALD_LOG_LEVEL="debug")
    await stack.publish([*good, *refused])
    ids = {e["id"] for e in good}

    def settled(statuses: list) -> bool:  # an invalid envelope's `rejected` has no event id: count those
        reached = {s.event_id for s in statuses if s.status in FINAL_STATUSES | {Status.SENT}}
        return (ids <= reached and sum(s.status is Status.REJECTED for s in statuses) >= len(refused)
                and any(s.status is Status.REPLIED for s in statuses))

    await stack.wait_statuses(settled, timeout=90)
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{stack.settings.admin_port}/metrics")).text

    found: dict[str, list[str]] = {}
    for path in Path(stack.settings.data_dir).glob("worker-*.log"):
        for n, line in enumerate(path.read_text(errors="replace").splitlines()):
            if where := hits(line):
                found[f"{path.name}:{n + 1}"] = [*where, line[:300]]
    for record in await stack.read("status"):
        if where := hits(record.value.decode(errors="replace")):
            found[f"status@{record.offset}"] = where
    replies = await stack.read("replies")
    assert replies, "the simulated person answered: there must be reply records to scan"
    for record in replies:
        if where := hits(record.value.decode(errors="replace") + (record.key or b"").decode(errors="replace")):
            found[f"replies@{record.offset}"] = [*where, orjson.loads(record.value)["type"]]
    letters = await stack.read("deadletter")
    assert len(letters) >= len(refused)
    for record in letters:
        headers = " ".join(f"{k}={v.decode(errors='replace')}" for k, v in record.headers)
        if where := hits(headers):
            found[f"deadletter@{record.offset}"] = [*where, headers[:300]]
    if where := hits(metrics):
        found["metrics"] = where
    assert not found, found
