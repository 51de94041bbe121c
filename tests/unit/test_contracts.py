"""The committed JSON Schemas are the contract other teams build on: the code must not drift from them."""

from __future__ import annotations

import orjson
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
        "unsubscribed", "dead_lettered", "converted", "digested"}


def test_contract__status_has_no_field_for_bodies_or_addresses() -> None:
    fields = set(export_schemas()["DeliveryStatus"]["properties"])
    assert fields == {"schema_version", "message_id", "event_id", "event_type", "tenant", "channel", "provider",
                      "provider_message_id", "status", "attempt", "recipient", "locale", "template", "segments", "at",
                      "reported_at", "latency_ms", "error", "detail", "variant"}


def test_contract__status_schema_is_versioned_and_open_to_additive_fields() -> None:
    # Strict consumers validate against this file: an `additionalProperties: false` would make every field added
    # within v1 break them, which is what the contract promises not to do.
    schema = orjson.loads((SCHEMA_DIR / "DeliveryStatus.json").read_bytes())
    assert schema["$id"] == "urn:herald:schema:DeliveryStatus:v1"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema_version"]["default"] == "1"
    assert "additionalProperties" not in schema
