"""Contracts: the inbound CloudEvent, the outbound DeliveryStatus and the HERALD_* settings."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas.events import CloudEvent, Recipient
from schemas.settings import Settings
from schemas.status import FINAL_STATUSES, DeliveryStatus, Status

pytestmark = pytest.mark.unit

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "evt-81ac",
    "source": "shop/checkout",
    "type": "order.confirmed",
    "time": "2026-11-24T10:00:00Z",
    "data": {
        "to": {
            "id": "user-42",
            "email": "ana@example.com",
            "phone": "+34600111222",
            "locale": "es-ES",
            "timezone": "Europe/Madrid",
            "name": "Ana",
        },
        "payload": {"order_id": "1001", "total": "59.90", "currency": "EUR"},
    },
}


def event(**overrides: Any) -> dict[str, Any]:
    """A deep copy of EVENT with envelope attributes replaced (None removes the attribute)."""
    ev = copy.deepcopy(EVENT)
    for key, value in overrides.items():
        if value is None:
            ev.pop(key, None)
        else:
            ev[key] = value
    return ev


def event_with_to(**to_overrides: Any) -> dict[str, Any]:
    ev = copy.deepcopy(EVENT)
    ev["data"]["to"].update(to_overrides)
    return ev


# --- CloudEvent: structured and binary mode -------------------------------------------------------------------


def test_cloudevent__structured_json_parses_every_attribute() -> None:
    ev = CloudEvent.from_record(orjson.dumps(EVENT))

    assert ev.specversion == "1.0"
    assert ev.id == "evt-81ac"
    assert ev.source == "shop/checkout"
    assert ev.type == "order.confirmed"
    assert ev.time == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    to = ev.data.to
    assert (to.id, str(to.email), to.phone, to.locale, to.timezone, to.name) == (
        "user-42", "ana@example.com", "+34600111222", "es-ES", "Europe/Madrid", "Ana")
    assert ev.data.payload == {"order_id": "1001", "total": "59.90", "currency": "EUR"}


def test_cloudevent__binary_mode_reads_ce_headers_and_data_from_value() -> None:
    headers = {
        "ce_specversion": b"1.0",
        "ce_id": b"evt-bin-1",
        "ce_source": b"shop/checkout",
        "ce_type": b"order.confirmed",
        "ce_idempotencykey": b"order-1001-confirmed",
        "content-type": b"application/json",
    }
    ev = CloudEvent.from_record(orjson.dumps(EVENT["data"]), headers=headers)

    assert (ev.id, ev.source, ev.type) == ("evt-bin-1", "shop/checkout", "order.confirmed")
    assert ev.idempotencykey == "order-1001-confirmed"
    assert ev.data.to.id == "user-42"
    assert ev.data.payload["order_id"] == "1001"
    # Non-`ce_` headers are not attributes.
    assert "content-type" not in (ev.model_extra or {})


def test_cloudevent__binary_mode_wins_over_a_structured_looking_value() -> None:
    # With ce_specversion present the value is `data`, so a whole envelope in the value is not data.
    headers = {"ce_specversion": b"1.0", "ce_id": b"e", "ce_source": b"s", "ce_type": b"order.confirmed"}
    with pytest.raises(ValidationError):
        CloudEvent.from_record(orjson.dumps(EVENT), headers=headers)


def test_cloudevent__empty_record_without_binary_headers_is_value_error() -> None:
    with pytest.raises(ValueError, match="empty record"):
        CloudEvent.from_record(b"")


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("time", "2026-11-24T10:00:00", datetime(2026, 11, 24, 10, 0, tzinfo=UTC)),
        ("sendat", "2026-11-24T12:30:00", datetime(2026, 11, 24, 12, 30, tzinfo=UTC)),
    ],
    ids=["time", "sendat"],
)
def test_cloudevent__naive_timestamp_becomes_utc(field: str, raw: str, expected: datetime) -> None:
    ev = CloudEvent.model_validate(event(**{field: raw}))

    value = getattr(ev, field)
    assert value == expected
    assert value.utcoffset() == timedelta(0)


def test_cloudevent__aware_timestamp_keeps_its_offset() -> None:
    ev = CloudEvent.model_validate(event(time="2026-11-24T11:00:00+01:00"))

    assert ev.time is not None
    assert ev.time.utcoffset() == timedelta(hours=1)
    assert ev.time == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_cloudevent__naive_time_in_binary_mode_becomes_utc() -> None:
    headers = {"ce_specversion": b"1.0", "ce_id": b"e", "ce_source": b"s", "ce_type": b"t.x",
               "ce_time": b"2026-11-24T10:00:00"}
    ev = CloudEvent.from_record(orjson.dumps(EVENT["data"]), headers=headers)

    assert ev.time == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"idempotencykey": "order-1001-confirmed"}, "order-1001-confirmed"),
        ({}, "shop/checkout|evt-81ac"),
        ({"idempotencykey": ""}, "shop/checkout|evt-81ac"),
    ],
    ids=["idempotencykey", "source-and-id", "empty-key-falls-back"],
)
def test_cloudevent__dedupe_key(overrides: dict[str, Any], expected: str) -> None:
    assert CloudEvent.model_validate(event(**overrides)).dedupe_key == expected


def test_cloudevent__extension_attributes_at_envelope_level_are_kept() -> None:
    ev = CloudEvent.from_record(orjson.dumps(event(traceparent="00-4bf92f-00f067-01", partitionkey="user-42")))

    assert ev.model_extra == {"traceparent": "00-4bf92f-00f067-01", "partitionkey": "user-42"}


def _invalid(kind: str) -> dict[str, Any]:
    match kind:
        case "specversion-0.3":
            return event(specversion="0.3")
        case "missing-type":
            return event(type=None)
        case "empty-id":
            return event(id="")
        case "missing-data":
            return event(data=None)
        case "unknown-timezone":
            return event_with_to(timezone="Mars/Olympus")
        case "path-timezone":
            return event_with_to(timezone="../../etc/passwd")
        case "invalid-email":
            return event_with_to(email="ana-at-example.com")
        case "name-with-crlf":
            return event_with_to(name="Ana\r\nBcc: evil@x.com")
        case "name-with-nul":
            return event_with_to(name="Ana\0Bcc")
        case "bad-locale":
            return event_with_to(locale="not a locale!")
        case "extra-field-in-to":
            return event_with_to(admin=True)
        case "extra-field-in-data":
            ev = event()
            ev["data"]["html"] = "<script>"
            return ev
        case "missing-recipient-id":
            ev = event()
            del ev["data"]["to"]["id"]
            return ev
        case "unknown-priority":
            return event(priority="urgent")
    raise AssertionError(kind)


INVALID_EVENTS = [
    ("specversion-0.3", "specversion"),
    ("missing-type", "type"),
    ("empty-id", "id"),
    ("missing-data", "data"),
    ("unknown-timezone", "data.to.timezone"),
    ("path-timezone", "data.to.timezone"),
    ("invalid-email", "data.to.email"),
    ("name-with-crlf", "data.to.name"),
    ("name-with-nul", "data.to.name"),
    ("bad-locale", "data.to.locale"),
    ("extra-field-in-to", "data.to.admin"),
    ("extra-field-in-data", "data.html"),
    ("missing-recipient-id", "data.to.id"),
    ("unknown-priority", "priority"),
]


@pytest.mark.parametrize(("kind", "loc"), INVALID_EVENTS, ids=[k for k, _ in INVALID_EVENTS])
def test_cloudevent__invalid_event_is_validation_error_at_the_field(kind: str, loc: str) -> None:
    with pytest.raises(ValidationError) as info:
        CloudEvent.from_record(orjson.dumps(_invalid(kind)))

    locations = {".".join(str(p) for p in err["loc"]) for err in info.value.errors()}
    assert loc in locations


# --- Recipient ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("email", "ana@example.com"),
        ("sms", "+34600111222"),
        ("voice", "+34600111222"),
        ("whatsapp", "+34600111222"),
        ("push", "tok-123"),
        ("webhook", None),
        ("fax", None),
    ],
)
def test_recipient__address_for_channel(channel: str, expected: str | None) -> None:
    to = Recipient(id="u1", email="ana@example.com", phone="+34600111222", push_token="tok-123")

    assert to.address_for(channel) == expected


@pytest.mark.parametrize("channel", ["email", "sms", "voice", "whatsapp", "push"])
def test_recipient__address_for_channel_without_address_is_none(channel: str) -> None:
    assert Recipient(id="u1").address_for(channel) is None


def test_recipient__defaults_are_en_and_utc_and_whitespace_is_stripped() -> None:
    to = Recipient(id="  u1  ", timezone=" Europe/Madrid ")

    assert (to.id, to.locale, to.timezone) == ("u1", "en", "Europe/Madrid")
    assert Recipient(id="u2").timezone == "UTC"


@pytest.mark.parametrize("locale", ["en", "es-MX", "de_AT", "zh-Hant-TW", "fil"])
def test_recipient__accepts_bcp47_like_locales(locale: str) -> None:
    assert Recipient(id="u1", locale=locale).locale == locale


# --- DeliveryStatus -------------------------------------------------------------------------------------------

STATUS = {"message_id": "msg-3f2a9c", "status": "sent", "at": "2026-11-24T10:00:00.120Z"}


def test_deliverystatus__parses_status_word_into_enum() -> None:
    st = DeliveryStatus.model_validate({**STATUS, "attempt": 1})

    assert st.status is Status.SENT
    assert st.attempt == 1
    assert st.at == datetime(2026, 11, 24, 10, 0, 0, 120000, tzinfo=UTC)


@pytest.mark.parametrize(
    "overrides",
    [{"status": "delivering"}, {"status": "SENT"}, {"attempt": -1}, {"segments": 0}],
    ids=["unknown-status", "status-wrong-case", "negative-attempt", "zero-segments"],
)
def test_deliverystatus__rejects_unknown_status_and_out_of_range_numbers(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DeliveryStatus.model_validate({**STATUS, **overrides})


def test_deliverystatus__a_newer_record_parses_and_its_unknown_fields_are_dropped() -> None:
    # Contract v1 grows by adding fields: a reader built on this model must read a newer Herald's records, and
    # never carries what it does not know on (a field it cannot vouch for).
    newer = {**STATUS, "schema_version": "1", "cost_eur": "0.0075", "carrier": {"name": "x"}}
    st = DeliveryStatus.model_validate_json(orjson.dumps(newer))
    assert st.status is Status.SENT
    assert "cost_eur" not in st.model_dump_json() and "carrier" not in st.model_dump_json()


def test_deliverystatus__a_record_written_before_v1_still_parses() -> None:
    old = {"message_id": "msg-1", "event_id": "evt-1", "event_type": "otp.requested", "tenant": None,
           "channel": "sms", "provider": "twilio", "status": "delivered", "attempt": 1, "recipient": None,
           "locale": None, "template": None, "at": "2026-11-24T10:00:00Z", "latency_ms": None, "error": None,
           "detail": None}
    st = DeliveryStatus.model_validate_json(orjson.dumps(old))
    assert (st.status, st.provider_message_id, st.segments, st.reported_at) == (Status.DELIVERED, None, None, None)


def test_deliverystatus__every_record_says_its_schema_version() -> None:
    written = orjson.loads(DeliveryStatus.model_validate(STATUS).model_dump_json())
    assert written["schema_version"] == "1"


@pytest.mark.parametrize(
    ("status", "final"),
    [(Status.ACCEPTED, False), (Status.SENT, False), (Status.RETRYING, False), (Status.OPENED, False),
     (Status.DELIVERED, True), (Status.FAILED, True), (Status.BOUNCED, True), (Status.DEAD_LETTERED, True)],
)
def test_status__final_statuses(status: Status, final: bool) -> None:
    assert (status in FINAL_STATUSES) is final


# --- Settings -------------------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No HERALD_* variable from the outer environment leaks into a test."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("HERALD_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_settings__defaults_without_environment(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()

    assert s.env == "dev"
    assert s.topic("status") == "herald.status"
    assert s.smtp_pool_size == 8
    assert len(s.secret.get_secret_value()) >= 32


def test_settings__reads_herald_prefixed_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HERALD_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    clean_env.setenv("HERALD_SMTP_POOL_SIZE", "3")
    clean_env.setenv("HERALD_BRAND_NAME", "Acme")
    clean_env.setenv("SMTP_POOL_SIZE", "99")  # no prefix: ignored

    s = Settings()

    assert s.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert s.smtp_pool_size == 3
    assert s.brand_name == "Acme"


@pytest.mark.parametrize(
    ("prefix", "name", "expected"),
    [(None, "status", "herald.status"), ("acme.herald.", "status", "acme.herald.status"),
     ("acme.", "dispatch.email", "acme.dispatch.email")],
    ids=["default-prefix", "custom-prefix", "dotted-name"],
)
def test_settings__topic_uses_prefix(clean_env: pytest.MonkeyPatch, prefix: str | None, name: str,
                                     expected: str) -> None:
    if prefix is not None:
        clean_env.setenv("HERALD_TOPIC_PREFIX", prefix)

    assert Settings().topic(name) == expected


@pytest.mark.parametrize(
    ("var", "value"),
    [("HERALD_SMTP_POOL_SIZE", "0"), ("HERALD_ENV", "staging"), ("HERALD_SMTP_TLS", "maybe"),
     ("HERALD_SMTP_TIMEOUT", "0")],
)
def test_settings__invalid_environment_value_is_validation_error(clean_env: pytest.MonkeyPatch, var: str,
                                                                 value: str) -> None:
    clean_env.setenv(var, value)

    with pytest.raises(ValidationError):
        Settings()


def test_settings__production_without_secret_raises(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HERALD_ENV", "production")

    with pytest.raises(ValidationError, match="HERALD_SECRET is required"):
        Settings()


def test_settings__production_with_secret_works(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HERALD_ENV", "production")
    clean_env.setenv("HERALD_SECRET", "s3cr3t-Vq7xK2pL9mZ4wB8nR5tY1cH6jD0fG")

    s = Settings()

    assert s.env == "production"
    assert s.secret.get_secret_value() == "s3cr3t-Vq7xK2pL9mZ4wB8nR5tY1cH6jD0fG"
    assert "s3cr3t" not in repr(s)


def test_settings__production_with_empty_secret_raises(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HERALD_ENV", "production")
    clean_env.setenv("HERALD_SECRET", "")

    with pytest.raises(ValidationError):
        Settings()
