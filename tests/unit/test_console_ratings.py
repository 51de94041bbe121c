"""The rates page's survey ratings: the ratings index keeps the latest `<type>.rated` per message from
herald.replies (and nothing else), and the page shows each type's distribution over its scale, with counts, shares
and the mean, in a table and an SVG bar chart that says in words what it draws."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from consumers.console.rates_query import Window
from consumers.console.ratings_query import Distribution, chart, summarize_ratings
from consumers.inbound.replies import Interpretation, ReplyKind, rating_cloudevent
from consumers.observe.rating_index import RatingIndex, rating_of
from consumers.observe.timeline import TopicReader
from tests.unit.test_console_auth import TOKEN, client_for, console_context
from tests.unit.test_surveys import asked

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DAY = Window((NOW - timedelta(days=1)).timestamp(), NOW.timestamp(), "the last 24 hours")
SQL_ROWS = "SELECT message_id, score FROM ratings ORDER BY message_id"


def rated(message_id: str, score: int, *, at: datetime, channel: str = "sms", event_type: str = "service.survey",
          scale: int = 5, reply_id: str = "r") -> bytes:
    """A rating as the answer reader publishes it."""
    question = asked(channel).model_copy(update={"message_id": message_id, "event_type": event_type})
    meaning = Interpretation(ReplyKind.RATING, question, "rate", str(score), score)
    return orjson.dumps(rating_cloudevent(meaning, scale=scale, recipient="sha256:ab", at=at, reply_id=reply_id))


def rows(*values: bytes) -> list[tuple[int, int, bytes | None]]:
    return [(0, offset, value) for offset, value in enumerate(values)]


# --- the index -------------------------------------------------------------------------------------------------

def test_rating_index__keeps_the_latest_rating_per_message_in_any_order(tmp_path: Path) -> None:
    index = RatingIndex(tmp_path / "ratings.sqlite")
    at = NOW - timedelta(hours=1)
    assert index.add(rows(rated("m1", 2, at=at), rated("m1", 5, at=at + timedelta(minutes=1))), {0: 2}) == 2
    index.add(rows(rated("m1", 3, at=at - timedelta(minutes=5))), {0: 3})  # an older one read late
    assert index.query(SQL_ROWS) == [("m1", 5)] and index.position(0) == 3
    index.close()


@pytest.mark.parametrize("value", [
    orjson.dumps({"type": "herald.reply.received", "source": "herald/sms/twilio", "time": NOW.isoformat(),
                  "data": {"message_id": "m", "text": "5"}}),
    orjson.dumps({"type": "appointment.reminder.confirmed", "source": "herald/replies", "time": NOW.isoformat(),
                  "data": {"message_id": "m", "meaning": "confirm"}}),
    orjson.dumps({"type": "x.rated", "source": "someone/else", "time": NOW.isoformat(),
                  "data": {"message_id": "m", "score": 5, "scale": 5}}),
    orjson.dumps({"type": "x.rated", "source": "herald/replies", "time": NOW.isoformat(),
                  "data": {"message_id": "m", "score": 6, "scale": 5}}),
    orjson.dumps({"type": "x.rated", "source": "herald/replies", "time": NOW.isoformat(),
                  "data": {"message_id": "m", "score": True, "scale": 5}}),
    orjson.dumps({"type": "x.rated", "source": "herald/replies", "time": "yesterday",
                  "data": {"message_id": "m", "score": 5, "scale": 5}}),
    b"not json", b"[]", None,
], ids=["raw_reply", "confirmation", "not_herald_s", "score_past_scale", "boolean_score", "bad_time", "not_json",
        "not_an_object", "tombstone"])
def test_rating_index__every_other_record_of_the_topic_is_passed_over(value: bytes | None) -> None:
    assert rating_of(value) is None


def test_rating_index__prunes_what_leaves_the_window(tmp_path: Path) -> None:
    index = RatingIndex(tmp_path / "ratings.sqlite")
    index.add(rows(rated("old", 1, at=NOW - timedelta(days=9)), rated("new", 4, at=NOW)), {0: 2},
              since=(NOW - timedelta(days=10)).timestamp())
    assert index.prune((NOW - timedelta(days=7)).timestamp()) == 1
    assert index.query(SQL_ROWS) == [("new", 4)]
    index.close()


# --- the distributions -----------------------------------------------------------------------------------------

ROWS: list[tuple[Any, ...]] = [("service.survey", "sms", 5, 5, 12), ("service.survey", "sms", 5, 4, 6),
                               ("service.survey", "voice", 5, 4, 3), ("service.survey", "voice", 5, 1, 1),
                               ("nps.call", "voice", 3, 2, 2)]


def test_summarize_ratings__per_type_counts_each_score_and_the_mean() -> None:
    survey, nps = summarize_ratings(ROWS, ["event_type"])
    assert (survey.key, survey.counts, survey.n) == (("service.survey",), [1, 0, 0, 9, 12], 22)
    assert survey.mean == pytest.approx((1 + 4 * 9 + 5 * 12) / 22) and survey.mean_text == "4.41"
    assert (nps.key, nps.scale, nps.counts, nps.thin) == (("nps.call",), 3, [0, 2, 0], True)


def test_summarize_ratings__per_type_and_channel_when_the_page_groups_by_channel() -> None:
    groups = summarize_ratings(ROWS, ["event_type", "channel"])
    assert [(g.label, g.counts) for g in groups] == [("service.survey · sms", [0, 0, 0, 6, 12]),
                                                     ("service.survey · voice", [1, 0, 0, 3, 0]),
                                                     ("nps.call · voice", [0, 2, 0])]


def test_summarize_ratings__two_scales_of_one_type_never_mix() -> None:
    groups = summarize_ratings([("t.a", "sms", 5, 5, 1), ("t.a", "sms", 3, 3, 2)], [])
    assert sorted((g.label, g.counts) for g in groups) == [("t.a (1\u20133)", [0, 0, 2]),
                                                          ("t.a (1\u20135)", [0, 0, 0, 0, 1])]


def test_chart__a_bar_per_score_with_count_and_share_in_words() -> None:
    svg = str(chart(Distribution(("service.survey",), 5, [1, 0, 0, 9, 12])))
    assert svg.count('class="bar"') == 5 and "mean 4.41, n=22" in svg
    assert "5: 12 (54.5%)" in svg and "2: 0 (0.0%)" in svg
    assert 'class="bar thin"' in str(chart(Distribution(("t",), 3, [0, 2, 0])))  # fewer than 20 ratings


# --- the page --------------------------------------------------------------------------------------------------

@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    ctx = console_context(tmp_path)
    ctx.clock = lambda: NOW
    reader = TopicReader("t.replies", {}, tmp_path / "ratings.sqlite", retention=timedelta(days=7),
                         open_index=RatingIndex)
    at = NOW - timedelta(hours=2)
    values = [rated(f"s-{i}", 5 if i < 12 else 4, at=at) for i in range(18)]
    values += [rated(f"v-{i}", 4, at=at, channel="voice") for i in range(3)]
    values += [rated("old", 1, at=NOW - timedelta(days=3))]  # outside the last 24 hours
    reader.index.add(rows(*values), {0: len(values)})
    ctx.extras["ratings"] = reader
    c = await client_for(ctx)
    await c.post("/console/login", data={"token": TOKEN})
    yield c
    await c.close()
    reader.close()


async def test_rates_page__shows_the_distribution_of_each_survey_type_with_its_mean(client: TestClient) -> None:
    html = await (await client.get("/console/rates?window=24h&group=event_type&grouped=1")).text()
    row = re.search(r'<tr data-ratings="service.survey">(.*?)</tr>', html, re.DOTALL)
    assert row, html
    assert re.search(r'data-count="ratings">21<', row.group(1))
    assert "4.57" in row.group(1)  # (12 * 5 + 9 * 4) / 21
    assert re.search(r'data-score="5">12\s*<span class="rates-n">57.1%', row.group(1))
    assert re.search(r'data-score="1">0\s*<span', row.group(1))
    assert "Ratings of service.survey from 1 to 5: mean 4.57, n=21" in html  # the chart's title


async def test_rates_page__ratings_by_channel_and_an_empty_window(client: TestClient) -> None:
    html = await (await client.get("/console/rates?window=24h&group=channel&grouped=1")).text()
    assert '<tr data-ratings="service.survey · sms">' in html and '<tr data-ratings="service.survey · voice">' in html
    hour = await (await client.get("/console/rates?window=1h")).text()
    assert "No rating in this window." in hour


async def test_rates_page__without_a_ratings_index_says_so(tmp_path: Path) -> None:
    ctx = console_context(tmp_path)
    c = await client_for(ctx)
    await c.post("/console/login", data={"token": TOKEN})
    html = await (await c.get("/console/rates")).text()
    await c.close()
    assert "Ratings are not indexed on this worker." in html

