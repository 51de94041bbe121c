"""Router rules, table-driven: each bad input has its own reason; good input becomes dispatches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from consumers.app import BUNDLED_CATALOG
from consumers.cli.publish import make_event
from consumers.pipeline.router import Router, RouteResult
from schemas.catalog import Catalog
from schemas.preferences import Preferences

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
CATALOG = Catalog.load(BUNDLED_CATALOG)
ANA = {"id": "user-42", "email": "ana@example.com", "phone": "+34600111222", "locale": "es-ES",
       "timezone": "Europe/Madrid", "name": "Ana"}


def event(event_type: str = "order.confirmed", to: dict[str, Any] | None = None,
          payload: dict[str, Any] | None = None, **ext: Any) -> dict[str, Any]:
    e = make_event(event_type, to or ANA, CATALOG.types["order.confirmed"].sample if payload is None else payload,
                   **ext)
    e["time"] = NOW.isoformat()
    return e


def router(channels: tuple[str, ...] = ("email",)) -> Router:
    return Router(CATALOG, channels, clock=lambda: NOW)


def without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


BAD_INPUTS = [
    ("not_json", b"{nope", "invalid_json"),
    ("empty", b"", "invalid_json"),
    ("json_array", b"[1, 2]", "invalid_envelope"),
    ("missing_type", orjson.dumps(without(event(), "type")), "invalid_envelope"),
    ("wrong_specversion", orjson.dumps({**event(), "specversion": "0.3"}), "invalid_envelope"),
    ("unknown_type", orjson.dumps(event("pizza.delivered", payload={})), "unknown_type"),
    ("invalid_email", orjson.dumps(event(to={**ANA, "email": "ana-at-example"})), "invalid_recipient"),
    ("unknown_timezone", orjson.dumps(event(to={**ANA, "timezone": "Mars/Olympus"})), "invalid_recipient"),
    ("missing_payload_field", orjson.dumps(event(payload={"order_id": "1"})), "missing_payload_field"),
    ("no_address_for_any_channel", orjson.dumps(event(to={"id": "u"})), "no_channel"),
]


@pytest.mark.parametrize(("value", "reason"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_route__bad_input_is_rejected_with_its_reason(value: bytes, reason: str) -> None:
    result = router().route(value, {})
    assert result.outcome == "rejected"
    assert result.rejection is not None and result.rejection.reason == reason
    assert result.dispatches == []


def test_route__rejection_detail_names_the_field_but_not_the_value() -> None:
    result = router().route(orjson.dumps(event(to={**ANA, "email": "secret-person-at-example"})), {})
    assert result.rejection is not None
    assert "email" in result.rejection.detail
    assert "secret-person" not in result.rejection.detail


def test_route__valid_event_becomes_one_email_dispatch() -> None:
    result = router().route(orjson.dumps(event(idempotencykey="order-1001")), {})
    assert result.outcome == "accepted"
    [d] = result.dispatches
    assert (d.channel, d.event_type, d.priority, d.category) == ("email", "order.confirmed", "high", "transactional")
    assert d.to.email == "ana@example.com"
    assert d.expires_at == NOW + timedelta(days=7)
    assert d.message_id.startswith("msg-")


def test_route__same_idempotency_key_gives_same_message_id() -> None:
    a = router().route(orjson.dumps(event(idempotencykey="k1")), {}).dispatches[0]
    b = router().route(orjson.dumps(event(idempotencykey="k1")), {}).dispatches[0]
    c = router().route(orjson.dumps(event(idempotencykey="k2")), {}).dispatches[0]
    assert a.message_id == b.message_id != c.message_id
    assert a.idempotency_key == b.idempotency_key != c.idempotency_key


def test_route__first_channel_with_a_sender_and_an_address_wins() -> None:
    # otp.requested lists sms, voice, email.
    otp = {"code": "123456", "expires_minutes": 10}
    assert [d.channel for d in router(("email", "sms")).route(
        orjson.dumps(event("otp.requested", payload=otp)), {}).dispatches] == ["sms"]
    assert [d.channel for d in router(("email",)).route(
        orjson.dumps(event("otp.requested", payload=otp)), {}).dispatches] == ["email"]
    no_phone = {k: v for k, v in ANA.items() if k != "phone"}
    assert [d.channel for d in router(("email", "sms")).route(
        orjson.dumps(event("otp.requested", to=no_phone, payload=otp)), {}).dispatches] == ["email"]


def test_route__channels_extension_restricts_the_catalog_order() -> None:
    result = router(("email", "sms")).route(orjson.dumps(event(channels=["sms"])), {})
    assert [d.channel for d in result.dispatches] == ["sms"]


def test_route__expired_event_is_not_dispatched() -> None:
    old = event("otp.requested", payload={"code": "123456", "expires_minutes": 10})
    old["time"] = (NOW - timedelta(minutes=11)).isoformat()
    result = router().route(orjson.dumps(old), {})
    assert result.outcome == "expired"
    assert result.dispatches == []


def test_route__critical_catalog_priority_is_carried_to_the_dispatch() -> None:
    otp = event("otp.requested", payload={"code": "123456", "expires_minutes": 10})
    [d] = router().route(orjson.dumps(otp), {}).dispatches
    assert d.priority == "critical"


def test_route__binary_mode_headers_are_accepted() -> None:
    e = event()
    headers = {f"ce_{k}": str(v).encode() for k, v in e.items() if k not in ("data", "subject")}
    result = router().route(orjson.dumps(e["data"]), headers)
    assert result.outcome == "accepted"
    assert result.event is not None and result.event.id == e["id"]


def test_route__missing_time_uses_the_record_timestamp() -> None:
    e = without(event(), "time")
    received = NOW - timedelta(seconds=5)
    [d] = router().route(orjson.dumps(e), {}, received_at=received).dispatches
    assert d.event_time == received


def prefs(**fields: Any) -> Preferences:
    return Preferences(recipient_id=ANA["id"], updated_at=NOW, **fields)


def routed_with(preferences: Preferences | None, event_type: str = "order.confirmed",
                channels: tuple[str, ...] = ("email", "sms")) -> RouteResult:
    r = Router(CATALOG, channels, clock=lambda: NOW, preferences=lambda rid: preferences)
    payload = CATALOG.types[event_type].sample
    return r.route(orjson.dumps(event(event_type, payload=payload)), {})


def test_preferences__the_preferred_channel_goes_first_and_the_catalog_order_stays_behind_it() -> None:
    assert CATALOG.types["order.confirmed"].channels[0].value == "email"
    [d] = routed_with(prefs(preferred_channel="sms")).dispatches
    assert (d.channel, d.fallback) == ("sms", ["email"])
    [d] = routed_with(None).dispatches
    assert (d.channel, d.fallback) == ("email", ["sms"])


def test_preferences__a_preferred_channel_the_type_does_not_use_changes_nothing() -> None:
    [d] = routed_with(prefs(preferred_channel="push")).dispatches
    assert d.channel == "email"


def test_preferences__locale_and_time_zone_override_the_event_and_drive_quiet_hours() -> None:
    # 10:00 UTC is 19:00 in Tokyo: inside the window; 22:00 in Auckland (UTC+13 in November): quiet hours.
    [d] = routed_with(prefs(locale="de-DE", timezone="Asia/Tokyo")).dispatches
    assert (d.to.locale, d.to.timezone, d.to.email) == ("de-DE", "Asia/Tokyo", ANA["email"])
    result = routed_with(prefs(timezone="Pacific/Auckland"))
    [(due, _, reason)] = result.scheduled
    assert reason == "quiet_hours" and due == datetime(2026, 11, 24, 19, 0, tzinfo=UTC)  # 08:00 NZDT


@pytest.mark.parametrize("broken", [prefs(timezone="Mars/Olympus"), ValueError("unreadable document")],
                         ids=["unknown_zone", "unreadable_document"])
def test_preferences__unusable_preferences_leave_the_event_as_it_came(broken: Preferences | Exception) -> None:
    def lookup(_rid: str) -> Preferences | None:
        if isinstance(broken, Exception):
            raise broken
        return broken

    r = Router(CATALOG, ("email",), clock=lambda: NOW, preferences=lookup)
    [d] = r.route(orjson.dumps(event()), {}).dispatches
    assert (d.to.timezone, d.to.locale) == (ANA["timezone"], ANA["locale"])


# --- impossible and far-off times ------------------------------------------------------------------------------

AHEAD = timedelta(days=30)


def far_router(max_ahead: timedelta = AHEAD) -> Router:
    return Router(CATALOG, ("email",), clock=lambda: NOW, max_ahead=max_ahead)


def reminder(appointment_at: datetime) -> bytes:
    payload = {**CATALOG.types["appointment.reminder"].sample, "appointment_at": appointment_at.isoformat()}
    return orjson.dumps(event("appointment.reminder", payload=payload))


def with_times(**times: str) -> bytes:
    return orjson.dumps({**event(), **times})


TOO_FAR = [
    ("time_in_year_9999", with_times(time="9999-12-31T23:59:59Z"), "time is more than 30 days ahead"),
    ("sendat_in_year_9999", with_times(sendat="9999-12-31T23:59:59Z"), "sendat is more than 30 days ahead"),
    ("time_past_max_ahead", with_times(time=(NOW + AHEAD + timedelta(seconds=1)).isoformat()),
     "time is more than 30 days ahead"),
    ("sendat_past_max_ahead", with_times(sendat=(NOW + AHEAD + timedelta(seconds=1)).isoformat()),
     "sendat is more than 30 days ahead"),
    # appointment.reminder goes 7 days and 24 hours before: the second reminder is one second too far.
    ("reminder_past_max_ahead", reminder(NOW + AHEAD + timedelta(days=1, seconds=1)),
     "a reminder is more than 30 days ahead"),
    ("reminder_in_year_9999", reminder(datetime(9999, 12, 31, tzinfo=UTC)), "a reminder is more than 30 days ahead"),
]


@pytest.mark.parametrize(("value", "detail"), [c[1:] for c in TOO_FAR], ids=[c[0] for c in TOO_FAR])
def test_route__a_time_too_far_ahead_is_rejected_as_invalid_time(value: bytes, detail: str) -> None:
    result = far_router().route(value, {})
    assert result.outcome == "rejected"
    assert result.rejection is not None and (result.rejection.reason, result.rejection.detail) == (
        "invalid_time", detail)
    assert result.event is not None  # the status still names the event
    assert result.dispatches == [] and result.scheduled == []


def test_route__date_arithmetic_past_year_9999_is_invalid_time_not_an_exception() -> None:
    # With no limit ahead, the event's time plus its type's ttl overflows `datetime`.
    result = far_router(max_ahead=timedelta.max).route(with_times(time="9999-12-31T23:59:59Z"), {})
    assert result.rejection is not None and (result.rejection.reason, result.rejection.detail) == (
        "invalid_time", "a time of the event is out of range")
    assert result.event is not None and result.event.time is not None and result.event.time.year == 9999


def test_route__a_sendat_at_the_limit_is_scheduled_for_then() -> None:
    sendat = NOW + AHEAD
    result = far_router().route(with_times(sendat=sendat.isoformat()), {})
    assert result.rejection is None and result.outcome == "scheduled"
    [(due, d, reason)] = result.scheduled
    assert (due, reason) == (sendat, "sendat")
    assert d.expires_at == sendat + CATALOG.types["order.confirmed"].ttl


def test_route__a_time_at_the_limit_is_accepted() -> None:
    result = far_router().route(with_times(time=(NOW + AHEAD).isoformat()), {})
    assert result.rejection is None and result.outcome == "accepted" and len(result.dispatches) == 1


def test_route__reminders_just_inside_max_ahead_are_scheduled() -> None:
    appointment = NOW + AHEAD + timedelta(days=1)  # the 24-hour reminder falls exactly at the limit
    result = far_router().route(reminder(appointment), {})
    assert result.rejection is None and result.outcome == "scheduled"
    assert [(due, reason) for due, _, reason in result.scheduled] == [
        (appointment - timedelta(days=7), "reminder"), (NOW + AHEAD, "reminder")]


def test_route__max_ahead_defaults_to_400_days() -> None:
    assert router().max_ahead == timedelta(days=400)
    assert router().route(with_times(sendat=(NOW + timedelta(days=399)).isoformat()), {}).outcome == "scheduled"
    rejected = router().route(with_times(sendat=(NOW + timedelta(days=401)).isoformat()), {})
    assert rejected.rejection is not None and rejected.rejection.reason == "invalid_time"
