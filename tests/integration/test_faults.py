"""Issue 6 acceptance against the simulator: providers that throttle, time out and fail, and poison records."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from consumers.cli.publish import make_event
from consumers.dev.simulator.app import SimServer
from schemas.status import Status
from tests.integration.harness import Stack
from tests.integration.test_channels import CATALOG, SIM_ENV, configure, sim_requests

pytestmark = pytest.mark.integration

ORDER = CATALOG.types["order.confirmed"].sample


def person(i: int) -> dict:
    return {"id": f"f{i}", "email": f"f{i}@example.org", "locale": "en"}


def sent_ids(statuses: list) -> set[str]:
    return {s.message_id for s in statuses if s.status is Status.SENT}


@pytest.mark.parametrize("sim_stack", ["email=sendgrid"], indirect=True)
async def test_faults__retry_after_is_honoured_and_10_percent_failures_all_end_delivered(
        sim_stack: tuple[Stack, SimServer]) -> None:
    stack, sim = sim_stack
    stack.start_worker(**SIM_ENV)

    # 429 with Retry-After: 2 -> no request before 2 s have passed; delivered.
    await configure(sim, {"rate_limit": {"count": 1, "retry_after": 2}})
    first = make_event("order.confirmed", person(0), ORDER, source="it")
    await stack.publish([first])
    await stack.wait_statuses(lambda ss: len(sent_ids(ss)) >= 1, timeout=30)
    tries = [datetime.fromisoformat(r["received_at"]) for r in await sim_requests(sim, vendor="sendgrid")]
    assert len(tries) == 2 and (tries[1] - tries[0]).total_seconds() >= 2.0

    # 5 % 5xx and 5 % timeouts (held, then 504): every message delivered, the attempts visible.
    await configure(sim, {"error_rate": 0.05, "timeout_rate": 0.05, "timeout_hold_s": 0.5, "seed": 7})
    events = [make_event("order.confirmed", person(i), ORDER, source="it") for i in range(1, 201)]
    await stack.publish(events)
    await stack.wait_statuses(lambda ss: len(sent_ids(ss)) >= 201, timeout=120)
    retrying = [s for s in stack.statuses if s.status is Status.RETRYING]
    assert retrying, "with 10 % failures some attempts must have been retried"
    assert {s.attempt for s in retrying} <= {1, 2, 3, 4}
    # A retry after the provider was reached spends an attempt; one refused by an open circuit (under load the
    # timeouts can open it) spends none, so its message may still be sent at attempt 1.
    retried = {s.message_id for s in retrying if "circuit" not in (s.detail or "")}
    assert retried
    unspent = {m: [(s.status.value, s.attempt, s.detail) for s in stack.statuses if s.message_id == m]
               for m in retried
               if not any(s.message_id == m and s.status is Status.SENT and s.attempt > 1 for s in stack.statuses)}
    assert not unspent, unspent
    assert not any(s.status in (Status.FAILED, Status.DEAD_LETTERED) for s in stack.statuses)


async def test_faults__one_percent_poison_of_every_kind_is_dead_lettered_and_the_rest_delivered(stack: Stack) -> None:
    good = [make_event("order.confirmed", person(i), ORDER, source="it") for i in range(400)]
    schema_violation = make_event("order.confirmed", person(900), ORDER)
    schema_violation["data"]["to"] = "not an object"
    template_error = make_event("order.confirmed", person(901), {**ORDER, "total": "not-a-number"})
    stack.start_worker()
    await stack.publish(good[:200])
    await stack.publish_raw(b"\xff\xfe not json", key=b"p1")
    await stack.publish_raw(orjson.dumps(schema_violation), key=b"p2")
    await stack.publish([template_error])
    await stack.publish_raw(orjson.dumps({"message_id": 5}), key=b"msg-poison",
                            topic=stack.settings.topic("dispatch.email"))  # a dispatch that is not one
    await stack.publish(good[200:])
    await stack.wait_statuses(lambda ss: len(sent_ids(ss)) >= 400
                              and sum(s.status is Status.DEAD_LETTERED for s in ss) >= 4, timeout=90)
    letters = await stack.read("deadletter")
    reasons = sorted(dict(r.headers)["herald-error"].decode() for r in letters)
    assert reasons == ["invalid_dispatch", "invalid_json", "invalid_recipient", "template_value"]
    assert all(dict(r.headers)["herald-error-class"] for r in letters)
    assert len(sent_ids(stack.statuses)) == 400  # nothing stalled behind the poison
