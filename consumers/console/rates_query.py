"""The rates page's numbers, from the timeline index of `herald.status`: per message, which steps it reached in a
window; per group (event type, channel, locale, variant), how many messages reached each; and the rates between
them.

Definitions (distinct messages, statuses within the window):
- accepted: messages Herald took on (`accepted`, `scheduled` or `sent`); sent: messages that reached `sent`.
- delivery = delivered (or read) / sent; open = opened / sent, email only; click = clicked / sent;
  reply = replied / sent; conversion = converted / sent (the `converted` status must fall in the window too: a
  message sent near its end may convert after it); failure = failed, bounced, expired or dead-lettered / accepted.
A numerator counts only messages of its denominator, so no rate passes 100%; a message neither accepted nor sent
in the window (a rejected event, a late receipt of an older message) counts nowhere. A message takes its type,
channel, locale and variant from whichever of its statuses name them (receipts carry no locale; `sent` does). A rate
over fewer than `THIN` messages is marked thin: noise, not a result; every rate has its 95% Wilson score interval
(consumers/console/rates_stats.py), and variants are compared there.

One SQL query per window (an `at` range on the index, grouped by message, then by type, channel, locale, variant
and time bucket) gives every grouping; the page sums its rows in Python.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.console.rates_stats import wilson
from schemas.status import Status

THIN = 20  # messages: a rate over fewer is shown greyed out
GROUPINGS = ("event_type", "channel", "locale", "variant")
GROUP_LABELS = {"event_type": "type", "channel": "channel", "locale": "locale", "variant": "variant"}
RATES = ("delivery", "open", "click", "reply", "conversion", "failure")
TAKEN = (Status.ACCEPTED, Status.SCHEDULED, Status.SENT)
DELIVERED = (Status.DELIVERED, Status.READ)
FAILURES = (Status.FAILED, Status.BOUNCED, Status.EXPIRED, Status.DEAD_LETTERED)
HOUR, DAY = 3600, 86400


def _in(statuses: Iterable[Status]) -> str:
    """A SQL list of status words: constants of this module, never text from a request."""
    return ", ".join(f"'{s.value}'" for s in statuses)


SQL = f"""
WITH m AS (
  SELECT MAX(event_type) AS event_type, MAX(channel) AS channel, MAX(locale) AS locale, MAX(variant) AS variant,
         MAX(status IN ({_in(TAKEN)})) AS taken,
         MIN(CASE WHEN status = '{Status.SENT.value}' THEN at END) AS sent_at,
         MAX(status IN ({_in(DELIVERED)})) AS delivered,
         MAX(status = '{Status.OPENED.value}') AS opened,
         MAX(status = '{Status.CLICKED.value}') AS clicked,
         MAX(status = '{Status.REPLIED.value}') AS replied,
         MAX(status = '{Status.CONVERTED.value}') AS converted,
         MIN(CASE WHEN status IN ({_in(FAILURES)}) THEN at END) AS failed_at
  FROM statuses WHERE at >= :start AND at < :end GROUP BY message_id)
SELECT event_type, channel, locale, variant,
       CAST((sent_at - :origin) / :bucket AS INTEGER) AS sent_bucket,
       CASE WHEN taken THEN CAST((failed_at - :origin) / :bucket AS INTEGER) END AS failed_bucket,
       SUM(taken), COUNT(sent_at), SUM(sent_at IS NOT NULL AND delivered), SUM(sent_at IS NOT NULL AND opened),
       SUM(sent_at IS NOT NULL AND clicked), SUM(sent_at IS NOT NULL AND replied),
       SUM(taken AND failed_at IS NOT NULL), SUM(sent_at IS NOT NULL AND converted)
