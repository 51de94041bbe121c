"""Failover chains, and the issue's acceptance on simulated time: a provider down for 15 minutes loses nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from channels.base import OutboundMessage, SendResult
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.providers.sms import TwilioSmsProvider, VonageSmsProvider
from channels.rendering.render import Rendered
from channels.resilience.breaker import CLOSED, HALF_OPEN, OPEN, BreakerSender, CircuitBreaker
from channels.resilience.chain import ProviderChain, unwrap
from channels.resilience.ratelimit import RateLimitedSender, TokenBucket
from consumers.senders import webhook_receivers
from schemas.settings import Settings
from tests.fakes import FakeClock, ScriptedSender

pytestmark = pytest.mark.unit


def message(n: int = 1) -> OutboundMessage:
    return OutboundMessage(message_id=f"msg-{n}", channel="sms", address="+34600111222", idempotency_key=f"k-{n}",
                           rendered=Rendered(template="otp.requested/sms", locale="en", parts={"text": "hi"}))


# --- the chain -----------------------------------------------------------------------------------------------------

def unavailable() -> DeliveryError:
    return ProviderUnavailable("503", code="503")


# (first provider's script, second provider's script, provider that accepts or error raised, calls to the second)
CHAIN_CASES = [
    ("first accepts", [], [], "one", 0),
    ("retriable fails over", [unavailable()], [], "two", 1),
    ("rate limited fails over", [RateLimited("429", retry_after=3)], [], "two", 1),
    ("invalid recipient stops", [InvalidRecipient("no", code="21211")], [], InvalidRecipient, 0),
    ("rejected stops", [Rejected("spam", code="30007")], [], Rejected, 0),
    ("both down raises the last", [unavailable()], [RateLimited("429")], RateLimited, 1),
    ("second's permanent error stands", [unavailable()], [Rejected("bad from")], Rejected, 1),
]


@pytest.mark.parametrize("first, second, outcome, second_calls", [c[1:] for c in CHAIN_CASES],
                         ids=[c[0] for c in CHAIN_CASES])
async def test_chain__failover_table(first: list[DeliveryError], second: list[DeliveryError],
                                     outcome: str | type[DeliveryError], second_calls: int) -> None:
    one = ScriptedSender(name="one", channel="sms", script=list(first))
    two = ScriptedSender(name="two", channel="sms", script=list(second))
    chain = ProviderChain("sms", [one, two])
    if isinstance(outcome, str):
        assert (await chain.send(message())).provider == outcome
    else:
        with pytest.raises(outcome) as caught:
            await chain.send(message())
        assert caught.value.provider == ("one" if second_calls == 0 else "two")
    assert len(second) - len(two.script) + len(two.sent) == second_calls


async def test_chain__open_circuit_fails_over_at_once_without_calling_the_provider() -> None:
    clock = FakeClock()
    one = ScriptedSender(name="one", channel="sms")
    two = ScriptedSender(name="two", channel="sms")
    breaker = CircuitBreaker("sms.one", failure_threshold=1, reset_after=30, clock=clock)
    breaker.record(unavailable())
    chain = ProviderChain("sms", [BreakerSender(one, breaker), two])
    result = await chain.send(message())
    assert result.provider == "two"
    assert one.sent == [] and len(two.sent) == 1
    assert clock() == 0  # no waiting on the way


async def test_chain__every_circuit_open_raises_retriable_circuit_open() -> None:
    clock = FakeClock()
    senders = []
    for name in ("one", "two"):
        breaker = CircuitBreaker(f"sms.{name}", failure_threshold=1, clock=clock)
        breaker.record(unavailable())
        senders.append(BreakerSender(ScriptedSender(name=name, channel="sms"), breaker))
    with pytest.raises(ProviderUnavailable) as caught:
        await ProviderChain("sms", senders).send(message())
    assert (caught.value.code, caught.value.provider, caught.value.retriable) == ("circuit_open", "two", True)


async def test_chain__wrapped_providers_still_receive_webhooks() -> None:
    settings = Settings(secret="s" * 16)
    twilio, vonage = TwilioSmsProvider.from_settings(settings), VonageSmsProvider.from_settings(settings)
    try:
        wrapped = [BreakerSender(RateLimitedSender(p, TokenBucket(1)), CircuitBreaker(f"sms.{p.name}"))
                   for p in (twilio, vonage)]
        chain = ProviderChain("sms", wrapped)
        assert chain.providers == wrapped
        assert chain.name == "twilio+vonage"
        assert [unwrap(p) for p in chain.providers] == [twilio, vonage]
        receivers = webhook_receivers({"sms": chain})
        assert set(receivers) == {("sms", "twilio"), ("sms", "vonage")}
        assert receivers[("sms", "twilio")].parse_webhook == twilio.parse_webhook
        assert receivers[("sms", "vonage")].STATUS_MAP is VonageSmsProvider.STATUS_MAP
    finally:
        await twilio.close()
        await vonage.close()


# --- acceptance: provider down for 15 minutes of simulated time, then back -----------------------------------------

STEP = 10.0  # one message every 10 simulated seconds
DURATION = 30 * 60.0
OUTAGE = (5 * 60.0, 20 * 60.0)  # 15 minutes
THRESHOLD = 5
RESET_AFTER = 30.0
RETRY_EVERY = 60.0  # the caller's scheduler, when no provider is left


@dataclass
class OutageProvider:
    """Answers 503 while the simulated time is inside the outage; notes every call."""

    clock: FakeClock[float]
    name: str = "primary"
    channel: str = "sms"
    calls: list[float] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def send(self, message: OutboundMessage) -> SendResult:
        now = self.clock()
        self.calls.append(now)
        if OUTAGE[0] <= now < OUTAGE[1]:
            raise ProviderUnavailable("service unavailable", code="503")
        self.sent.append(message.message_id)
        return SendResult(provider=self.name, provider_message_id=f"{self.name}-{len(self.sent)}")

    async def close(self) -> None:
        return None


@dataclass
class Guarded:
    clock: FakeClock[float]
    primary: OutageProvider
    breaker: CircuitBreaker
    sender: BreakerSender
    transitions: list[tuple[float, str]]


def guarded_primary() -> Guarded:
    """The primary as `build_senders` should wrap it: breaker outside, rate limit inside."""
    clock = FakeClock()
    primary = OutageProvider(clock)
    breaker = CircuitBreaker("sms.primary", failure_threshold=THRESHOLD, reset_after=RESET_AFTER, clock=clock)
    transitions: list[tuple[float, str]] = []
    sender = BreakerSender(RateLimitedSender(primary, TokenBucket(1, clock=clock, sleep=clock.sleep)), breaker,
                           on_state_change=lambda provider, state: transitions.append((clock(), state)))
    return Guarded(clock, primary, breaker, sender, transitions)


def ticks() -> list[float]:
    return [i * STEP for i in range(int(DURATION / STEP))]


def assert_probes_every_reset_after(g: Guarded) -> list[float]:
    """The primary saw the first THRESHOLD failures, then one half-open probe about every `reset_after`."""
    in_outage = [t for t in g.primary.calls if OUTAGE[0] <= t < OUTAGE[1]]
    first = [OUTAGE[0] + i * STEP for i in range(THRESHOLD)]
    assert in_outage[:THRESHOLD] == first
    opened_at = first[-1]
    probes = in_outage[THRESHOLD:]
    gaps = [b - a for a, b in zip([opened_at, *probes], probes, strict=False)]
    assert gaps and all(RESET_AFTER <= gap <= RESET_AFTER + STEP for gap in gaps)
    assert len(probes) == pytest.approx((OUTAGE[1] - opened_at) / RESET_AFTER, abs=1)
    # The breaker opened once, re-opened on every failed probe, and closed on the first probe after the outage.
    states = [s for _, s in g.transitions]
    assert states[0] == OPEN and states[-1] == CLOSED and states.count(CLOSED) == 1
    assert states == [OPEN] + [HALF_OPEN, OPEN] * len(probes) + [HALF_OPEN, CLOSED]
    assert [t for t, s in g.transitions if s == OPEN] == [opened_at, *probes]
    closed_at = g.transitions[-1][0]
    assert OUTAGE[1] <= closed_at < OUTAGE[1] + RESET_AFTER + STEP
    assert g.breaker.state == CLOSED
    return probes


async def test_acceptance__outage_with_a_second_provider__nothing_lost_breaker_fails_over_and_closes() -> None:
    g = guarded_primary()
    secondary = ScriptedSender(name="secondary", channel="sms")
    chain = ProviderChain("sms", [g.sender, secondary])
    results: dict[float, SendResult] = {}
    for n, t in enumerate(ticks()):
        g.clock.now = t
        results[t] = await chain.send(message(n))  # raises if anything is lost

    # 0 lost, none twice.
    delivered = g.primary.sent + [m.message_id for m in secondary.sent]
    assert sorted(delivered) == sorted(f"msg-{n}" for n in range(len(ticks())))
    assert all(isinstance(r, SendResult) for r in results.values())

    probes = assert_probes_every_reset_after(g)
    closed_at = g.transitions[-1][0]
    by = {t: r.provider for t, r in results.items()}
    assert {p for t, p in by.items() if t < OUTAGE[0]} == {"primary"}
    assert {p for t, p in by.items() if OUTAGE[0] <= t < closed_at} == {"secondary"}  # the outage went over
    assert {p for t, p in by.items() if t >= closed_at} == {"primary"}  # and came back once closed
    # The primary was only bothered by the threshold failures and the probes while it was down.
    assert len([t for t in g.primary.calls if OUTAGE[0] <= t < OUTAGE[1]]) == THRESHOLD + len(probes)


async def test_acceptance__outage_without_a_second_provider__retries_until_back_and_nothing_lost() -> None:
    g = guarded_primary()
    pending: list[tuple[float, int]] = []  # (due, message number): the caller's scheduler
    delivered: dict[int, float] = {}
    errors: list[tuple[float, DeliveryError]] = []
    attempts = 0
    t = 0.0
    while t < DURATION or pending:
        assert t < DURATION + 10 * RETRY_EVERY, "messages still pending long after the provider came back"
        g.clock.now = t
        if t < DURATION:
            pending.append((t, int(t // STEP)))
        due = [p for p in pending if p[0] <= t]
        pending = [p for p in pending if p[0] > t]
        for _, n in due:
            attempts += 1
            try:
                await g.sender.send(message(n))
            except DeliveryError as exc:
                assert exc.retriable and isinstance(exc, ProviderUnavailable)
                errors.append((t, exc))
                pending.append((t + RETRY_EVERY, n))
            else:
                assert n not in delivered
                delivered[n] = t
        t += STEP

    assert sorted(delivered) == list(range(len(ticks())))  # 0 lost
    assert errors and all(OUTAGE[0] <= at < OUTAGE[1] + RESET_AFTER + STEP for at, _ in errors)
    codes = {exc.code for _, exc in errors}
    assert codes == {"503", "circuit_open"}
    probes = assert_probes_every_reset_after(g)
    # Many retries, few calls: the open circuit answered the rest without touching the provider.
    outage_calls = len([c for c in g.primary.calls if OUTAGE[0] <= c < OUTAGE[1]])
    assert outage_calls == THRESHOLD + len(probes)
    assert len(errors) > 3 * outage_calls
    assert attempts == len(delivered) + len(errors)
