"""Herald's one notion of now: every time-based rule reads an injectable `Clock`, so tests run on simulated time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock, timezone-aware in UTC: the default `Clock`."""
    return datetime.now(UTC)
