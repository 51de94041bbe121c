"""Rate limits: the token bucket on simulated time, rates and overrides as text, and the limited sender."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from channels.base import OutboundMessage, Sender, SendResult, WebhookReceiver
from channels.errors import InvalidRecipient, RateLimited
from channels.providers.sms import TwilioSmsProvider
from channels.registry import PROVIDERS
from channels.rendering.render import Rendered
from channels.resilience.breaker import BreakerSender
from channels.resilience.chain import ProviderChain
from channels.resilience.priority import PriorityGate
from channels.resilience.ratelimit import (
    PUBLISHED_LIMITS,
    ZERO_SHARE_POLL,
    Metering,
    RateLimitedSender,
    TokenBucket,
    declared_metering,
    effective_limits,
    parse_limits,
    parse_rate,
    rate_limited,
    sender_number_key,
    sms_segment_cost,
)
from consumers.observe.metrics import Metrics
from consumers.senders import build_senders
from schemas.settings import Settings
from tests.fakes import FakeClock, ScriptedSender

pytestmark = pytest.mark.unit


def lingering_clock() -> FakeClock[float]:
    """A `FakeClock` whose sleeps let the other tasks run a few rounds: what arrives "during" a sleep does."""
    return FakeClock(yields=10)


class TimedSender(ScriptedSender):
    """A `ScriptedSender` that notes the simulated time of each accepted send."""

    def __init__(self, clock: FakeClock[float], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.clock = clock
        self.times: list[float] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        result = await super().send(message)
        self.times.append(self.clock())
        return result


def message(address: str = "+34600111222", text: str = "Your code is 482913", n: int = 1) -> OutboundMessage:
    return OutboundMessage(message_id=f"msg-{n}", channel="sms", address=address, idempotency_key=f"k-{n}",
                           rendered=Rendered(template="otp.requested/sms", locale="en", parts={"text": text}))


def bucket(clock: FakeClock[float], rate: float, burst: float | None = None,
           share: Callable[[], float] | None = None) -> TokenBucket:
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep, share=share)


class Share:
    """A worker's share of the group's limits, as a test sets it (the app reads `Ownership.share`)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


# --- TokenBucket ---------------------------------------------------------------------------------------------------

async def test_token_bucket__third_acquire_at_two_per_second_waits_one_second() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=2, burst=1)
    done = []
    for _ in range(3):
        await b.acquire()
        done.append(clock())
    assert done == pytest.approx([0.0, 0.5, 1.0])


async def test_token_bucket__burst_is_spent_at_once_then_the_rate_applies() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=1, burst=3)
    waits = [await b.acquire() for _ in range(4)]
    assert waits == pytest.approx([0, 0, 0, 1.0])


async def test_token_bucket__idle_time_saves_at_most_burst() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=1, burst=2)
    await b.acquire(2)
    clock.now += 100
    assert b.tokens == pytest.approx(2)
    assert [b.try_acquire(), b.try_acquire(), b.try_acquire()] == [True, True, False]


async def test_token_bucket__default_burst_is_one_second_of_rate_and_at_least_one() -> None:
    assert TokenBucket(80).burst == 80
    assert TokenBucket(0.5).burst == 1


async def test_token_bucket__concurrent_acquirers_are_served_in_order_one_sleep_each() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=1, burst=1)
    await b.acquire()  # empty
    served: list[tuple[str, float]] = []

    async def take(name: str) -> None:
        await b.acquire()
        served.append((name, clock()))

    names = ["a", "b", "c", "d", "e"]
    await asyncio.gather(*(take(n) for n in names))
    assert [n for n, _ in served] == names
    assert [t for _, t in served] == pytest.approx([1, 2, 3, 4, 5])
    # Only the head of the queue sleeps: no herd of waiters waking up for every token.
    assert clock.sleeps == pytest.approx([1, 1, 1, 1, 1])


async def test_token_bucket__an_urgent_acquire_goes_before_every_queued_ordinary_one() -> None:
    clock = lingering_clock()
    b = bucket(clock, rate=1, burst=1)
    await b.acquire()  # empty
    served: list[tuple[str, float]] = []

    async def take(name: str, urgent: bool = False) -> None:
        await b.acquire(urgent=urgent)
        served.append((name, clock()))

    ordinary = [asyncio.create_task(take(n)) for n in "abcde"]
    await asyncio.sleep(0)  # "a" sleeps at the head, the others queue behind it
    await asyncio.gather(take("code", urgent=True), *ordinary)
    assert served == [("code", 1), ("a", 2), ("b", 3), ("c", 4), ("d", 5), ("e", 6)]
    assert b.try_acquire() is False and b._no_urgent.is_set()


