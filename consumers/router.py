"""Routing: validate the envelope, look the type up, choose channels, build one `Dispatch` per channel.

Pure logic with no I/O, so every rule is unit-tested without a broker; the agent in `agents.py` publishes
what it decides. The router forwards; it never sends, and knows no provider.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from pydantic import ValidationError

from consumers.identity import idempotency_key, message_id
from schemas.catalog import Catalog, CatalogEntry, Priority
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was refused: `reason` is a bounded word for metrics, `detail` is safe to publish."""

    reason: str
    detail: str


@dataclass(slots=True)
class RouteResult:
    event: CloudEvent | None = None
    entry: CatalogEntry | None = None
    dispatches: list[Dispatch] = field(default_factory=list)
    rejection: Rejection | None = None
    expired: bool = False

    @property
    def outcome(self) -> str:
        if self.rejection:
            return "rejected"
        return "expired" if self.expired else "accepted"


def describe_validation_error(exc: ValidationError) -> str:
    """Field paths and messages, without the offending values (they may be personal data)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'envelope'}: {err['msg']}" for err in exc.errors()[:5]
    )


def _rejection_for(exc: ValidationError) -> Rejection:
    locs = [tuple(str(p) for p in err["loc"]) for err in exc.errors()]
    if any(loc[:2] == ("data", "to") for loc in locs):
        return Rejection("invalid_recipient", describe_validation_error(exc))
    return Rejection("invalid_envelope", describe_validation_error(exc))


class Router:
    """Turns one raw event record into dispatches, or a rejection with its reason."""

    def __init__(self, catalog: Catalog, channels: Collection[str], *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.catalog = catalog
        self.channels = set(channels)
        self.clock = clock

    def parse(self, value: bytes | None, headers: Mapping[str, bytes]) -> CloudEvent | Rejection:
        if not any(k.startswith("ce_") for k in headers):
            try:
                orjson.loads(value or b"")
            except orjson.JSONDecodeError:
                return Rejection("invalid_json", "record value is not JSON")
        try:
            return CloudEvent.from_record(value, headers)
        except ValidationError as exc:
            return _rejection_for(exc)
        except (ValueError, UnicodeDecodeError) as exc:
            return Rejection("invalid_envelope", type(exc).__name__)

    def route(self, value: bytes | None, headers: Mapping[str, bytes] | None = None, *,
              received_at: datetime | None = None) -> RouteResult:
        parsed = self.parse(value, headers or {})
        if isinstance(parsed, Rejection):
            return RouteResult(rejection=parsed)
        event = parsed
        entry = self.catalog.get(event.type)
        if entry is None:
            return RouteResult(event=event, rejection=Rejection("unknown_type", f"unknown event type {event.type}"))
        if missing := [f for f in entry.required if f not in event.data.payload]:
            return RouteResult(event=event, entry=entry, rejection=Rejection(
                "missing_payload_field", f"payload lacks {', '.join(missing)}"))

        event_time = event.time or received_at or self.clock()
        expires_at = event_time + entry.ttl
        if expires_at <= self.clock():
            return RouteResult(event=event, entry=entry, expired=True)

        priority = Priority(event.priority) if event.priority else entry.priority
        wanted = [c.value for c in entry.channels if event.channels is None or c.value in event.channels]
        # The first channel in the catalog's order that has a sender and an address for this person;
        # later channels are the fallback when it fails.
        dispatches = []
        for channel in wanted:
            if channel not in self.channels:
                log.debug("skipping channel %s for %s: no sender configured", channel, event.type)
                continue
            address = event.data.to.address_for(channel)
            if address is None:
                continue
            dispatches.append(Dispatch(
                message_id=message_id(event.tenant, event.dedupe_key, channel),
                event_id=event.id, event_type=event.type, event_time=event_time, tenant=event.tenant,
                channel=channel, category=entry.category.value, priority=priority.value,
                idempotency_key=idempotency_key(event.dedupe_key, channel, address),
                to=event.data.to, payload=event.data.payload, expires_at=expires_at,
            ))
            break
        if not dispatches:
            return RouteResult(event=event, entry=entry, rejection=Rejection(
                "no_channel", "recipient has no address on any channel this type uses"))
        return RouteResult(event=event, entry=entry, dispatches=dispatches)
