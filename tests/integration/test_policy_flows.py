"""Issue 5 on the real pipeline: fallback by outcome through the simulator, and schedules across a restart."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest

from channels.simulator.app import SimServer
from consumers.publish import make_event
from schemas.status import Status
from tests.integration.harness import Stack
from tests.integration.test_channels import CATALOG, SIM_ENV, configure

pytestmark = pytest.mark.integration

PERSON = {"id": "user-fb", "email": "fb@example.org", "phone": "+34600222333", "locale": "es-ES",
          "timezone": "Europe/Madrid", "name": "Fe"}


@pytest.mark.parametrize("sim_stack", ["email=smtp;sms=twilio;voice=twilio"], indirect=True)
async def test_fallback__sms_undelivered_then_voice_unanswered_then_email(sim_stack: tuple[Stack, SimServer]) -> None:
    stack, sim = sim_stack
    await configure(sim, {"recipients": {PERSON["phone"]: {"fail": "undelivered", "voice": "no-answer"}}})
    otp = make_event("otp.requested", PERSON, CATALOG.types["otp.requested"].sample, source="it")
    stack.start_worker(**SIM_ENV)
    await stack.publish([otp])

    def chain(statuses: list) -> dict[tuple[str | None, Status], datetime]:
        mine = {s.message_id for s in statuses if s.event_id == otp["id"]}
        return {(s.channel, s.status): s.at for s in statuses if s.message_id in mine}

    await stack.wait_statuses(lambda ss: (("email", Status.SENT) in chain(ss)), timeout=60)
    at = chain(stack.statuses)  # records of different messages sit on different partitions: order by time
    assert at[("sms", Status.FAILED)] <= at[("voice", Status.ACCEPTED)] <= at[("voice", Status.FAILED)]
    assert at[("voice", Status.FAILED)] <= at[("email", Status.ACCEPTED)] <= at[("email", Status.SENT)]
    [mail] = stack.sink.snapshot()
    assert mail["To"].addresses[0].addr_spec == PERSON["email"]


async def test_scheduler__a_scheduled_message_survives_a_killed_worker(stack: Stack) -> None:
    due = datetime.now(UTC) + timedelta(seconds=12)
    event = make_event("order.confirmed", PERSON, CATALOG.types["order.confirmed"].sample, source="it",
                       sendat=due.isoformat())
    worker = stack.start_worker()
    await stack.publish([event])
    await stack.wait_statuses(lambda ss: any(s.status is Status.SCHEDULED for s in ss), timeout=30)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    stack.workers.remove(worker)
    stack.start_worker()
    await stack.wait_statuses(lambda ss: any(s.status is Status.SENT for s in ss), timeout=60)
    sent = next(s for s in stack.statuses if s.status is Status.SENT)
    assert sent.at >= due
    assert len(stack.sink.snapshot()) == 1
