"""Circuit breakers: the state machine on simulated time, and the sender that fails fast while open."""

from __future__ import annotations

import asyncio

import pytest

from channels.base import OutboundMessage, Sender, SendResult
from channels.errors import InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.rendering.render import Rendered
from channels.resilience.breaker import CLOSED, HALF_OPEN, OPEN, BreakerSender, CircuitBreaker
from tests.fakes import FakeClock, ScriptedSender

pytestmark = pytest.mark.unit


def message(n: int = 1) -> OutboundMessage:
    return OutboundMessage(message_id=f"msg-{n}", channel="sms", address="+34600111222", idempotency_key=f"k-{n}",
                           rendered=Rendered(template="otp.requested/sms", locale="en", parts={"text": "hi"}))


def down() -> ProviderUnavailable:
    return ProviderUnavailable("503", code="503")


# Steps: "f" retriable failure, "p" permanent error, "s" success, "a" allow() (a probe when half-open),
# "wN" N simulated seconds pass. Threshold 3, reset_after 30, one probe.
STATE_CASES = [
    ("two failures stay closed", "f f", CLOSED, True),
    ("threshold opens", "f f f", OPEN, False),
    ("a success resets the count", "f f s f f", CLOSED, True),
    ("permanent errors never open", "p p p p p p", CLOSED, True),
    ("a permanent error proves the provider answers", "f f p f f", CLOSED, True),
    ("rate limits are retriable failures", "r r r", OPEN, False),
    ("still open before reset_after", "f f f w29", OPEN, False),
    ("half-open after reset_after", "f f f w30", HALF_OPEN, True),
    ("one probe at a time", "f f f w30 a", HALF_OPEN, False),
    ("probe success closes", "f f f w30 a s", CLOSED, True),
    ("probe permanent error closes", "f f f w30 a p", CLOSED, True),
    ("probe failure re-opens", "f f f w30 a f", OPEN, False),
    ("re-open restarts the timer", "f f f w30 a f w29", OPEN, False),
    ("probes again after another reset_after", "f f f w30 a f w30", HALF_OPEN, True),
    ("closed after a probe counts from zero", "f f f w30 a s f f", CLOSED, True),
    ("late outcomes while open change nothing", "f f f s f w10", OPEN, False),
]


def run(breaker: CircuitBreaker, clock: FakeClock[float], steps: str) -> None:
    for step in steps.split():
        if step == "f":
            breaker.record(down())
        elif step == "r":
            breaker.record(RateLimited("429"))
        elif step == "p":
            breaker.record(InvalidRecipient("no such number"))
        elif step == "s":
            breaker.record(None)
        elif step == "a":
            assert breaker.allow()
        else:
            clock.now += float(step[1:])


@pytest.mark.parametrize("steps, state, allowed", [c[1:] for c in STATE_CASES], ids=[c[0] for c in STATE_CASES])
def test_breaker__state_machine(steps: str, state: str, allowed: bool) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("twilio", failure_threshold=3, reset_after=30, clock=clock)
    run(breaker, clock, steps)
    assert breaker.state == state
    assert breaker.allow() is allowed


def test_breaker__transitions_are_announced_once_each() -> None:
    clock = FakeClock()
    seen: list[tuple[str, str]] = []
    breaker = CircuitBreaker("twilio", failure_threshold=2, reset_after=10, clock=clock)
    breaker.subscribe(lambda name, state: seen.append((name, state)))
    run(breaker, clock, "f f f w10 a f w10 a s s")
    assert seen == [("twilio", OPEN), ("twilio", HALF_OPEN), ("twilio", OPEN), ("twilio", HALF_OPEN),
                    ("twilio", CLOSED)]


def test_breaker__retry_in_counts_down_to_the_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("twilio", failure_threshold=1, reset_after=30, clock=clock)
    assert breaker.retry_in() == 0
    run(breaker, clock, "f w12")
    assert breaker.retry_in() == pytest.approx(18)
    clock.now += 18
    assert breaker.retry_in() == 0 and breaker.state == HALF_OPEN


def test_breaker__half_open_max_lets_that_many_probes_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("twilio", failure_threshold=1, reset_after=5, half_open_max=3, clock=clock)
    run(breaker, clock, "f w5")
    assert [breaker.allow() for _ in range(4)] == [True, True, True, False]