async def test_token_bucket__a_cancelled_urgent_acquire_releases_the_ordinary_ones() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=1, burst=1)
    await b.acquire()
    holder = asyncio.create_task(b.acquire())  # sleeps at the head, holding the lock
    await asyncio.sleep(0)
    urgent = asyncio.create_task(b.acquire(urgent=True))
    await asyncio.sleep(0)
    urgent.cancel()
    await asyncio.gather(urgent, return_exceptions=True)
    assert await asyncio.wait_for(holder, 1) == pytest.approx(1)  # steps back once, then gets the next token


async def test_token_bucket__try_acquire_does_not_jump_the_queue() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=1, burst=1)
    await b.acquire()
    waiter = asyncio.create_task(b.acquire())
    await asyncio.sleep(0)  # the waiter holds the queue and sleeps
    clock.now += 5  # tokens are there, but they are the waiter's turn
    assert b.try_acquire() is False
    await waiter
    assert b.try_acquire() is False  # the waiter took the only token (burst 1)
    clock.now += 1
    assert b.try_acquire() is True


async def test_token_bucket__more_than_burst_waits_for_a_full_bucket_and_leaves_debt() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=1, burst=1)
    assert await b.acquire(3) == 0  # a 3-segment SMS goes at once
    assert await b.acquire(1) == pytest.approx(3)  # …and the next one pays for it


async def test_token_bucket__hold_blocks_for_retry_after_but_never_shortens_a_wait() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=10, burst=10)
    b.hold(5)
    assert await b.acquire() == pytest.approx(5)
    b.hold(30)
    b.hold(1)
    assert await b.acquire() == pytest.approx(30)


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (1, 0)], ids=["zero-rate", "negative-rate", "zero-burst"])
def test_token_bucket__refuses_nonpositive_values(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


# --- a worker's share of the group's limit --------------------------------------------------------------------------

SHARES = [
    # (rate, burst, share, when the first five acquires go)
    (2, 1, 1.0, [0, 0.5, 1.0, 1.5, 2.0]),
    (2, 1, 0.5, [0, 1, 2, 3, 4]),  # capacity 0.5: one message still goes, and its debt is paid at 1/s
    (4, 4, 0.5, [0, 0, 0.5, 1.0, 1.5]),  # 2/s, two saved up
    (4, 4, 0.25, [0, 1, 2, 3, 4]),
    (2, 1, 3.0, [0, 0.5, 1.0, 1.5, 2.0]),  # a share is at most the whole limit
]


@pytest.mark.parametrize("rate, burst, share, expected", SHARES,
                         ids=["whole", "half-of-one-per-half-second", "half-burst-and-rate", "quarter", "capped"])
async def test_token_bucket__paces_at_rate_times_share(rate: float, burst: float, share: float,
                                                       expected: list[float]) -> None:
    clock = FakeClock()
    b = bucket(clock, rate, burst, share=Share(share))
    done = []
    for _ in range(5):
        await b.acquire()
        done.append(clock())
    assert done == pytest.approx(expected)


async def test_token_bucket__a_new_share_applies_to_the_next_token() -> None:
    clock = FakeClock()
    share = Share(1.0)
    b = bucket(clock, rate=2, burst=1, share=share)
    done = []
    for now in (1.0, 0.5, 0.5, 1.0, 1.0):
        share.value = now  # a rebalance between two sends
        await b.acquire()
        done.append(clock())
    # 2/s; then 1/s with capacity 0.5 (half a token opens the bucket, the other half is a debt paid at 1/s);
    # then 2/s again, the last debt paid at the new rate.
    assert done == pytest.approx([0, 0.5, 1.5, 2.25, 2.75])


async def test_token_bucket__a_smaller_share_drops_the_tokens_above_its_capacity() -> None:
    clock = FakeClock()
    share = Share(1.0)
    b = bucket(clock, rate=10, burst=10, share=share)
    assert b.tokens == 10
    share.value = 0.2
    assert b.effective == pytest.approx((2, 2))
    assert b.tokens == pytest.approx(2)
    assert [b.try_acquire(), b.try_acquire(), b.try_acquire()] == [True, True, False]
    share.value = 1.0  # a larger capacity gives no tokens at once: they refill at the new rate
    assert b.tokens == pytest.approx(0)
    clock.advance(0.5)
    assert b.tokens == pytest.approx(5)


async def test_token_bucket__share_zero_never_divides_by_zero_and_refuses_try_acquire() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=5, share=Share(0.0))
    assert b.effective == (0, 0)
    assert b.tokens == 0
    assert b.try_acquire() is False
    b.hold(30)  # a 429 at a worker that owns nothing
    assert b.tokens == 0


