"""The rates page's survey ratings: how the `<type>.rated` answers of a window spread over their scale, per type
(and channel, when the page groups by channel), with the count and mean of each, as a table and a bar chart per
group. Read from the ratings index (consumers/observe/rating_index.py: the latest rating per message, from
herald.replies), which each worker keeps while the console is on (`rating_reader`).

A rating counts in the window it was given in (its `at`), whenever the message was sent; a person who rated twice
counts once, with their latest score. A distribution over fewer than `THIN` ratings is marked thin: noise, not a
result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup

from consumers.console.context import ConsoleContext
from consumers.console.rates_query import THIN, Window
from consumers.console.svg import Bar, bar_chart
from consumers.observe.rating_index import RatingIndex
from consumers.observe.timeline import TopicReader
from consumers.state.stores import worker_directory
from consumers.topics import kafka_client_kwargs
from schemas.settings import Settings

EXTRAS_KEY = "ratings"  # the reader, in `ConsoleContext.extras`
SQL = ("SELECT event_type, channel, scale, score, COUNT(*) FROM ratings WHERE at >= :start AND at < :end "
       "GROUP BY event_type, channel, scale, score")


def rating_reader(settings: Settings, clock: Callable[[], datetime]) -> TopicReader[RatingIndex] | None:
    """The worker's ratings index (`ratings.sqlite` beside the timeline), read from herald.replies over the
    timeline's retention; None where the console is off (no HERALD_ADMIN_TOKEN). The app runs it as a task and
    hands it to the console under `EXTRAS_KEY`."""
    if settings.admin_token is None:
        return None
    return TopicReader(settings.topic("replies"), kafka_client_kwargs(settings),
                       worker_directory(settings) / "ratings.sqlite", retention=settings.timeline_retention,
                       open_index=RatingIndex, clock=clock)


@dataclass
class Distribution:
    """The ratings of one group: how many gave each score from 1 to `scale`."""

    key: tuple[str, ...]
    scale: int
    counts: list[int] = field(default_factory=list)  # counts[score - 1]
    note: str = ""  # "1-5" (en dash) where the group was rated on more than one scale in the window

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * self.scale

    @property
    def label(self) -> str:
        return " · ".join(self.key) + (f" ({self.note})" if self.note else "")

    @property
    def n(self) -> int:
        return sum(self.counts)

    @property
    def mean(self) -> float | None:
        return sum(score * count for score, count in enumerate(self.counts, 1)) / self.n if self.n else None

    @property
    def thin(self) -> bool:
        return self.n < THIN

    def share(self, score: int) -> float:
        return self.counts[score - 1] / self.n if self.n else 0.0

    @property
    def mean_text(self) -> str:
        return "\u2013" if self.mean is None else f"{self.mean:.2f}"


@dataclass
class Ratings:
    """The rates page's ratings section: a distribution per group, busiest first, and a chart of each."""

    grouping: tuple[str, ...]
    groups: list[Distribution]
    charts: list[tuple[Distribution, Markup]]

    @property
    def total(self) -> int:
        return sum(g.n for g in self.groups)

    @property
    def scale(self) -> int:
        """The widest scale shown: the table's score columns."""
        return max((g.scale for g in self.groups), default=0)


def summarize_ratings(rows: Iterable[Sequence[Any]], grouping: Sequence[str]) -> list[Distribution]:
    """Sum the query's rows (type, channel, scale, score, count) into a distribution per type, or per type and
    channel when `grouping` has "channel". A type rated on two scales (its catalog entry changed within the
    window) shows one distribution per scale, never one mixed."""
    by_channel = "channel" in grouping
    groups: dict[tuple[tuple[str, ...], int], Distribution] = {}
    for event_type, channel, scale, score, count in rows:
        key: tuple[str, ...] = (str(event_type), str(channel or "\u2013")) if by_channel else (str(event_type),)
        group = groups.setdefault((key, int(scale)), Distribution(key, int(scale)))
        if 1 <= int(score) <= group.scale:
            group.counts[int(score) - 1] += int(count)
    scales: dict[tuple[str, ...], int] = {}
    for key, _ in groups:
        scales[key] = scales.get(key, 0) + 1
    for (key, scale), group in groups.items():
        group.note = f"1\u2013{scale}" if scales[key] > 1 else ""
    return sorted(groups.values(), key=lambda g: (-g.n, g.key, g.scale))


def chart(group: Distribution) -> Markup:
    """One bar per score, as long as its share of the group's ratings, with the count and share beside it."""
    bars = [Bar(f"{score}", group.share(score), f"{count:,} ({group.share(score) * 100:.1f}%)", group.thin)
            for score, count in enumerate(group.counts, 1)]
    title = f"Ratings of {group.label} from 1 to {group.scale}: mean {group.mean_text}, n={group.n:,}"
    return bar_chart(title, bars)


async def ratings_section(ctx: ConsoleContext, window: Window, grouping: Sequence[str]) -> Ratings | None:
    """The ratings of `window` for the rates page; None where this worker keeps no ratings index."""
    reader = ctx.extras.get(EXTRAS_KEY)
    if not isinstance(reader, TopicReader) or not isinstance(reader.index, RatingIndex):
        return None
    parameters = {"start": window.start, "end": window.end}
    rows = await asyncio.to_thread(reader.index.query, SQL, parameters)  # SQLite work off the event loop
    groups = summarize_ratings(rows, grouping)
    return Ratings(tuple(grouping), groups, [(g, chart(g)) for g in groups])
