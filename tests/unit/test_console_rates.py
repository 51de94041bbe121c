"""The console's rates: distinct messages per group over a window, each rate's numerator within its denominator,
thin rates (n < 20) marked, a zero denominator shown as no rate, and charts that say in words what they draw."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from consumers.console.rates_query import SQL, Counts, Rate, RatesCache, Window, rows_of, summarize
from consumers.console.svg import Bar, bar_chart, series_chart
from consumers.observe.timeline_index import TimelineIndex
from tests.unit.test_console_auth import TOKEN, client_for, console_context

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DAY = Window((NOW - timedelta(days=1)).timestamp(), NOW.timestamp(), "the last 24 hours")


class Statuses:
    """Statuses written into a timeline index, as the worker indexes them from herald.status."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, bytes]] = []

    def message(self, mid: str, steps: list[str], *, at: datetime, channel: str | None = "email",
                event_type: str = "order.confirmed", locale: str = "es") -> None:
        for i, status in enumerate(steps):
            doc = {"message_id": mid, "status": status, "at": (at + timedelta(seconds=i)).isoformat(),
                   "event_type": event_type, "channel": channel, "tenant": "demo",
                   # Only `sent` names the rendered locale; receipts do not.
                   "locale": locale if status == "sent" else None}
            self.rows.append((0, len(self.rows), orjson.dumps(doc)))

    def into(self, index: TimelineIndex) -> TimelineIndex:
        index.add(self.rows, {0: len(self.rows)})
        return index


@pytest.fixture
def known(tmp_path: Path) -> Iterator[TimelineIndex]:
    """25 email messages (20 delivered, 5 opened, 2 clicked, 1 bounced, in two locales), 10 SMS messages
    (8 sent, 6 delivered, 1 replied; 3 failed: one after it was sent, two before), a push message accepted and
    nothing more, a whole event rejected, and a message sent before the window whose receipt arrives in it."""
    s = Statuses()
    at = NOW - timedelta(hours=3)
    for i in range(25):
        steps = ["accepted", "sent", "delivered" if i < 20 else "retrying"]
        steps += ["opened"] if i < 5 else []
        steps += ["clicked", "clicked"] if i < 2 else []  # a second click: still one message
        steps += ["bounced"] if i == 24 else []
        s.message(f"email-{i}", steps, at=at, locale="es" if i < 15 else "en")
    for i in range(10):
        steps = ["accepted"] + (["sent", "delivered"] if i < 6 else ["sent"] if i < 8 else ["failed"])
        steps += ["replied"] if i == 0 else []
        steps += ["failed"] if i == 7 else []
        s.message(f"sms-{i}", steps, at=at, channel="sms", event_type="shipping.dispatched")
    s.message("push-0", ["accepted"], at=at, channel="push")
    s.message("event-0", ["rejected", "dead_lettered"], at=at, channel=None, event_type="pizza.delivered")
    s.message("old-0", ["accepted", "sent"], at=NOW - timedelta(days=2), channel="sms")
    s.message("old-0", ["delivered"], at=at, channel="sms")
    index = s.into(TimelineIndex(tmp_path / "known.sqlite"))
    yield index
    index.close()


def by(rates_groups: list, key: tuple[str, ...]):  # type: ignore[no-untyped-def]
    return next(g for g in rates_groups if g.key == key)


