"""The dev and demo samples: the channel showcase goes now at any hour, the per-type samples keep real zones."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from consumers.app import BUNDLED_CATALOG
from consumers.dev.samples import SAMPLE_PEOPLE, SHOWCASE, sample_events, zone_at_local_hour
from schemas.catalog import Catalog

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("utc_hour", range(24))
@pytest.mark.parametrize("wanted", [3, 12, 13])
def test_zone_at_local_hour__it_is_that_hour_there(utc_hour: int, wanted: int) -> None:
    now = datetime(2026, 11, 25, utc_hour, 59, tzinfo=UTC)
    assert now.astimezone(ZoneInfo(zone_at_local_hour(now, wanted))).hour == wanted


def test_sample_events__showcase_and_webhook_in_a_midday_zone_samples_in_their_own() -> None:
    events = sample_events(Catalog.load(BUNDLED_CATALOG))
    tail = events[-(len(SHOWCASE) + 1):]
    now = datetime.now(UTC)
    hours = {now.astimezone(ZoneInfo(e["data"]["to"]["timezone"])).hour for e in tail}
    assert hours <= {12, 13}  # 13: the hour turned between the two reads of the clock
    own = {p["timezone"] for p in SAMPLE_PEOPLE}
    assert all(e["data"]["to"]["timezone"] in own for e in events[:-len(tail)])