async def test_token_bucket__share_zero_lets_a_stray_send_go_one_refill_time_apart() -> None:
    # A worker that owns nothing, handed sends during a rebalance: late, one per refill time (5 tokens / 5/s).
    clock = FakeClock()
    b = bucket(clock, rate=5, share=Share(0.0))
    done: list[float] = []

    async def take() -> None:
        await b.acquire()
        done.append(clock())

    await asyncio.gather(take(), take(), take())
    assert done == pytest.approx([1.0, 2.0, 3.0])
    assert max(clock.sleeps) == pytest.approx(ZERO_SHARE_POLL)  # it looked at the share again all along


async def test_token_bucket__share_zero_then_partitions_assigned_sends_at_the_new_share() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=10, burst=10, share=lambda: 0.0 if clock() < 0.3 - 1e-6 else 0.5)
    waited = await b.acquire()
    assert 0.3 <= waited < 0.5  # not the second a stray waits: the first token at 5/s after the assignment
    assert b.effective == (5, 5)


async def test_token_bucket__an_urgent_acquire_still_goes_first_at_a_share() -> None:
    clock = lingering_clock()
    b = bucket(clock, rate=2, burst=2, share=Share(0.5))  # 1/s, one saved up
    await b.acquire()
    served: list[tuple[str, float]] = []

    async def take(name: str, urgent: bool = False) -> None:
        await b.acquire(urgent=urgent)
        served.append((name, clock()))

    ordinary = [asyncio.create_task(take(n)) for n in "abc"]
    await asyncio.sleep(0)
    await asyncio.gather(take("code", urgent=True), *ordinary)
    assert served == [("code", 1), ("a", 2), ("b", 3), ("c", 4)]


# --- rates as text -------------------------------------------------------------------------------------------------

RATES = [
    ("1/s", 1.0), ("30/s", 30.0), ("600/min", 10.0), ("80/s", 80.0), ("600000/min", 10_000.0),
    ("3600/h", 1.0), ("10/5s", 2.0), ("0.5/s", 0.5), (" 2 / sec ", 2.0), ("1/MIN", 1 / 60), ("86400/day", 1.0),
]


@pytest.mark.parametrize("text, expected", RATES, ids=[r for r, _ in RATES])
def test_parse_rate__table(text: str, expected: float) -> None:
    assert parse_rate(text) == pytest.approx(expected)


BAD_RATES = ["", "fast", "30", "0/s", "1/0s", "-1/s", "1/fortnight", "1/s/s", "s/1"]


@pytest.mark.parametrize("text", BAD_RATES, ids=[repr(r) for r in BAD_RATES])
def test_parse_rate__refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


LIMITS = [
    ("sms.twilio=1/s;voice.twilio=1/s", {"sms.twilio": 1.0, "voice.twilio": 1.0}),
    ("push.fcm = 1000/min\nemail.sendgrid=none", {"push.fcm": 1000 / 60, "email.sendgrid": None}),
    ("whatsapp.meta=OFF;", {"whatsapp.meta": None}),
    ("", {}),
]


@pytest.mark.parametrize("spec, expected", LIMITS, ids=["two", "newline-and-none", "off", "empty"])
def test_parse_limits__table(spec: str, expected: dict[str, float | None]) -> None:
    assert parse_limits(spec) == pytest.approx(expected)


@pytest.mark.parametrize("spec", ["sms=1/s", "sms.twilio", "sms.twilio=", "=1/s", "sms.twilio=fast"],
                         ids=["no-vendor", "no-rate", "empty-rate", "no-key", "bad-rate"])
