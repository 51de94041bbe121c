"""The catalog: the bundled file loads, every invalid file is a CatalogError that says where."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from channels.rendering.render import BUNDLED_TEMPLATES
from schemas.catalog import Catalog, CatalogError, Category, Channel, Priority, QuietHours, parse_duration

pytestmark = pytest.mark.unit

BUNDLED_CATALOG = BUNDLED_TEMPLATES / "catalog.yaml"


def entry(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "category": "transactional",
        "priority": "high",
        "channels": ["email", "sms"],
        "ttl": "7d",
        "required": ["order_id"],
        "sample": {"order_id": "1001"},
    }
    base.update(overrides)
    return base


def write_catalog(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    return path


# --- the bundled catalog --------------------------------------------------------------------------------------


def test_catalog__bundled_catalog_loads_every_type_of_the_domain() -> None:
    catalog = Catalog.load(BUNDLED_CATALOG)

    assert catalog.version == 1
    # the 14 of issue 3, appointment.cancelled, Herald's own reply.acknowledged and reply.help, policy.issued (16);
    # issue 16: payment.completed (a conversion goal), comment.posted (a digest), service.survey
    assert len(catalog.types) == 21


def test_catalog__bundled_otp_is_critical_with_ten_minute_ttl() -> None:
    otp = Catalog.load(BUNDLED_CATALOG).get("otp.requested")

    assert otp is not None
    assert otp.ttl == timedelta(minutes=10)
    assert otp.priority is Priority.CRITICAL
    assert otp.quiet_hours is QuietHours.IGNORE
    assert otp.channels == [Channel.SMS, Channel.VOICE, Channel.EMAIL]


def test_catalog__bundled_samples_cover_required_fields() -> None:
    for name, e in Catalog.load(BUNDLED_CATALOG).types.items():
        assert set(e.required) <= set(e.sample), name


def test_catalog__get_unknown_type_is_none() -> None:
    assert Catalog.load(BUNDLED_CATALOG).get("order.cancelled") is None


# --- a valid catalog of our own -------------------------------------------------------------------------------


def test_catalog__valid_file_applies_defaults(tmp_path: Path) -> None:
    catalog = Catalog.load(write_catalog(tmp_path, {"types": {"order.confirmed": entry(ttl="90s")}}))

    e = catalog.types["order.confirmed"]
    assert catalog.version == 1
    assert e.category is Category.TRANSACTIONAL
    assert e.ttl == timedelta(seconds=90)
    assert e.quiet_hours is QuietHours.RESPECT
    assert e.description == ""


def test_catalog__required_without_sample_is_allowed(tmp_path: Path) -> None:
    catalog = Catalog.load(write_catalog(tmp_path, {"types": {"a.b": entry(sample={})}}))

    assert catalog.types["a.b"].required == ["order_id"]


# --- invalid catalogs -----------------------------------------------------------------------------------------

INVALID: list[tuple[str, Any, list[str]]] = [
    ("invalid-yaml", "types: [unclosed\n", ["not valid YAML"]),
    ("unknown-channel", {"types": {"order.confirmed": entry(channels=["email", "fax"])}},
     ["types.order.confirmed.channels.1", "'email'"]),
    ("unknown-category", {"types": {"order.confirmed": entry(category="marketing")}},
     ["types.order.confirmed.category", "transactional"]),
    ("unknown-priority", {"types": {"order.confirmed": entry(priority="urgent")}},
     ["types.order.confirmed.priority"]),
    ("duplicate-channel", {"types": {"order.confirmed": entry(channels=["email", "sms", "email"])}},
     ["types.order.confirmed.channels", "a channel appears twice"]),
    ("empty-channels", {"types": {"order.confirmed": entry(channels=[])}},
     ["types.order.confirmed", "channels must list at least one channel"]),
    ("bad-send-window", {"types": {"order.confirmed": entry(send_window="8-21")}},
     ["types.order.confirmed.send_window", "08:00-21:00"]),
    ("cancels-unknown-type", {"types": {"order.confirmed": entry(cancels=["nope.nope"], cancel_key="order_id",
                                                                 required=["order_id"])}},
     ["cancels unknown types"]),
    ("zero-ttl", {"types": {"order.confirmed": entry(ttl="0s")}},
     ["types.order.confirmed", "ttl must be positive"]),
    ("bad-duration", {"types": {"order.confirmed": entry(ttl="10 minutes")}},
     ["types.order.confirmed.ttl"]),
    ("unknown-duration-unit", {"types": {"order.confirmed": entry(ttl="2w")}},
     ["types.order.confirmed.ttl"]),
    ("missing-ttl", {"types": {"order.confirmed": {k: v for k, v in entry().items() if k != "ttl"}}},
     ["types.order.confirmed.ttl", "Field required"]),
    ("type-name-with-spaces", {"types": {"Order Confirmed": entry()}},
     ["types", "dotted lowercase", "Order Confirmed"]),
    ("type-name-without-dot", {"types": {"orderconfirmed": entry()}},
     ["types", "dotted lowercase", "orderconfirmed"]),
    ("sample-lacks-required", {"types": {"order.confirmed": entry(required=["order_id", "total"])}},
     ["types.order.confirmed", "sample lacks required fields", "total"]),
    ("unknown-top-level-key", {"version": 1, "typos": {}, "types": {"a.b": entry()}},
     ["typos", "Extra inputs are not permitted"]),
    ("unknown-entry-key", {"types": {"a.b": entry(colour="red")}},
     ["types.a.b.colour", "Extra inputs are not permitted"]),
    ("missing-types", {"version": 1}, ["types", "Field required"]),
    ("empty-file", "", ["valid dictionary"]),
]


@pytest.mark.parametrize(("doc", "fragments"), [(d, f) for _, d, f in INVALID], ids=[i for i, _, _ in INVALID])
def test_catalog__invalid_file_is_catalog_error_naming_the_problem(tmp_path: Path, doc: Any,
                                                                   fragments: list[str]) -> None:
    path = write_catalog(tmp_path, doc)

    with pytest.raises(CatalogError) as info:
        Catalog.load(path)

    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_catalog__every_problem_is_listed_not_only_the_first(tmp_path: Path) -> None:
    doc = {"types": {"a.b": entry(category="marketing"), "c.d": entry(channels=["fax"])}}

    with pytest.raises(CatalogError) as info:
        Catalog.load(write_catalog(tmp_path, doc))

    assert "types.a.b.category" in str(info.value)
    assert "types.c.d.channels.0" in str(info.value)


def test_catalog__missing_file_is_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog"):
        Catalog.load(tmp_path / "nope.yaml")


def test_catalog__catalog_error_is_a_value_error() -> None:
    assert issubclass(CatalogError, ValueError)


# --- parse_duration -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        (" 30 m ", timedelta(minutes=30)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration__short_forms(raw: str, expected: timedelta) -> None:
    assert parse_duration(raw) == expected


@pytest.mark.parametrize("raw", ["10", "1w", "10M", "1.5h", "-5m", "m", "", 30, None],
                         ids=["bare-number", "weeks", "upper-unit", "fraction", "negative", "no-number", "empty",
                              "int", "none"])
def test_parse_duration__anything_else_is_passed_through_unchanged(raw: Any) -> None:
    assert parse_duration(raw) == raw
