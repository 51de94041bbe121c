"""Sample events for `herald dev` and `herald demo`: every catalog type, three languages, two bad inputs."""

from __future__ import annotations

from typing import Any

from consumers.publish import make_event
from schemas.catalog import Catalog

SAMPLE_PEOPLE = (
    {"id": "user-ana", "email": "ana@example.com", "phone": "+34600111222", "locale": "es-ES",
     "timezone": "Europe/Madrid", "name": "Ana"},
    {"id": "user-jonas", "email": "jonas@example.de", "phone": "+4915112345678", "locale": "de-DE",
     "timezone": "Europe/Berlin", "name": "Jonas"},
    {"id": "user-emma", "email": "emma@example.co.uk", "phone": "+447911123456", "locale": "en-GB",
     "timezone": "Europe/London", "name": "Emma"},
    {"id": "user-lucia", "email": "lucia@example.mx", "locale": "es-MX", "timezone": "America/Mexico_City"},
)


def sample_events(catalog: Catalog) -> list[dict[str, Any]]:
    """One event per catalog type, round-robin over people (so locales and fallbacks show)."""
    events = []
    for i, (event_type, entry) in enumerate(catalog.types.items()):
        person = SAMPLE_PEOPLE[i % len(SAMPLE_PEOPLE)]
        events.append(make_event(event_type, person, entry.sample, source="herald/demo", tenant="demo"))
    return events


def bad_events() -> list[dict[str, Any]]:
    """Inputs Herald must refuse with a reason: an unknown type and a payload missing a field."""
    person = SAMPLE_PEOPLE[0]
    return [make_event("pizza.delivered", person, {}, source="herald/demo"),
            make_event("order.confirmed", person, {"order_id": "1002"}, source="herald/demo")]
