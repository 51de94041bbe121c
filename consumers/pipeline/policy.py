"""Sending policy as pure functions: quiet hours, frequency-cap windows, dedupe keys. Time is always passed in."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from schemas.catalog import Catalog, CatalogEntry, Category, Priority, QuietHours


def parse_window(window: str) -> tuple[time, time]:
    start, _, end = window.partition("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def _inside(local: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # a window across midnight, e.g. 22:00-06:00


def next_send_time(now: datetime, timezone: str, window: str) -> datetime | None:
    """None when `now` is inside the recipient's local send window; else the next moment it opens (UTC).

    Computed on local wall-clock time, so a window keeps its local hours across a DST change.
    """
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    start, end = parse_window(window)
    if _inside(local.time(), start, end):
        return None
    for days in (0, 1):
        day = local.date() + timedelta(days=days)
        opening = datetime.combine(day, start, tzinfo=zone)
        if opening > local:
            return opening.astimezone(UTC)
    raise AssertionError("a window opens within a day")  # pragma: no cover


def quiet_hours_apply(entry: CatalogEntry, priority: Priority) -> bool:
    return priority is not Priority.CRITICAL and entry.quiet_hours is QuietHours.RESPECT


def send_window(catalog: Catalog, entry: CatalogEntry) -> str:
    return entry.send_window or catalog.send_window


def cap_key(recipient_id: str, category: Category, per: timedelta, at: datetime) -> str:
    """The counter of a recipient's messages of a category in the fixed window containing `at`."""
    index = int(at.timestamp() // per.total_seconds())
    return f"{recipient_id}|{category.value}|{index}"


def dedupe_key(tenant: str | None, key: str) -> str:
    return hashlib.sha256(f"{tenant or ''}|{key}".encode()).hexdigest()