FROM m WHERE taken OR sent_at IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6
"""


@dataclass(frozen=True)
class Window:
    """[start, end) in epoch seconds, and the width of the time series' buckets."""

    start: float
    end: float
    label: str

    @property
    def bucket(self) -> int:
        return DAY if self.long else HOUR

    @property
    def origin(self) -> float:
        """The start of the first bucket: whole hours (days, UTC), so the series reads 10:00, 11:00…."""
        return self.start // self.bucket * self.bucket

    @property
    def buckets(self) -> int:
        return max(1, int(-(-(self.end - self.origin) // self.bucket)))

    def parameters(self) -> dict[str, float]:
        return {"start": self.start, "end": self.end, "origin": self.origin, "bucket": self.bucket}

    @property
    def long(self) -> bool:
        return self.end - self.start > 2 * DAY

    @classmethod
    def last(cls, span: timedelta, now: datetime, label: str) -> Window:
        # The end rounded up (to the minute; to 5 minutes for a week): a page reloaded meanwhile reads the same
        # window, from the cache.
        step = 300 if span > timedelta(days=2) else 60
        end = (int(now.timestamp()) // step + 1) * step
        return cls(end - span.total_seconds(), end, label)


@dataclass(frozen=True)
class Rate:
    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    @property
    def thin(self) -> bool:
        return self.denominator < THIN

    @property
    def text(self) -> str:
        return "\u2013" if self.value is None else f"{self.value * 100:.1f}%"

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% Wilson score interval of the rate; None without a denominator."""
        return wilson(self.numerator, self.denominator) if self.denominator else None

    @property
    def interval_text(self) -> str:
        low_high = self.interval
        return "" if low_high is None else f"95% CI {low_high[0] * 100:.1f}\u2013{low_high[1] * 100:.1f}%"


@dataclass
class Counts:
    accepted: int = 0
    sent: int = 0
    sent_email: int = 0  # the open rate's denominator
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    replied: int = 0
    failed: int = 0
    converted: int = 0

    def add(self, other: Counts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def rates(self) -> dict[str, Rate]:
        return {"delivery": Rate(self.delivered, self.sent), "open": Rate(self.opened, self.sent_email),
                "click": Rate(self.clicked, self.sent), "reply": Rate(self.replied, self.sent),
                "conversion": Rate(self.converted, self.sent),
                "failure": Rate(self.failed, self.accepted)}


@dataclass(frozen=True)
class Row:
    """One row of the query: a (type, channel, locale, variant, sent bucket, failed bucket) and its counts."""

    event_type: str | None
    channel: str | None
    locale: str | None
    variant: str | None
    sent_bucket: int | None
    failed_bucket: int | None
    counts: Counts


@dataclass
class Group:
    key: tuple[str, ...]
    counts: Counts = field(default_factory=Counts)

    @property
    def label(self) -> str:
        return " · ".join(self.key) if self.key else "all"

    @property
    def rates(self) -> dict[str, Rate]:
        return self.counts.rates()


@dataclass
class Rates:
    window: Window
    grouping: tuple[str, ...]
    groups: list[Group]
    total: Group
    series: list[tuple[datetime, int, int]]  # (bucket start, sent, failed)


def rows_of(raw: Sequence[Sequence[Any]]) -> list[Row]:
    rows = []
    for (event_type, channel, locale, variant, sent_b, failed_b, accepted, sent, delivered, opened, clicked, replied,
         failed, converted) in raw:
        counts = Counts(accepted=int(accepted or 0), sent=int(sent or 0), delivered=int(delivered or 0),
                        clicked=int(clicked or 0), replied=int(replied or 0), failed=int(failed or 0),
                        converted=int(converted or 0))
        if channel == "email":  # opens are tracked on email only
            counts.sent_email, counts.opened = counts.sent, int(opened or 0)
        rows.append(Row(event_type, channel, locale, variant, sent_b, failed_b, counts))
    return rows


def summarize(rows: Sequence[Row], window: Window, grouping: Sequence[str]) -> Rates:
    """Sum the query's rows into groups (by `grouping`, a subset of `GROUPINGS`) and a time series."""
    chosen = tuple(g for g in GROUPINGS if g in grouping)
    groups: dict[tuple[str, ...], Group] = {}
    total = Group(())
    buckets = window.buckets
    sent, failed = [0] * buckets, [0] * buckets
    for row in rows:
        key = tuple(getattr(row, g) or "\u2013" for g in chosen)
        groups.setdefault(key, Group(key)).counts.add(row.counts)
        total.counts.add(row.counts)
        if row.sent_bucket is not None and 0 <= row.sent_bucket < buckets:
            sent[row.sent_bucket] += row.counts.sent
        if row.failed_bucket is not None and 0 <= row.failed_bucket < buckets:
            failed[row.failed_bucket] += row.counts.failed
    ordered = sorted(groups.values(), key=lambda g: (-g.counts.sent, -g.counts.accepted, g.key))
    series = [(datetime.fromtimestamp(window.origin + i * window.bucket, UTC), sent[i], failed[i])
              for i in range(buckets)]
    return Rates(window, chosen, ordered, total, series)


class RatesCache:
    """The query's rows per window for `ttl` seconds (`long_ttl` for a window over two days, whose rates move
    slowly and whose query reads the most): changing the grouping, or reloading, does not query again."""

    def __init__(self, ttl: float = 30.0, long_ttl: float = 300.0, size: int = 8,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.long_ttl, self.size, self.clock = ttl, long_ttl, size, clock
        self._rows: dict[tuple[float, float, int], tuple[float, list[Row]]] = {}

    async def rows(self, query: Callable[[str, dict[str, Any]], list[tuple[Any, ...]]], window: Window
                   ) -> list[Row]:
        key = (window.start, window.end, window.bucket)
        hit = self._rows.get(key)
        if hit is not None and self.clock() - hit[0] < (self.long_ttl if window.long else self.ttl):
            return hit[1]
        rows = rows_of(await asyncio.to_thread(query, SQL, window.parameters()))  # SQLite work off the event loop
        if len(self._rows) >= self.size:
            self._rows.pop(min(self._rows, key=lambda k: self._rows[k][0]))
        self._rows[key] = (self.clock(), rows)
        return rows