def test_rates__count_distinct_messages_per_channel_within_their_denominators(known: TimelineIndex) -> None:
    rates = summarize(rows_of(known.query(SQL, DAY.parameters())),
                      DAY, ["channel"])
    assert [g.key for g in rates.groups] == [("email",), ("sms",), ("push",)]
    email, sms, push = (by(rates.groups, (c,)) for c in ("email", "sms", "push"))
    assert email.counts == Counts(accepted=25, sent=25, sent_email=25, delivered=20, opened=5, clicked=2,
                                  replied=0, failed=1)
    assert (email.rates["delivery"].text, email.rates["open"].text, email.rates["click"].text) == \
        ("80.0%", "20.0%", "8.0%")
    assert email.rates["failure"] == Rate(1, 25) and not email.rates["delivery"].thin
    # SMS: 8 of 10 sent; a failure of a sent message and one never sent both count, over the 10 accepted.
    assert (sms.counts.sent, sms.counts.delivered, sms.counts.replied, sms.counts.failed) == (8, 6, 1, 3)
    assert sms.rates["delivery"] == Rate(6, 8) and sms.rates["delivery"].thin  # n = 8 < 20: greyed out
    assert sms.rates["failure"] == Rate(3, 10) and sms.rates["open"].denominator == 0
    # Push: accepted, never sent: no delivery rate at all rather than 0%.
    assert push.rates["delivery"].value is None and push.rates["delivery"].text == "\u2013"
    assert push.rates["failure"] == Rate(0, 1)
    # The rejected event was never accepted; the old message was sent before the window (its receipt is not
    # counted as a delivery of nothing).
    assert rates.total.counts.accepted == 36 and rates.total.counts.delivered == 26


def test_rates__a_message_takes_its_locale_from_its_sent_status(known: TimelineIndex) -> None:
    rates = summarize(rows_of(known.query(SQL, DAY.parameters())),
                      DAY, ["channel", "locale"])
    assert by(rates.groups, ("email", "es")).counts.delivered == 15
    assert by(rates.groups, ("email", "en")).rates["delivery"] == Rate(5, 10)
    assert by(rates.groups, ("push", "\u2013")).counts.accepted == 1  # never sent: no locale


def test_rates__time_series_of_sent_and_failed_per_hour(known: TimelineIndex) -> None:
    rates = summarize(rows_of(known.query(SQL, DAY.parameters())),
                      DAY, [])
    assert len(rates.series) == 24 and rates.series[0][0] == NOW - timedelta(days=1)
    [(hour, sent, failed)] = [p for p in rates.series if p[1] or p[2]]
    assert (hour, sent, failed) == (NOW - timedelta(hours=3), 33, 4)
    assert [g.key for g in rates.groups] == [()]


def test_rates__buckets_start_on_whole_hours_and_days() -> None:
    hours = Window((NOW - timedelta(minutes=90)).timestamp(), (NOW + timedelta(minutes=10)).timestamp(), "x")
    assert (datetime.fromtimestamp(hours.origin, UTC), hours.buckets) == (NOW - timedelta(hours=2), 3)
    week = Window.last(timedelta(days=7), NOW + timedelta(minutes=7), "the last 7 days")
    assert week.end == (NOW + timedelta(minutes=10)).timestamp()  # rounded up to 5 minutes
    assert (week.bucket, datetime.fromtimestamp(week.origin, UTC), week.buckets) == (
        86400, datetime(2026, 11, 17, tzinfo=UTC), 8)


def test_rates__rate_arithmetic_at_the_edges() -> None:
    assert Rate(0, 0).value is None and Rate(0, 0).thin and Rate(0, 0).text == "\u2013"
    assert Rate(19, 19).thin and not Rate(19, 20).thin
    assert Rate(1, 3).text == "33.3%" and Rate(0, 20).text == "0.0%"


def test_rates__the_query_reads_the_window_through_the_at_index(known: TimelineIndex) -> None:
    plan = " ".join(str(row[-1]) for row in known.query(f"EXPLAIN QUERY PLAN {SQL}",
                                                         {"start": 0, "end": 1, "origin": 0, "bucket": 3600}))
    assert "USING INDEX statuses_at" in plan or "USING COVERING INDEX statuses_at" in plan, plan


async def test_rates__the_cache_queries_once_per_window(known: TimelineIndex) -> None:
    calls: list[str] = []

    def query(sql: str, params: dict[str, float]) -> list[tuple[object, ...]]:
        calls.append(sql)
        return known.query(sql, params)

    cache = RatesCache(ttl=30)
    assert await cache.rows(query, DAY) == await cache.rows(query, DAY)
    other = Window(DAY.start - 3600, DAY.end, "x")
    await cache.rows(query, other)
    assert len(calls) == 2


# --- charts --------------------------------------------------------------------------------------------------------

