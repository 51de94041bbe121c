"""The rates page (`/console/rates`): delivery, open, click, reply, conversion and failure rates per event type,
channel, locale and variant over a window (the last hour, day or week, or from/to), as a table with the counts and
95% interval beside every rate, the variants of each group compared with their reference (`rates_stats`), a bar
chart per rate and a time series of sent and failed, from the timeline index (`consumers.console.rates_query`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from markupsafe import Markup

from consumers.console.rates_query import GROUP_LABELS, GROUPINGS, RATES, THIN, Rates, RatesCache, Window, summarize
from consumers.console.rates_stats import compare_variants
from consumers.console.ratings_query import ratings_section
from consumers.console.svg import Bar, bar_chart, series_chart
from consumers.console.views import context, page

WINDOWS = {"1h": ("the last hour", timedelta(hours=1)), "24h": ("the last 24 hours", timedelta(hours=24)),
           "7d": ("the last 7 days", timedelta(days=7))}
DEFAULT_WINDOW, DEFAULT_GROUPING = "24h", ("channel",)
CHART_GROUPS = 25  # bars per chart: the table lists every group
RATE_TITLES = {"delivery": "Delivery rate (delivered / sent)", "open": "Open rate (opened / sent, email)",
               "click": "Click rate (clicked / sent)", "reply": "Reply rate (replied / sent)",
               "conversion": "Conversion rate (converted / sent)",
               "failure": "Failure rate (failed, bounced, expired, dead-lettered / accepted)"}
EXTRAS_KEY = "rates_cache"
LOCAL = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, LOCAL).replace(tzinfo=UTC)
    except ValueError:
        return None


def window_of(query: Any, now: datetime) -> tuple[Window, str, str | None]:
    """The window a request asks for, its form value, and a problem with a custom one (then the default)."""
    chosen = query.get("window", DEFAULT_WINDOW)
    if chosen == "custom":
        start, end = _parse_time(query.get("from", "")), _parse_time(query.get("to", ""))
        if start is None or end is None:
            problem = "Give both From and To (UTC) for a custom window."
        elif start >= end:
            problem = "From must be before To."
        else:
            return Window(start.timestamp(), end.timestamp(), f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"), \
                chosen, None
        label, span = WINDOWS[DEFAULT_WINDOW]
        return Window.last(span, now, label), chosen, problem
    if chosen not in WINDOWS:
        chosen = DEFAULT_WINDOW
    label, span = WINDOWS[chosen]
    return Window.last(span, now, label), chosen, None


def grouping_of(query: Any) -> tuple[str, ...]:
    """The grouping columns a request chose (none at all when the form was sent with every box unticked)."""
    chosen = tuple(g for g in GROUPINGS if g in query.getall("group", []))
    return chosen if chosen or query.get("grouped") else DEFAULT_GROUPING


def charts(rates: Rates, tracking: bool) -> list[tuple[str, Markup]]:
    """A bar chart per rate over the busiest groups (the open rate over email groups only, and only with
    tracking on)."""
    shown = rates.groups[:CHART_GROUPS]
    drawn = []
    for name in RATES:
        if name == "open" and not tracking:
            continue
        bars = []
        for g in shown:
            rate = g.rates[name]
            if name == "open" and not g.counts.sent_email:
                continue
            bars.append(Bar(g.label, rate.value, f"{rate.text} n={rate.denominator:,}", rate.thin))
        drawn.append((RATE_TITLES[name], bar_chart(f"{RATE_TITLES[name]} by {by(rates.grouping)}", bars)))
    return drawn


def by(grouping: tuple[str, ...]) -> str:
    return " and ".join(GROUP_LABELS[g] for g in grouping) or "all messages"


async def _rates(request: web.Request) -> web.Response:
    ctx = context(request)
    assert ctx.timeline is not None  # the console answers 503 without it
    window, chosen, problem = window_of(request.query, ctx.clock())
    grouping = grouping_of(request.query)
    cache = ctx.extras.get(EXTRAS_KEY)
    if not isinstance(cache, RatesCache):
        cache = ctx.extras[EXTRAS_KEY] = RatesCache()
    rows = await cache.rows(ctx.timeline.index.query, window)
    rates = summarize(rows, window, grouping)
    tracking = ctx.settings.tracking
    bucket = "hour" if window.bucket == 3600 else "day"
    series = series_chart(f"Messages sent and failed per {bucket}, {window.label}", rates.series,
                          ("sent", "failed"), bucket)
    start, end = (datetime.fromtimestamp(t, UTC) for t in (window.start, window.end))
    return page(request, "rates.html", title="Rates", rates=rates, charts=charts(rates, tracking), series=series,
                ratings=await ratings_section(ctx, window, grouping),
                windows=[(k, v[0]) for k, v in WINDOWS.items()], chosen=chosen, problem=problem,
                groupings=[(g, GROUP_LABELS[g]) for g in GROUPINGS], grouping=grouping,
                from_value=request.query.get("from", f"{start:{LOCAL}}"),
                to_value=request.query.get("to", f"{end:{LOCAL}}"), start=start, end=end, thin=THIN,
                tracking=tracking, rate_names=RATES, by=by(grouping), bucket=bucket,
                chart_groups=CHART_GROUPS, comparisons=compare_variants(
                    rates.groups, rates.grouping, [r for r in RATES if r != "open" or tracking]))


def routes() -> list[web.RouteDef]:
    return [web.get("/rates", _rates)]
