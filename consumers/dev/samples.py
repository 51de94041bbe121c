"""Sample events for `herald dev` and `herald demo`: every catalog type and channel, three languages, and
three bad inputs. `SIM_BEHAVIOUR` makes the simulated people answer, so replies and digits show too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from consumers.app import BUNDLED_CATALOG
from consumers.cli.publish import make_event
from schemas.catalog import Catalog

ANA = {"id": "user-ana", "email": "ana@example.com", "phone": "+34600111222", "locale": "es-ES",
       "timezone": "Europe/Madrid", "name": "Ana"}
JONAS = {"id": "user-jonas", "email": "jonas@example.de", "phone": "+4915112345678", "locale": "de-DE",
         "timezone": "Europe/Berlin", "name": "Jonas", "push_token": "fcm-token-jonas-1"}
EMMA = {"id": "user-emma", "email": "emma@example.co.uk", "phone": "+447911123456", "locale": "en-GB",
        "timezone": "Europe/London", "name": "Emma", "push_token": "fcm-token-emma-1"}
LUCIA = {"id": "user-lucia", "email": "lucia@example.mx", "locale": "es-MX", "timezone": "America/Mexico_City"}
SAMPLE_PEOPLE = (ANA, JONAS, EMMA, LUCIA)

# Which person gets which type (the catalog's channel order then picks the channel), and forced channels
# so every channel and provider shows at least once.
SHOWCASE: tuple[tuple[str, dict[str, Any], list[str] | None], ...] = (
    ("otp.requested", JONAS, ["voice"]),
    ("appointment.reminder", ANA, None),  # WhatsApp first; Ana answers "SI"
    ("shipping.dispatched", EMMA, ["sms"]),
    ("invoice.issued", EMMA, ["email"]),  # with the invoice as a PDF
)


def sim_behaviour() -> dict[str, Any]:
    """How the simulated people answer: Ana confirms on WhatsApp, Jonas presses 1 to hear his code again."""
    return {"recipients": {ANA["phone"]: {"reply_text": "SI", "reply_times": 1}, JONAS["phone"]: {"reply_digits": "1"},
                           EMMA["email"]: {"open": True}}}


def zone_at_local_hour(now: datetime, hour: int) -> str:
    """A fixed-offset IANA zone where it is now `hour` o'clock (`Etc/GMT` zones cover UTC-12 to UTC+11 here)."""
    offset = (hour - now.hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"  # POSIX sign: inverted


def business_customer(sim_url: str, timezone: str = "UTC") -> dict[str, Any]:
    """A business customer reached by signed webhook (the simulator's customer endpoint)."""
    return {"id": "acme-erp", "webhook_url": f"{sim_url.rstrip('/')}/customer/webhook", "locale": "en",
            "timezone": timezone}


def sample_events(catalog: Catalog, sim_url: str = "http://127.0.0.1:8090") -> list[dict[str, Any]]:
    """One event per catalog type round-robin over people, the channel showcase, and one business webhook.

    The per-type samples keep the people's own zones, so at their night quiet hours show (`scheduled`); the
    showcase and the webhook go to a zone where it is midday now, so every channel shows at any hour.
    """
    midday = zone_at_local_hour(datetime.now(UTC), 12)
    events = []
    shown = [(t, e) for t, e in catalog.types.items() if e.channels and not t.startswith("reply.")]
    for i, (event_type, entry) in enumerate(shown):
        person = SAMPLE_PEOPLE[i % len(SAMPLE_PEOPLE)]
        events.append(make_event(event_type, person, entry.sample, source="herald/demo", tenant="demo"))
    for event_type, person, channels in SHOWCASE:
        payload = dict(catalog.types[event_type].sample)
        if event_type == "appointment.reminder":  # in three hours: past both reminder times, so it goes now
            payload["appointment_at"] = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
        events.append(make_event(event_type, {**person, "timezone": midday}, payload, source="herald/demo",
                                 tenant="demo", channels=channels))
    events.append(make_event("order.confirmed", business_customer(sim_url, midday),
                             catalog.types["order.confirmed"].sample,
                             source="herald/demo", tenant="acme", channels=["webhook"]))
    return events


def bad_events() -> list[dict[str, Any]]:
    """Inputs Herald must refuse with a reason: an unknown type and a payload missing a field."""
    return [make_event("pizza.delivered", ANA, {}, source="herald/demo"),
            make_event("order.confirmed", ANA, {"order_id": "1002"}, source="herald/demo")]


def always_open_catalog(directory: Path) -> Path:
    """The bundled catalog with quiet hours off for every type, written to `directory`.

    Workers read the wall clock, so a test or benchmark that is not about quiet hours would otherwise schedule its
    messages for the morning whenever it runs in the recipient's night. Quiet hours are tested on injected clocks.
    """
    catalog = yaml.safe_load(BUNDLED_CATALOG.read_text(encoding="utf-8"))
    for entry in catalog["types"].values():
        entry["quiet_hours"] = "ignore"
    path = directory / "catalog.always-open.yaml"
    path.write_text(yaml.safe_dump(catalog, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