def test_bar_chart__one_bar_per_group_with_a_title_and_the_numbers_in_words() -> None:
    svg = str(bar_chart("Delivery rate by channel", [Bar("email", 0.8, "80.0% n=25"),
                                                     Bar("sms", 0.75, "75.0% n=8", thin=True),
                                                     Bar("push", None, "\u2013 n=0", thin=True)]))
    assert len(re.findall(r'<rect class="bar[ "]', svg)) == 3
    assert len(re.findall(r'<rect class="bar thin"', svg)) == 2
    assert re.search(r"<title id=[^>]+>Delivery rate by channel</title>", svg)
    assert "email: 80.0% n=25; sms: 75.0% n=8 (few messages)" in svg
    widths = [float(w) for w in re.findall(r'<rect class="bar[^"]*" x="0" y="[^"]+" width="([^"]+)"', svg)]
    assert widths[2] == 0.0 and widths[0] > widths[1] > 0


def test_bar_chart__escapes_labels() -> None:
    assert "<b>" not in str(bar_chart("t", [Bar("<b>x</b>", 0.5, "50%")]))


def test_series_chart__a_pair_of_columns_per_bucket_and_a_description() -> None:
    points = [(NOW + timedelta(hours=i), 10 * i, i % 2) for i in range(4)]
    svg = str(series_chart("Messages sent and failed per hour", points, ("sent", "failed"), "hour"))
    assert len(re.findall(r'<rect class="col first"', svg)) == 4
    assert len(re.findall(r'<rect class="col second"', svg)) == 4
    assert "<title" in svg and "60 sent and 2 failed in 4 hours" in svg


# --- the page ------------------------------------------------------------------------------------------------------

@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    ctx = console_context(tmp_path)
    ctx.clock = lambda: NOW
    assert ctx.timeline is not None
    s = Statuses()
    for i in range(30):
        s.message(f"e-{i}", ["accepted", "sent", "delivered"], at=NOW - timedelta(hours=2))
    for i in range(4):
        s.message(f"s-{i}", ["accepted", "sent"], at=NOW - timedelta(hours=2), channel="sms")
    s.into(ctx.timeline.index)
    c = await client_for(ctx)
    await c.post("/console/login", data={"token": TOKEN})
    yield c
    await c.close()


async def test_rates_page__by_channel_shows_counts_beside_rates_and_greys_thin_ones(client: TestClient) -> None:
    html = await (await client.get("/console/rates?window=24h&group=channel&grouped=1")).text()
    email = re.search(r'<tr data-group="email">(.*?)</tr>', html, re.DOTALL)
    sms = re.search(r'<tr data-group="sms">(.*?)</tr>', html, re.DOTALL)
    assert email and sms
    assert re.search(r'data-count="sent">30<', email.group(1))
    assert '<span class="rate">100.0%</span>' in email.group(1) and "30 / n=30" in email.group(1)
    assert '<span class="rate thin" title="fewer than 20 messages">0.0%</span>' in sms.group(1)
    assert ">n/a<" in sms.group(1)  # no open rate off email
    assert html.count('<svg class="chart bars"') == 6 and html.count('<svg class="chart series"') == 1


async def test_rates_page__windows_and_groupings_from_the_form(client: TestClient) -> None:
    hour = await (await client.get("/console/rates?window=1h")).text()
    assert "No message in this window." in hour  # the statuses are two hours old
    none = await (await client.get("/console/rates?window=7d&grouped=1")).text()
    assert '<tr data-group="all">' in none and "by all messages" in none
    bad = await (await client.get("/console/rates?window=custom&from=2026-11-24T10:00&to=2026-11-24T09:00")).text()
    assert "From must be before To." in bad
    custom = await (await client.get("/console/rates?window=custom&from=2026-11-24T09:00&to=2026-11-24T11:00"
                                     "&group=channel&grouped=1")).text()
    assert re.search(r'<tr data-group="email">.*?data-count="sent">30<', custom, re.DOTALL)
    assert "per hour" in custom
    week = await (await client.get("/console/rates?window=7d")).text()
    assert "per day" in week
