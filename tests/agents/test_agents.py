"""Agents under Faust's test_context: the real agent functions, the outbound side recorded in memory."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
import pytest

from consumers.app import create_app
from consumers.cli.publish import make_event
from consumers.state.stores import State
from schemas.preferences import Preferences
from schemas.settings import Settings
from schemas.status import Status
from tests.fakes import RecordingPublisher, ScriptedSender

pytestmark = pytest.mark.agents

ANA = {"id": "user-42", "email": "ana@example.com", "locale": "de-DE", "name": "Ana"}
SAMPLE = {"order_id": "1001", "total": "59.90", "currency": "EUR", "items": []}


def app_with_fakes(settings: Settings) -> tuple[object, RecordingPublisher, ScriptedSender]:
    publisher, sender = RecordingPublisher(), ScriptedSender()
    app = create_app(settings, senders={"email": sender}, publisher=publisher, state=State.in_memory())
    return app, publisher, sender


async def test_route_events__publishes_accepted_then_the_dispatch(settings: Settings) -> None:
    app, publisher, _ = app_with_fakes(settings)
    async with app.agents["route_events"].test_context() as agent:  # type: ignore[attr-defined]
        await agent.put(orjson.dumps(make_event("order.confirmed", ANA, SAMPLE)), key=b"user-42")
    assert [r.topic for r in publisher.records] == ["status", "dispatch.email"]
    assert publisher.statuses()[0].status is Status.ACCEPTED


async def test_route_events__keeps_going_after_bad_records(settings: Settings) -> None:
    app, publisher, _ = app_with_fakes(settings)
    async with app.agents["route_events"].test_context() as agent:  # type: ignore[attr-defined]
        await agent.put(b"not json", key=b"x")
        await agent.put(orjson.dumps(make_event("pizza.delivered", ANA, {})), key=b"x")
        await agent.put(orjson.dumps(make_event("order.confirmed", ANA, SAMPLE)), key=b"user-42")
        await asyncio.sleep(0.1)  # the router takes records in batches of up to 10 ms
    assert [s.status for s in publisher.statuses()] == [Status.REJECTED, Status.DEAD_LETTERED, Status.REJECTED,
                                                        Status.DEAD_LETTERED, Status.ACCEPTED]
    assert [r.headers["herald-error"] for r in publisher.on("deadletter")] == [b"invalid_json", b"unknown_type"]
    assert len(publisher.on("dispatch.email")) == 1


async def test_send_email__renders_sends_and_reports(settings: Settings) -> None:
    app, publisher, sender = app_with_fakes(settings)
    async with app.agents["route_events"].test_context() as router:  # type: ignore[attr-defined]
        await router.put(orjson.dumps(make_event("order.confirmed", ANA, SAMPLE)), key=b"user-42")
    dispatch = publisher.on("dispatch.email")[0]
    async with app.agents["send_email"].test_context() as agent:  # type: ignore[attr-defined]
        await agent.put(dispatch.value, key=dispatch.key)
    assert [s.status for s in publisher.statuses()] == [Status.ACCEPTED, Status.SENT]
    [message] = sender.sent
    assert message.rendered.locale == "de"
    assert "1001" in message.rendered["subject"]


async def test_agent__unexpected_exception_is_dead_lettered_and_agent_goes_on(settings: Settings) -> None:
    app, publisher, sender = app_with_fakes(settings)

    async def broken(message: object) -> object:
        raise RuntimeError("bug")

    sender.send = broken  # type: ignore[method-assign]
    async with app.agents["route_events"].test_context() as router:  # type: ignore[attr-defined]
        await router.put(orjson.dumps(make_event("order.confirmed", ANA, SAMPLE)), key=b"user-42")
    dispatch = publisher.on("dispatch.email")[0]
    async with app.agents["send_email"].test_context() as agent:  # type: ignore[attr-defined]
        await agent.put(dispatch.value, key=dispatch.key)
        await agent.put(dispatch.value, key=dispatch.key)
    letters = publisher.on("deadletter")
    assert [(r.headers["herald-error"], r.headers["herald-error-detail"]) for r in letters] == [
        (b"internal_error", b"RuntimeError")] * 2


async def test_route_events__follows_the_preference_ledger_for_channel_language_and_zone(settings: Settings) -> None:
    publisher, state = RecordingPublisher(), State.in_memory()
    app = create_app(settings, senders={"email": ScriptedSender(), "sms": ScriptedSender(name="sms", channel="sms")},
                     publisher=publisher, state=state)
    preferences = Preferences(recipient_id="user-42", preferred_channel="sms", locale="es-MX",
                              timezone="America/Mexico_City", updated_at=datetime.now(UTC))
    await state.preferences.put("user-42", preferences.model_dump_json().encode())
    async with app.agents["route_events"].test_context() as agent:  # type: ignore[attr-defined]
        await agent.put(orjson.dumps(make_event("order.confirmed", {**ANA, "phone": "+34600111222"}, SAMPLE)),
                        key=b"user-42")
    [dispatch] = publisher.json("dispatch.sms")
    assert (dispatch["fallback"], dispatch["to"]["locale"], dispatch["to"]["timezone"]) == (
        ["email"], "es-MX", "America/Mexico_City")
    assert publisher.on("dispatch.email") == []
