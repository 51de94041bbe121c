"""Routing: validate the envelope, look the type up, choose channels, build one `Dispatch` per channel.

Pure logic with no I/O, so every rule is unit-tested without a broker; the agent in `agents.py` publishes
what it decides. The router forwards; it never sends, and knows no provider.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import orjson
from pydantic import ValidationError

from consumers.clock import utcnow
from consumers.identity import idempotency_key, message_id
from consumers.pipeline.digests import digest_payloads
from consumers.pipeline.policy import cap_key, dedupe_key, next_send_time, quiet_hours_apply, send_window
from consumers.pipeline.variants import choose_variant
from consumers.state.kvstore import KeyValueStore, MemoryStore
from schemas.catalog import Catalog, CatalogEntry, Priority
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent, Recipient
from schemas.preferences import Preferences

log = logging.getLogger(__name__)


TYPE_NAME = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z0-9_-]+){0,5}", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was refused: `reason` is a bounded word for metrics, `detail` is safe to publish."""

    reason: str
    detail: str


@dataclass(slots=True)
class RouteResult:
    """What the router decided. `dispatches` go out now; `scheduled` wait in the scheduler until their time."""

    event: CloudEvent | None = None
    entry: CatalogEntry | None = None
    dispatches: list[Dispatch] = field(default_factory=list)
    scheduled: list[tuple[datetime, Dispatch, str]] = field(default_factory=list)  # (due, dispatch, reason)
    rejection: Rejection | None = None
    expired: bool = False
    deduplicated: bool = False
    suppressed: str | None = None  # the reason: consent, opted_out, suppressed_address, frequency_cap
    cancels: list[str] = field(default_factory=list)  # cancel keys of pending messages to cancel
    dedupe_key: str | None = None  # to record once the dispatches are out
    cap_key: str | None = None  # frequency-cap counter to increment
    digest: bool = False  # collected into a digest (catalog `digest`; consumers/pipeline/digests.py), not sent alone

    @property
    def outcome(self) -> str:
        if self.rejection:
            return "rejected"
        if self.expired:
            return "expired"
        if self.deduplicated:
            return "deduplicated"
        if self.suppressed:
            return "suppressed"
        if self.digest:
            return "digested"
        if self.cancels and not (self.dispatches or self.scheduled):
            return "cancelled"
        return "scheduled" if self.scheduled and not self.dispatches else "accepted"


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


def parse_event(value: bytes | None, headers: Mapping[str, bytes]) -> CloudEvent | Rejection:
    """A record's CloudEvent (structured, or binary with `ce_*` headers), or why it is none. The router's first
    step, pure, so the HTTP API (consumers/inbound/api.py) refuses at the door exactly what the router would."""
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


def check_event(event: CloudEvent, catalog: Catalog, *, now: datetime,
                max_ahead: timedelta) -> CatalogEntry | Rejection:
    """The router's checks that need no state, in its order: `time` and `sendat` at most `max_ahead` after `now`,
    a type the catalog has, and the type's required payload fields. The type's entry when they pass."""
    for name, when in (("time", event.time), ("sendat", event.sendat)):
        if when is not None and when - now > max_ahead:
            return Rejection("invalid_time", f"{name} is more than {max_ahead.days} days ahead")
    entry = catalog.get(event.type)
    if entry is None:
        # The type is named only when it looks like one: a detail is published, and must not echo what a
        # producer put in the wrong field.
        named = event.type if len(event.type) <= 64 and TYPE_NAME.fullmatch(event.type) else "(not a type name)"
        return Rejection("unknown_type", f"unknown event type {named}")
    # A digest's message (consumers/pipeline/digests.py) carries the collected payloads: each has the fields.
    payloads = digest_payloads(event, entry) or [event.data.payload]
    if missing := [f for f in entry.required if any(not isinstance(p, dict) or f not in p for p in payloads)]:
        return Rejection("missing_payload_field", f"payload lacks {', '.join(missing)}")
    return entry


def candidates(event: CloudEvent, entry: CatalogEntry, channels: Collection[str]) -> list[tuple[str, str]]:
    """(channel, address) in the catalog's order, narrowed by the event's `channels`, that have a sender (are in
    `channels`) and an address: the channels the router may choose from, before consent and preferences."""
    found: list[tuple[str, str]] = []
    for channel in (c.value for c in entry.channels):
        if event.channels is not None and channel not in event.channels:
            continue
        if channel not in channels:
            if log.isEnabledFor(logging.DEBUG):  # once per event and channel: not even the record unless wanted
                log.debug("skipping channel %s for %s: no sender configured", channel, event.type)
            continue
        if (address := event.data.to.address_for(channel)) is not None:
            found.append((channel, address))
    return found


