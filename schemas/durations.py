"""Durations as the catalog writes them: `90s`, `10m`, `2h`, `7d`, besides what pydantic accepts for a timedelta
(seconds, ISO 8601). One parser for every catalog model (catalog, digests, surveys, experiments)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: Any) -> Any:
    """Accept `90s`, `10m`, `2h`, `7d` besides what pydantic accepts for a timedelta."""
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    return value