def test_breaker__stale_outcome_from_before_it_opened_is_ignored() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("twilio", failure_threshold=2, reset_after=30, clock=clock)
    assert breaker.allow()
    slow_call = breaker.epoch  # a call that started while closed
    run(breaker, clock, "f f w30")
    assert breaker.allow()  # the probe is out
    breaker.record(down(), epoch=slow_call)  # the slow call fails late
    assert breaker.state == HALF_OPEN
    breaker.record(None, epoch=breaker.epoch)  # the probe answers
    assert breaker.state == CLOSED


def test_breaker__a_bug_gives_the_probe_slot_back() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("twilio", failure_threshold=1, reset_after=5, clock=clock)
    run(breaker, clock, "f w5 a")
    breaker.record(KeyError("bug"))
    assert breaker.state == HALF_OPEN
    assert breaker.allow()


def test_breaker__a_broken_listener_does_not_break_the_breaker() -> None:
    breaker = CircuitBreaker("twilio", failure_threshold=1, clock=FakeClock())

    def broken(name: str, state: str) -> None:
        raise RuntimeError("metric registry gone")

    breaker.subscribe(broken)
    breaker.record(down())
    assert breaker.state == OPEN


@pytest.mark.parametrize("kwargs", [{"failure_threshold": 0}, {"half_open_max": 0}, {"reset_after": 0}],
                         ids=["threshold", "half-open-max", "reset-after"])
def test_breaker__refuses_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", **kwargs)  # type: ignore[arg-type]


# --- BreakerSender -------------------------------------------------------------------------------------------------

async def test_breaker_sender__open_circuit_fails_fast_without_calling_the_provider() -> None:
    clock = FakeClock()
    inner = ScriptedSender(name="twilio", channel="sms", script=[down(), down()])
    states: list[tuple[str, str]] = []
    sender = BreakerSender(inner, CircuitBreaker("sms.twilio", failure_threshold=2, reset_after=30, clock=clock),
                           on_state_change=lambda provider, state: states.append((provider, state)))
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            await sender.send(message())
    assert states == [("twilio", OPEN)]
    clock.now += 10
    with pytest.raises(ProviderUnavailable) as caught:
        await sender.send(message())
    error = caught.value
    assert (error.code, error.provider, error.retriable) == ("circuit_open", "twilio", True)
    assert error.retry_after == pytest.approx(20)  # type: ignore[attr-defined]
    assert inner.sent == [] and inner.script == []  # two calls, then none

    clock.now += 20
    result = await sender.send(message())  # the probe
    assert result.provider == "twilio"
    assert states == [("twilio", OPEN), ("twilio", HALF_OPEN), ("twilio", CLOSED)]


async def test_breaker_sender__permanent_errors_pass_through_and_keep_it_closed() -> None:
    inner = ScriptedSender(name="twilio", channel="sms",
                           script=[InvalidRecipient("no", code="21211"), Rejected("spam", code="30007")] * 5)
    sender = BreakerSender(inner, CircuitBreaker("sms.twilio", failure_threshold=2, clock=FakeClock()))
    for _ in range(10):
        with pytest.raises((InvalidRecipient, Rejected)):
            await sender.send(message())
    assert sender.breaker.state == CLOSED
    assert (await sender.send(message())).provider == "twilio"


async def test_breaker_sender__cancelled_probe_gives_the_slot_back() -> None:
    clock = FakeClock()
    gate = asyncio.Event()

    class Hanging(ScriptedSender):
        async def send(self, message: OutboundMessage) -> SendResult:
            await gate.wait()
            return await super().send(message)

    breaker = CircuitBreaker("sms.twilio", failure_threshold=1, reset_after=5, clock=clock)
    sender = BreakerSender(Hanging(name="twilio", channel="sms"), breaker)
    breaker.record(down())
    clock.now += 5
    probe = asyncio.create_task(sender.send(message()))
    await asyncio.sleep(0)
    assert not breaker.allow()  # the probe is out
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.allow()


def test_breaker_sender__is_a_sender_with_the_provider_name() -> None:
    inner = ScriptedSender(name="vonage", channel="sms")
    sender = BreakerSender(inner, CircuitBreaker("sms.vonage"))
    assert isinstance(sender, Sender)
    assert (sender.name, sender.channel, sender.unwrapped) == ("vonage", "sms", inner)
    assert sender.script is inner.script  # delegated
