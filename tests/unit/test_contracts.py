"""The committed JSON Schemas are the contract other teams build on: the code must not drift from them."""

from __future__ import annotations

import pytest

from schemas.export import CONTRACTS, SCHEMA_DIR, dumps, export_schemas

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_contract__committed_schema_matches_the_code(name: str) -> None:
    committed = (SCHEMA_DIR / f"{name}.json").read_bytes()
    assert committed == dumps(export_schemas()[name]), f"run `make schema` and review the diff of {name}.json"


def test_contract__status_schema_lists_every_status_word() -> None:
    status_enum = export_schemas()["DeliveryStatus"]["$defs"]["Status"]["enum"]
    assert set(status_enum) == {
        "accepted", "scheduled", "cancelled", "suppressed", "deduplicated", "rejected", "expired", "sent",
        "retrying", "delivered", "read", "failed", "bounced", "complained", "opened", "clicked", "replied",
        "unsubscribed", "dead_lettered"}


def test_contract__status_has_no_field_for_bodies_or_addresses() -> None:
    fields = set(export_schemas()["DeliveryStatus"]["properties"])
    assert fields == {"message_id", "event_id", "event_type", "tenant", "channel", "provider", "status", "attempt",
                      "recipient", "locale", "template", "at", "latency_ms", "error", "detail"}
