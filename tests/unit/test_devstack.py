"""When `herald demo` may stop waiting: every message got as far as an outcome, whatever arrives after it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.dev.devstack import demo_settled
from schemas.status import DeliveryStatus, Status

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def statuses(*pairs: tuple[str, Status]) -> list[DeliveryStatus]:
    return [DeliveryStatus(message_id=m, status=s, at=AT) for m, s in pairs]


CASES = [
    ("sent_then_replied_twice", [("m1", Status.ACCEPTED), ("m1", Status.SENT), ("m1", Status.REPLIED),
                                 ("m1", Status.REPLIED)], 1, True),
    ("scheduled_for_the_morning", [("m1", Status.SCHEDULED)], 1, True),
    ("rejected_bad_input", [("m1", Status.REJECTED), ("m1", Status.DEAD_LETTERED)], 1, True),
    ("still_retrying", [("m1", Status.ACCEPTED), ("m1", Status.RETRYING)], 1, False),
    ("one_message_not_out_yet", [("m1", Status.SENT), ("m2", Status.ACCEPTED)], 2, False),
    ("an_event_not_seen_yet", [("m1", Status.SENT)], 2, False),
]


@pytest.mark.parametrize(("seen", "events", "settled"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_demo_settled__once_every_message_got_as_far_as_an_outcome(
        seen: list[tuple[str, Status]], events: int, settled: bool) -> None:
    assert demo_settled(statuses(*seen), events) is settled