class ConsentCheck(Protocol):
    """Why a message may not go to `address` on `channel` (a status `detail`), or None. The router and the delivery
    stage name the type and tenant, so the person's preference topics apply (consumers/hooks.py `consent_check`)."""

    def __call__(self, recipient_id: str, category: str, channel: str, address: str, /, *,
                 event_type: str | None = None, tenant: str | None = None) -> str | None: ...


def never_refuse(recipient_id: str, category: str, channel: str, address: str, /, *,
                 event_type: str | None = None, tenant: str | None = None) -> str | None:
    return None


def no_preferences(recipient_id: str) -> Preferences | None:
    return None


@dataclass
class Pending:
    """Decisions the ingest stage has taken but not recorded yet (it records them once the batch's messages are
    acknowledged), so that a later event of the same batch sees them: one key, one message; a cap is a cap."""

    dedupe: set[str] = field(default_factory=set)
    caps: Counter[str] = field(default_factory=Counter)


class Router:
    """Turns one raw event record into dispatches, or a rejection with its reason.

    Policy runs in DESIGN.md's order: expiry, dedupe, consent and suppression, quiet hours, frequency caps.
    State is read through stores' in-memory replicas; what must be written is returned in the result.
    """

    def __init__(self, catalog: Catalog, channels: Collection[str], *, clock: Callable[[], datetime] = utcnow,
                 dedupe: KeyValueStore | None = None, caps: KeyValueStore | None = None,
                 consent: ConsentCheck = never_refuse, dedupe_window: timedelta = timedelta(days=7),
                 preferences: Callable[[str], Preferences | None] = no_preferences,
                 max_ahead: timedelta = timedelta(days=400)) -> None:
        self.catalog = catalog
        self.max_ahead = max_ahead
        self.channels = set(channels)
        self.clock = clock
        self.dedupe = dedupe or MemoryStore()
        self.caps = caps or MemoryStore()
        self.consent = consent
        self.dedupe_window = dedupe_window
        self.preferences = preferences
        self.pending = Pending()

    def parse(self, value: bytes | None, headers: Mapping[str, bytes]) -> CloudEvent | Rejection:
        return parse_event(value, headers)

    def route(self, value: bytes | None, headers: Mapping[str, bytes] | None = None, *,
              received_at: datetime | None = None) -> RouteResult:
        parsed = self.parse(value, headers or {})
        if isinstance(parsed, Rejection):
            return RouteResult(rejection=parsed)
        event = parsed
        try:
            return self._route(event, received_at)
        except OverflowError:  # date arithmetic past year 9999: the event's times are impossible
            return RouteResult(event=event, rejection=Rejection("invalid_time", "a time of the event is out of range"))

    def _too_far(self, when: datetime | None, now: datetime) -> bool:
        return when is not None and when - now > self.max_ahead

    def _route(self, event: CloudEvent, received_at: datetime | None) -> RouteResult:
        now = self.clock()
        checked = check_event(event, self.catalog, now=now, max_ahead=self.max_ahead)
        if isinstance(checked, Rejection):
            known = checked.reason == "missing_payload_field"  # the only refusal of a type the catalog has
            return RouteResult(event=event, entry=self.catalog.get(event.type) if known else None, rejection=checked)
        entry = checked
        event, preferred = self._personalised(event)
        result = RouteResult(event=event, entry=entry)
        if entry.cancels and entry.cancel_key:
            value_key = str(event.data.payload[entry.cancel_key])
            result.cancels = [f"{t}|{value_key}" for t in entry.cancels]
        if not entry.channels:  # it only cancels, or only counts as a goal (the ingest stage attributes it)
            return result

        event_time = event.time or received_at or now
        if event_time + entry.ttl <= now and not entry.schedule and not event.sendat:
            result.expired = True
            return result
        key = dedupe_key(event.tenant, event.dedupe_key)
        seen = self.dedupe.get(key)
        if key in self.pending.dedupe or (seen and now - datetime.fromisoformat(seen.decode()) < self.dedupe_window):
            result.deduplicated = True
            return result
        result.dedupe_key = key

        priority = Priority(event.priority) if event.priority else entry.priority
        candidates = self._candidates(event, entry)
        if not candidates:
            result.rejection = Rejection("no_channel", "recipient has no address on any channel this type uses")
            return result
        if entry.digest is not None and digest_payloads(event, entry) is None:
            result.digest = True  # policy applies to the digest's message, when it closes
            return result
        refusals = [(c, a, self.consent(event.data.to.id, entry.category.value, c, a, event_type=event.type,
                                        tenant=event.tenant)) for c, a in candidates]
        allowed = [(c, a) for c, a, reason in refusals if reason is None]
        if not allowed:
            result.suppressed = refusals[0][2]
            return result
        allowed.sort(key=lambda pair: pair[0] != preferred)  # stable: the rest keep the catalog's order

        dues = self._due_times(event, entry, now)
        if dues is None:
            result.expired = True
            return result
        if any(self._too_far(due, now) for due, _ in dues):
            result.rejection = Rejection("invalid_time", f"a reminder is more than {self.max_ahead.days} days ahead")
            return result
        if entry.category.value in self.catalog.frequency_caps:
            cap = self.catalog.frequency_caps[entry.category]
            result.cap_key = cap_key(event.data.to.id, entry.category, cap.per, now)
            if int(self.caps.get(result.cap_key) or b"0") + self.pending.caps[result.cap_key] >= cap.count:
                result.suppressed = "frequency_cap"
                result.cap_key = None
                return result

        channel, address = allowed[0]
        fallback = [c for c, _ in allowed[1:]]
        window = send_window(self.catalog, entry)
        for index, (due, reason) in enumerate(dues):
            if quiet_hours_apply(entry, priority) and (later := next_send_time(due, event.data.to.timezone, window)):
                due, reason = later, "quiet_hours"
            basis = event.dedupe_key if len(dues) == 1 else f"{event.dedupe_key}|{index}"
            mid = message_id(event.tenant, basis, channel)
            dispatch = Dispatch(
                message_id=mid, event_id=event.id, event_type=event.type, variant=choose_variant(entry.variants, mid),
                event_time=event_time, tenant=event.tenant, channel=channel, category=entry.category.value,
                priority=priority.value, idempotency_key=idempotency_key(basis, channel, address),
                to=event.data.to, payload=event.data.payload, expires_at=max(due, event_time) + entry.ttl,
                fallback=fallback,
                cancel_key=f"{event.type}|{event.data.payload[entry.cancel_key]}" if entry.cancel_key else None)
            if due <= now:
                result.dispatches.append(dispatch)
            else:
                result.scheduled.append((due, dispatch, reason))
        return result

    def _personalised(self, event: CloudEvent) -> tuple[CloudEvent, str | None]:
        """The event with the person's own locale and time zone from the preference ledger, which win over the
        event's, and their preferred channel (tried first where the type and consent allow it)."""
        try:
            prefs = self.preferences(event.data.to.id)
        except ValueError:  # an unreadable document: consent fails closed on its own; routing goes on without it
            prefs = None
        if prefs is None:
            return event, None
        preferred = prefs.preferred_channel.value if prefs.preferred_channel else None
        update = {name: value for name in ("locale", "timezone") if (value := getattr(prefs, name))}
        if not update:
            return event, preferred
        try:
            to = Recipient.model_validate({**event.data.to.model_dump(), **update})
        except ValidationError:
            log.warning("preferred locale or time zone unusable; the event's kept",
                        extra={"fields": ",".join(sorted(update))})
            return event, preferred
        return event.model_copy(update={"data": event.data.model_copy(update={"to": to})}), preferred

    def _candidates(self, event: CloudEvent, entry: CatalogEntry) -> list[tuple[str, str]]:
        return candidates(event, entry, self.channels)

    def _due_times(self, event: CloudEvent, entry: CatalogEntry, now: datetime) -> list[tuple[datetime, str]] | None:
        """When to send: now, at `sendat`, or at the catalog's schedule relative to a payload date.

        Reminders whose time has passed are skipped; if all have passed but the date is still ahead, one goes
        now. None when the date itself has passed (nothing left to remind of).
        """
        if entry.schedule:
            dues = []
            for rule in entry.schedule:
                try:
                    target = datetime.fromisoformat(str(event.data.payload[rule.field]).replace("Z", "+00:00"))
                except (KeyError, ValueError):
                    return [(now, "schedule_field_unreadable")]
                target = target if target.tzinfo else target.replace(tzinfo=UTC)
                if target <= now:
                    return None
                if (due := target - rule.before) > now:
                    dues.append((due, "reminder"))
            return dues or [(now, "reminder")]
        if event.sendat and event.sendat > now:
            return [(event.sendat, "sendat")]
        return [(now, "now")]