def test_parse_limits__refuses(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_limits(spec)


def test_published_limits__parse_and_name_registered_providers() -> None:
    for key, rate in PUBLISHED_LIMITS.items():
        assert key in PROVIDERS
        assert parse_rate(rate) > 0
    assert "email.smtp" not in PUBLISHED_LIMITS and "webhook.standard" not in PUBLISHED_LIMITS


def test_effective_limits__overrides_win_and_can_lift_a_limit() -> None:
    limits = effective_limits("sms.vonage=10/s;push.fcm=none")
    assert limits["sms.vonage"] == 10
    assert limits["push.fcm"] is None
    assert limits["whatsapp.meta"] == 80
    assert effective_limits()["push.fcm"] == pytest.approx(10_000)


# --- RateLimitedSender ---------------------------------------------------------------------------------------------

def by_address_prefix(m: OutboundMessage) -> str:
    return m.address[:3]


async def test_rate_limited__per_sender_buckets_are_independent() -> None:
    clock = FakeClock()
    inner = TimedSender(clock, channel="sms")
    sender = RateLimitedSender(inner, None, per_sender=by_address_prefix, per_sender_rate=1, clock=clock,
                               sleep=clock.sleep)
    for address in ("+34600111222", "+44700111222", "+34600111333", "+44700111333", "+34600111444"):
        await sender.send(message(address))
    assert inner.times == pytest.approx([0, 0, 1, 1, 2])
    assert set(sender.sender_buckets) == {"+34", "+44"}


async def test_rate_limited__provider_bucket_applies_across_senders() -> None:
    clock = FakeClock()
    inner = TimedSender(clock, channel="sms")
    sender = RateLimitedSender(inner, bucket(clock, rate=2, burst=1), per_sender=by_address_prefix,
                               per_sender_rate=1, clock=clock, sleep=clock.sleep)
    for address in ("+34600111222", "+44700111222", "+33600111222"):
        await sender.send(message(address))
    assert inner.times == pytest.approx([0, 0.5, 1.0])


async def test_rate_limited__a_critical_message_overtakes_queued_ones_on_the_same_number() -> None:
    clock = lingering_clock()
    inner = TimedSender(clock, name="twilio", channel="sms")
    limited = RateLimitedSender(inner, bucket(clock, rate=1, burst=1))
    await limited.send(message(n=0))
    queued = [asyncio.create_task(limited.send(message(n=i))) for i in range(1, 6)]
    await asyncio.sleep(0)
    otp = message(n=99)
    otp = dataclasses.replace(otp, options={"priority": "critical"})
    await asyncio.gather(limited.send(otp), *queued)
    assert [m.message_id for m in inner.sent][:2] == ["msg-0", "msg-99"]
    assert inner.times == pytest.approx([0, 1, 2, 3, 4, 5, 6])


async def test_rate_limited__cost_takes_segments() -> None:
    clock = FakeClock()
    inner = TimedSender(clock, channel="sms")
    sender = RateLimitedSender(inner, bucket(clock, rate=1, burst=1), cost=sms_segment_cost)
    await sender.send(message(text="x" * 400))  # GSM-7, 3 segments
    await sender.send(message())
    assert inner.times == pytest.approx([0, 3])


async def test_rate_limited__retry_after_holds_the_buckets() -> None:
    clock = FakeClock()
    inner = TimedSender(clock, channel="sms", script=[RateLimited("429", retry_after=5)])
    sender = RateLimitedSender(inner, bucket(clock, rate=10), per_sender=by_address_prefix, per_sender_rate=10,
                               clock=clock, sleep=clock.sleep)
    with pytest.raises(RateLimited):
        await sender.send(message())
    await sender.send(message())
    assert inner.times == pytest.approx([5])


async def test_rate_limited__bad_address_is_left_to_the_provider() -> None:
    clock = FakeClock()
    inner = TimedSender(clock, channel="sms", script=[InvalidRecipient("bad", code="invalid_number")])
    sender = RateLimitedSender(inner, None, per_sender=sender_number_key({"default": "+15005550006"}),
                               per_sender_rate=1, clock=clock, sleep=clock.sleep)
    with pytest.raises(InvalidRecipient):
        await sender.send(message("not a number"))
    assert sender.sender_buckets == {}


async def test_rate_limited__each_number_bucket_takes_the_share() -> None:
    clock = FakeClock()
    inner = TimedSender(clock, channel="sms")
    sender = RateLimitedSender(inner, None, per_sender=by_address_prefix, per_sender_rate=2, clock=clock,
                               sleep=clock.sleep, share=Share(0.5))
    for address in ("+34600111222", "+44700111222") * 3:
        await sender.send(message(address))
    assert inner.times == pytest.approx([0, 0, 1, 1, 2, 2])  # 2/s per number, halved: 1/s per number
    assert {key: b.effective for key, b in sender.sender_buckets.items()} == {"+34": (1, 1), "+44": (1, 1)}


async def test_rate_limited__on_wait_hears_the_seconds_each_send_waited() -> None:
    clock = FakeClock()
    waits: list[float] = []
    sender = RateLimitedSender(TimedSender(clock, channel="sms"), bucket(clock, rate=2, burst=1),
                               per_sender=by_address_prefix, per_sender_rate=1, clock=clock, sleep=clock.sleep,
                               on_wait=waits.append)
    for address in ("+34600111222", "+44700111222", "+34600111333"):
        await sender.send(message(address))
    assert waits == pytest.approx([0.5, 0.5])  # the account's half second, then the +34 number's rest


def test_rate_limited__per_sender_needs_a_rate() -> None:
    with pytest.raises(ValueError):
        RateLimitedSender(ScriptedSender(), None, per_sender=by_address_prefix)


SENDER_NUMBERS = [
    ("+34600111222", "+34910000000"),
    ("+447911123456", "+15005550006"),
    ("+12025550123", "+15005550006"),
]


@pytest.mark.parametrize("address, expected", SENDER_NUMBERS, ids=["country-sender", "default", "us"])
def test_sender_number_key__picks_the_number_by_country(address: str, expected: str) -> None:
    key = sender_number_key({"default": "+15005550006", "ES": "+34910000000"})
    assert key(message(address)) == expected


async def test_rate_limited__stands_where_the_provider_stood() -> None:
    provider = TwilioSmsProvider.from_settings(Settings(secret="s" * 16))
    try:
        wrapped = RateLimitedSender(provider, TokenBucket(1))
        assert isinstance(wrapped, Sender) and isinstance(wrapped, WebhookReceiver)
        assert (wrapped.name, wrapped.channel) == ("twilio", "sms")
        assert wrapped.STATUS_MAP is TwilioSmsProvider.STATUS_MAP
        assert wrapped.verify_webhook == provider.verify_webhook
        assert wrapped.parse_webhook == provider.parse_webhook
        assert wrapped.config is provider.config  # anything else through __getattr__
        assert wrapped.unwrapped is provider
        assert not isinstance(RateLimitedSender(ScriptedSender(), None), WebhookReceiver)
    finally:
        await provider.close()


async def test_rate_limited_builder__per_key_shape() -> None:
    limits = effective_limits("email.sendgrid=none")
    provider = ScriptedSender(name="twilio", channel="sms")
    assert rate_limited("email.sendgrid", provider, limits=limits) is provider
    assert rate_limited("email.smtp", provider, limits=limits) is provider

    per_number = rate_limited("sms.twilio", provider, limits=limits, per_sender=by_address_prefix)
    assert isinstance(per_number, RateLimitedSender)
    assert per_number.bucket is None and per_number.per_sender_rate == 1

    account = rate_limited("sms.vonage", provider, limits=limits)
    assert isinstance(account, RateLimitedSender)
    assert account.bucket is not None and account.bucket.rate == 30 and account.per_sender is None

    no_key = rate_limited("sms.twilio", provider, limits=limits)  # no per_sender: one number's rate for all
    assert isinstance(no_key, RateLimitedSender) and no_key.bucket is not None and no_key.bucket.rate == 1


def test_rate_limited_builder__gives_the_share_to_every_bucket() -> None:
    limits = effective_limits()
    provider = ScriptedSender(name="twilio", channel="sms")
    share = Share(0.25)
    account = rate_limited("sms.vonage", provider, limits=limits, share=share)
    assert isinstance(account, RateLimitedSender) and account.bucket is not None
    assert account.bucket.effective == (7.5, 7.5)
    per_number = rate_limited("sms.twilio", provider, limits=limits, per_sender=by_address_prefix, share=share)
    assert isinstance(per_number, RateLimitedSender)
    assert per_number.sender_bucket("+34").effective == (0.25, 0.25)


async def test_build_senders__limits_at_the_share_outside_the_priority_gate_and_report_it() -> None:
    metrics = Metrics()
    share = Share(0.5)
    senders = build_senders(Settings(secret="s" * 16, providers="sms=vonage"), metrics, share=share)
    try:
        [vonage] = limited_senders(senders, "sms")
        assert vonage.bucket is not None and vonage.bucket.effective == (15, 15)
        # Tokens first, then a connection slot: both serve a critical send first.
        assert isinstance(vonage.inner, PriorityGate)
        registry = metrics.registry
        assert registry.get_sample_value("herald_rate_limit_share") == 0.5
        share.value = 1 / 3  # a rebalance: read again at the next scrape
        assert registry.get_sample_value("herald_rate_limit_share") == pytest.approx(1 / 3)
        assert vonage.on_wait is not None
        vonage.on_wait(1.5)
        assert registry.get_sample_value("herald_rate_limit_wait_seconds_total",
                                         {"channel": "sms", "provider": "vonage"}) == 1.5
    finally:
        await senders["sms"].close()


async def test_build_senders__without_a_share_the_worker_is_the_whole_group() -> None:
    metrics = Metrics()
    senders = build_senders(Settings(secret="s" * 16, providers="sms=vonage"), metrics)
    try:
        [vonage] = limited_senders(senders, "sms")
        assert vonage.bucket is not None and vonage.bucket.effective == (30, 30)
        assert metrics.registry.get_sample_value("herald_rate_limit_share") == 1
    finally:
        await senders["sms"].close()


# --- metering a provider declares ------------------------------------------------------------------------------------

def by_last_digit(m: OutboundMessage) -> str:
    return m.address[-1]


def two_tokens(m: OutboundMessage) -> float:
    return 2.0


class PlainSms(ScriptedSender):
    """A provider that declares nothing: one token a message."""

    def __init__(self) -> None:
        super().__init__(name="plain", channel="sms")

    @classmethod
    def from_settings(cls, settings: Settings) -> PlainSms:
        return cls()


class MeteredSms(PlainSms):
    """A provider whose vendor meters each sending number, two tokens a message."""

    def rate_limit_metering(self) -> Metering:
        return Metering(per_sender=by_last_digit, cost=two_tokens)


class UndecidedSms(PlainSms):
    def rate_limit_metering(self) -> None:
        return None


def limited_senders(senders: dict[str, Sender], channel: str) -> list[RateLimitedSender]:
    """The rate-limited layer of each provider `build_senders` made for `channel` (inside its breaker)."""
    sender = senders[channel]
    limited = []
    for wrapped in sender.providers if isinstance(sender, ProviderChain) else [sender]:
        assert isinstance(wrapped, BreakerSender) and isinstance(wrapped.inner, RateLimitedSender)
        limited.append(wrapped.inner)
    return limited


@pytest.mark.parametrize("cls, expected", [(MeteredSms, Metering(by_last_digit, two_tokens)),
                                           (UndecidedSms, Metering()), (PlainSms, Metering())],
                         ids=["declared", "declares-none", "no-method"])
def test_declared_metering__what_the_provider_says_or_the_default(cls: type[PlainSms], expected: Metering) -> None:
    assert declared_metering(cls()) == expected


async def test_build_senders__twilio_sms_meters_each_from_number_in_segments_and_vonage_its_account(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_TWILIO_SMS_FROM", "default=+15005550006,ES=+34910000000")
    senders = build_senders(Settings(secret="s" * 16, providers="sms=twilio,vonage"))
    try:
        twilio, vonage = limited_senders(senders, "sms")
        assert twilio.unwrapped.name == "twilio" and vonage.unwrapped.name == "vonage"
        assert twilio.bucket is None and twilio.per_sender_rate == 1 and twilio.cost is sms_segment_cost
        assert twilio.per_sender is not None
        assert [twilio.per_sender(message(a)) for a in ("+34600111222", "+447911123456")] == [
            "+34910000000", "+15005550006"]
        assert vonage.per_sender is None and vonage.cost is None
        assert vonage.bucket is not None and vonage.bucket.rate == 30
    finally:
        await senders["sms"].close()


@pytest.mark.parametrize("cls", [MeteredSms, PlainSms], ids=["declares", "declares-nothing"])
def test_build_senders__applies_what_the_provider_declares_whatever_its_key(
        monkeypatch: pytest.MonkeyPatch, cls: type[PlainSms]) -> None:
    # The same key with another provider class: the metering follows the provider, not the key.
    monkeypatch.setitem(PROVIDERS, "sms.twilio", f"{__name__}:{cls.__name__}")
    [limited] = limited_senders(build_senders(Settings(secret="s" * 16, providers="sms=twilio")), "sms")
    assert isinstance(limited.unwrapped, cls)
    if cls is MeteredSms:
        assert limited.per_sender is by_last_digit and limited.cost is two_tokens
        assert limited.bucket is None and limited.per_sender_rate == 1
    else:
        assert limited.per_sender is None and limited.cost is None
        assert limited.bucket is not None and limited.bucket.rate == 1

