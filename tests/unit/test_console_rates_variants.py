"""The rates page's conversions and variants: conversion = converted / sent per type, channel and variant, every rate
with its 95% Wilson interval, and each variant against its reference with Newcombe's interval of the difference."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from consumers.console.rates_query import RATES, SQL, Counts, Rate, Window, rows_of, summarize
from consumers.console.rates_stats import compare_variants, difference, wilson
from consumers.observe.timeline_index import TimelineIndex
from tests.unit.test_console_auth import TOKEN, client_for, console_context

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DAY = Window((NOW - timedelta(days=1)).timestamp(), NOW.timestamp(), "the last 24 hours")


def statuses(plan: dict[str, tuple[int, int]], *, channel: str = "email", event_type: str = "payment.due",
             at: datetime = NOW - timedelta(hours=3), start: int = 0) -> list[tuple[int, int, bytes]]:
    """Per variant, (sent, converted) messages; every status of a message names its variant, as Herald's do."""
    rows: list[tuple[int, int, bytes]] = []
    for variant, (sent, converted) in plan.items():
        for i in range(sent):
            steps = ["accepted", "sent"] + (["converted"] if i < converted else [])
            for j, status in enumerate(steps):
                doc = {"message_id": f"{event_type}-{channel}-{variant}-{i}", "status": status,
                       "at": (at + timedelta(seconds=j)).isoformat(), "event_type": event_type,
                       "channel": channel, "tenant": "demo", "variant": None if variant == "-" else variant}
                rows.append((0, start + len(rows), orjson.dumps(doc)))
    return rows


@pytest.fixture
def index(tmp_path: Path) -> Iterator[TimelineIndex]:
    """payment.due by email: variant a 60 sent, 6 converted; b 60 sent, 18 converted; by SMS: a and b 5 sent each
    (thin); order.confirmed with no variant: 30 sent."""
    rows = statuses({"a": (60, 6), "b": (60, 18)})
    rows += statuses({"a": (5, 1), "b": (5, 0)}, channel="sms", start=len(rows))
    rows += statuses({"-": (30, 0)}, event_type="order.confirmed", start=len(rows))
    found = TimelineIndex(tmp_path / "variants.sqlite")
    found.add(rows, {0: len(rows)})
    yield found
    found.close()


def test_rates__conversion_per_type_channel_and_variant(index: TimelineIndex) -> None:
    rates = summarize(rows_of(index.query(SQL, DAY.parameters())), DAY, ["event_type", "channel", "variant"])
    groups = {g.key: g for g in rates.groups}
    assert groups[("payment.due", "email", "a")].rates["conversion"] == Rate(6, 60)
    assert groups[("payment.due", "email", "b")].rates["conversion"] == Rate(18, 60)
    assert groups[("payment.due", "sms", "b")].rates["conversion"] == Rate(0, 5)
    assert groups[("payment.due", "sms", "b")].rates["conversion"].thin
    assert groups[("order.confirmed", "email", "\u2013")].counts == Counts(accepted=30, sent=30, sent_email=30)
    assert rates.total.counts.converted == 25 and "conversion" in RATES


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), table I
    (0, 20, 0.0, 0.1611),  # none of 20 is still up to 16%: not "0% +/- 0"
    (10, 20, 0.2993, 0.7007),
    (20, 20, 0.8389, 1.0),
])
def test_wilson__known_intervals(k: int, n: int, low: float, high: float) -> None:
    assert wilson(k, n) == pytest.approx((low, high), abs=5e-5)
    assert Rate(k, n).interval == pytest.approx((low, high), abs=5e-5)


def test_difference__newcombes_worked_example_and_its_p_value() -> None:
    d = difference(56, 70, 48, 80)  # Newcombe (1998), table II, method 10: 0.0524 to 0.3339
    assert (d.value, d.low, d.high) == pytest.approx((0.2, 0.0524, 0.3339), abs=5e-5)
    assert d.significant and d.p_value == pytest.approx(0.0080, abs=5e-4)
    same = difference(10, 100, 10, 100)
    assert not same.significant and same.p_value == 1.0 and same.low < 0 < same.high
    assert not difference(0, 5, 0, 5).significant  # no spread at all: nothing to say


def test_compare_variants__each_variant_against_the_first_per_group(index: TimelineIndex) -> None:
    rates = summarize(rows_of(index.query(SQL, DAY.parameters())), DAY, ["event_type", "channel", "variant"])
    comparisons = compare_variants(rates.groups, rates.grouping, RATES)
    assert [(c.label, c.reference, [r.variant for r in c.rows]) for c in comparisons] == [
        ("payment.due \u00b7 email", "a", ["b"]), ("payment.due \u00b7 sms", "a", ["b"])]
    email_b = comparisons[0].rows[0]
    conversion = email_b.differences["conversion"]
    assert conversion is not None and conversion.value == pytest.approx(0.2) and conversion.significant
    assert email_b.n["conversion"] == (60, 60)
    sms_b = comparisons[1].rows[0].differences["conversion"]
    assert sms_b is not None and not sms_b.significant  # 0 of 5 against 1 of 5: noise
    assert comparisons[1].rows[0].differences["open"] is None  # no opens off email: nothing to compare
    # Without the variant in the grouping there is nothing to compare.
    assert compare_variants(rates.groups, ("event_type", "channel"), RATES) == []


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    ctx = console_context(tmp_path)
    ctx.clock = lambda: NOW
    assert ctx.timeline is not None
    rows = statuses({"a": (60, 6), "b": (60, 18)})
    ctx.timeline.index.add(rows, {0: len(rows)})
    c = await client_for(ctx)
    await c.post("/console/login", data={"token": TOKEN})
    yield c
    await c.close()


async def test_rates_page__variants_with_counts_intervals_and_the_comparison(client: TestClient) -> None:
    html = await (await client.get("/console/rates?window=24h&group=variant&grouped=1")).text()
    b = re.search(r'<tr data-group="b">(.*?)</tr>', html, re.DOTALL)
    assert b is not None
    conversion = re.search(r'data-rate="conversion">(.*?)</td>', b.group(1), re.DOTALL)
    assert conversion is not None
    assert '<span class="rate">30.0%</span>' in conversion.group(1) and "18 / n=60" in conversion.group(1)
    assert "95% CI 19.9\u201342.5%" in conversion.group(1)
    compared = re.search(r'<tr data-comparison="all b">(.*?)</tr>', html, re.DOTALL)
    assert compared is not None and "Variants compared" in html
    cell = re.search(r'data-rate="conversion">(.*?)</td>', compared.group(1), re.DOTALL)
    assert cell is not None and "+20.0 pts" in cell.group(1) and "(significant)" in cell.group(1)
    assert "n=60 vs 60" in cell.group(1)
    plain = await (await client.get("/console/rates?window=24h&group=channel&grouped=1")).text()
    assert "Variants compared" not in plain
