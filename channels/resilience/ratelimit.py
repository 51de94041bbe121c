"""Client-side rate limits: Herald paces each provider below its vendor's published limit instead of collecting
429s, with a bucket per provider and, where the vendor meters each sending number, a bucket per number.

Buckets live in one worker process, and a limit holds for the whole worker group through a `share`: the fraction
of the group's sends this worker makes (the app passes the fraction of the partitions it owns). Every bucket refills
at `rate * share()` and holds at most `burst * share()`, read at each acquire, so a rebalance re-shares at once.
The vendor's 429 (`RateLimited`) stays the backstop, and its `Retry-After` holds the bucket for that long.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple, Protocol, runtime_checkable

from channels.base import OutboundMessage, Sender, SendResult
from channels.errors import DeliveryError, RateLimited
from channels.phone import sender_for, to_e164
from channels.resilience.chain import ProviderWrapper
from channels.segments import sms_segments

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
SenderKey = Callable[[OutboundMessage], str | None]
Cost = Callable[[OutboundMessage], float]
Share = Callable[[], float]  # this worker's fraction of the group's limit, 0..1
WaitHook = Callable[[float], None]  # told the seconds a send waited for its tokens (metrics)

# Float refill arithmetic lands a hair under a whole token; without the slack a waiter would sleep a second time
# for nanoseconds.
EPSILON = 1e-9
# A worker whose share is 0 looks again this often whether the group gave it partitions meanwhile.
ZERO_SHARE_POLL = 0.1

# The vendors' published defaults, by provider key. Accounts can be raised above these by the vendor; override
# them with `HERALD_RATE_LIMITS` (`parse_limits`). Providers absent here (`email.smtp`, `webhook.standard`) have no
# vendor limit: the SMTP relay and the customer's endpoint push back on their own (4xx replies, 429/503).
PUBLISHED_LIMITS: dict[str, str] = {
    # Per sending number, not per account (TwilioSmsProvider.rate_limit_metering): "Each Twilio SMS-enabled
    # long code … can send 1 SMS message segment per-second, per-number" (US/CA toll-free: 3 segments/s; short
    # codes: 30 messages/s). The
    # account-level Messages API concurrency is a limit on requests in flight, not a rate: not modelled here.
    # https://www.twilio.com/help/faq/twilio-basics/what-are-the-limits-on-outbound-calls-and-sms-messages-per-second
    "sms.twilio": "1/s",
    # "All API keys are set with 30 API requests per second throughput restriction by default" (and 1 SMS/s from a
    # US long virtual number on top of that; throttled requests get status 1 "Throttled").
    # https://api.support.vonage.com/hc/en-us/articles/203993598-What-is-the-Throughput-Limit-for-Outbound-SMS
    "sms.vonage": "30/s",
    # "For each registered business phone number, Cloud API supports up to 80 messages per second (mps) by
    # default" (error 130429 past it). A provider sends from one phone number id, so per provider = per number.
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/throughput
    "whatsapp.meta": "80/s",
    # HTTP v1 API: "The default quota of 600,000 messages per minute" per project (429 QUOTA_EXCEEDED past it).
    # https://firebase.google.com/docs/cloud-messaging/throttling-and-quotas
    "push.fcm": "600000/min",
    # v3 Mail Send publishes no hard per-second limit on paid plans (the rate-limit page only documents the
    # X-RateLimit-* headers and 429); 10,000/s stands for "unbounded" and only caps a runaway loop.
    # https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits
    "email.sendgrid": "10000/s",
    # "By default each Twilio account can make 1 outgoing call per-second" (CPS; raised on request).
    # https://www.twilio.com/help/faq/twilio-basics/how-many-calls-and-sms-messages-per-second-can-my-twilio-account-make
    "voice.twilio": "1/s",
}

UNITS: dict[str, float] = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.IGNORECASE)
NO_LIMIT = frozenset({"none", "off", "unlimited"})


def parse_rate(text: str) -> float:
    """`1/s`, `30/s`, `600/min`, `10/5s`, `3600/h` -> tokens per second (> 0)."""
    match = _RATE.match(text)
    unit = UNITS.get(match.group(3).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"bad rate {text!r}; expected e.g. 1/s, 30/s, 600/min")
    count, per = float(match.group(1)), float(match.group(2) or 1)
    if count <= 0 or per <= 0:
        raise ValueError(f"bad rate {text!r}; must be above zero")
    return count / (per * unit)


def parse_limits(spec: str) -> dict[str, float | None]:
    """`sms.twilio=1/s;voice.twilio=1/s;email.sendgrid=none` -> tokens per second by provider key (None: no limit).

    The format of `HERALD_RATE_LIMITS`; entries are separated by `;` or new lines, like `HERALD_PROVIDERS`.
    """
    limits: dict[str, float | None] = {}
    for part in filter(None, (p.strip() for p in spec.replace("\n", ";").split(";"))):
        key, _, rate = (s.strip() for s in part.partition("="))
        channel, _, vendor = key.partition(".")
        if not channel or not vendor or not rate:
            raise ValueError(f"bad rate limit entry {part!r}; expected channel.vendor=N/s")
        limits[key] = None if rate.lower() in NO_LIMIT else parse_rate(rate)
    return limits


def effective_limits(overrides: str = "") -> dict[str, float | None]:
    """The published limits with `HERALD_RATE_LIMITS` entries on top."""
    limits: dict[str, float | None] = {key: parse_rate(rate) for key, rate in PUBLISHED_LIMITS.items()}
    limits.update(parse_limits(overrides))
    return limits


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up (default: one second's worth, at least one).

    `acquire` waits its turn: waiters queue on one lock, so they are served first come, first served, and only
    the head of the queue sleeps (no herd of waiters waking to race for each token). An `urgent` acquire (a code,
    a password reset) goes before every ordinary one, however many are queued: it waits at most for the one
    ordinary waiter already sleeping at the head, which then steps back without taking the token.

    `rate` and `burst` are the whole worker group's; with a `share` this bucket refills at `rate * share()` and
    holds at most `burst * share()` (`effective`), read at every refill, so a new share applies to the next token
    (tokens above a smaller capacity are dropped). A share of 0 (a worker that owns no partition, yet is handed
    a send during a rebalance) refills nothing: an acquire then waits for the share to turn positive, re-reading
    it every `ZERO_SHARE_POLL` seconds, but at most as long as the whole group's bucket takes to refill
    (`burst / rate`, one second at the default burst, or one token's time for limits under 1/s) since the last
    such send went, and then goes without a token. So a stray send is late, never refused or stuck, and a worker
    that owns nothing sends at most one message per refill time through each bucket.
    """

    def __init__(self, rate: float, burst: float | None = None, *, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep, share: Share | None = None) -> None:
        burst = max(1.0, rate) if burst is None else burst
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be above zero")
        self.rate = rate
        self.burst = burst
        self.share = share
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._updated = clock()
        self._stray_at: float | None = None  # while the share is 0: when the next send may go without a token
        self._lock = asyncio.Lock()
        self._urgent = 0  # urgent acquires waiting
        self._no_urgent = asyncio.Event()
        self._no_urgent.set()

    @property
    def effective(self) -> tuple[float, float]:
        """(tokens per second, capacity) of this worker now: the group's, times its share (clamped to 0..1)."""
        share = 1.0 if self.share is None else min(1.0, max(0.0, self.share()))
        return self.rate * share, self.burst * share

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while a hold or an oversized acquire is being paid back)."""
        self._refill()
        return self._tokens

    def _refill(self) -> tuple[float, float]:
        rate, capacity = self.effective
        now = self._clock()
        self._tokens = min(capacity, self._tokens + max(0.0, now - self._updated) * rate)
        self._updated = now
        if rate > 0:
            self._stray_at = None
        return rate, capacity

    async def acquire(self, tokens: float = 1.0, *, urgent: bool = False) -> float:
        """Wait until `tokens` are available and take them; returns the seconds waited.

        More tokens than the capacity (a long SMS on a 1-segment-per-second number) wait for a full bucket and
        leave it in debt, so the next caller waits the difference: the rate holds without refusing the big ones.
        """
        start = self._clock()
        if urgent:
            self._urgent += 1
            self._no_urgent.clear()
        try:
            while True:
                if not urgent:
                    await self._no_urgent.wait()
                async with self._lock:
                    while urgent or not self._urgent:
                        rate, capacity = self._refill()
                        if rate <= 0:  # this worker owns nothing now (see the class)
                            now = self._clock()
                            if self._stray_at is None:
                                self._stray_at = now + self.burst / self.rate
                            if self._stray_at - now <= EPSILON:
                                self._stray_at = None  # the next stray waits a whole refill time again
                                return now - start
                            await self._sleep(min(self._stray_at - now, ZERO_SHARE_POLL))
                            continue
                        need = min(tokens, capacity)
                        if self._tokens >= need - EPSILON:
                            self._tokens -= tokens
                            return self._clock() - start
                        await self._sleep((need - self._tokens) / rate)
                # An urgent acquire arrived while this one queued or slept: it steps back and queues again after.
        finally:
            if urgent:
                self._urgent -= 1
                if not self._urgent:
                    self._no_urgent.set()

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take `tokens` if they are there now and nobody is queued before us; never waits."""
        if self._lock.locked() or self._urgent:
            return False
        rate, capacity = self._refill()
        if rate > 0 and self._tokens >= min(tokens, capacity) - EPSILON:
            self._tokens -= tokens
            return True
        return False

    def hold(self, seconds: float) -> None:
        """No token for the next `seconds` (a vendor's `Retry-After`); never shortens a longer wait."""
        rate, capacity = self._refill()
        self._tokens = min(self._tokens, min(1.0, capacity) - seconds * rate)


class RateLimitedSender(ProviderWrapper):
    """A provider behind its bucket and, when `per_sender` names the sending number of a message, behind that
    number's bucket too (made on first use at `per_sender_rate`; numbers come from configuration, so the set is
    bounded). `cost` is the tokens one message takes (SMS segments on Twilio); one by default. `share` is this
    worker's share of the group's limits, given to the number buckets it makes (see `TokenBucket`); `on_wait`
    hears the seconds each send waited for its tokens, when it waited.

    Stands where the provider stood: same `name`, `channel`, webhook methods (see `ProviderWrapper`).
    """

    def __init__(self, inner: Sender, bucket: TokenBucket | None, *, per_sender: SenderKey | None = None,
                 per_sender_rate: float | None = None, cost: Cost | None = None, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep, share: Share | None = None, on_wait: WaitHook | None = None) -> None:
        if per_sender is not None and per_sender_rate is None:
            raise ValueError("per_sender needs per_sender_rate")
        super().__init__(inner)
        self.bucket = bucket
        self.per_sender = per_sender
        self.per_sender_rate = per_sender_rate
        self.cost = cost
        self.sender_buckets: dict[str, TokenBucket] = {}
        self.share = share
        self.on_wait = on_wait
        self._clock = clock
        self._sleep = sleep

    def sender_bucket(self, key: str) -> TokenBucket:
        bucket = self.sender_buckets.get(key)
        if bucket is None:
            assert self.per_sender_rate is not None
            bucket = self.sender_buckets[key] = TokenBucket(self.per_sender_rate, clock=self._clock,
                                                            sleep=self._sleep, share=self.share)
        return bucket

    async def send(self, message: OutboundMessage) -> SendResult:
        tokens = self.cost(message) if self.cost else 1.0
        buckets: list[TokenBucket] = []
        key = self._sender_key(message)
        if key is not None:
            buckets.append(self.sender_bucket(key))
        if self.bucket is not None:
            buckets.append(self.bucket)
        # The narrow bucket first: waiting on a number's bucket while holding an account token would waste it.
        urgent = message.options.get("priority") == "critical"
        waited = 0.0
        for bucket in buckets:
            waited += await bucket.acquire(tokens, urgent=urgent)
        if waited > 0 and self.on_wait is not None:
            self.on_wait(waited)
        try:
            return await self.inner.send(message)
        except RateLimited as exc:
            if exc.retry_after:
                for bucket in buckets:
                    bucket.hold(exc.retry_after)
            raise

    def _sender_key(self, message: OutboundMessage) -> str | None:
        if self.per_sender is None:
            return None
        try:
            return self.per_sender(message)
        except DeliveryError:
            return None  # e.g. not a phone number: the provider refuses it with the proper error, unthrottled


class Metering(NamedTuple):
    """How a vendor meters a provider's sends: `per_sender` names the sending number a message leaves from (one
    bucket per number, at the key's rate), `cost` the tokens one message takes. None: one provider bucket,
    one token a message."""

    per_sender: SenderKey | None = None
    cost: Cost | None = None


@runtime_checkable
class Metered(Protocol):
    """A provider that declares its vendor's metering (optional; `TwilioSmsProvider`: each "From" number, in
    segments). A provider without the method, or returning None, is metered one token a message."""

    def rate_limit_metering(self) -> Metering | None: ...


def declared_metering(provider: object) -> Metering:
    """What `provider` declares through `rate_limit_metering` (see `Metered`), or the default metering."""
    declared = provider.rate_limit_metering() if isinstance(provider, Metered) else None
    return declared or Metering()


def sender_number_key(senders: Mapping[str, str]) -> SenderKey:
    """The sending number a message leaves from, by the recipient's country (as `TwilioSmsProvider` picks it)."""
    def key(message: OutboundMessage) -> str | None:
        _, region = to_e164(message.address)
        return sender_for(region, senders) or None
    return key


def sms_segment_cost(message: OutboundMessage) -> float:
    """Segments of an SMS: Twilio meters long codes in segments per second."""
    text = message.rendered.parts.get("text")
    return float(sms_segments(text)[1]) if isinstance(text, str) else 1.0


def rate_limited(key: str, provider: Sender, *, limits: Mapping[str, float | None],
                 per_sender: SenderKey | None = None, cost: Cost | None = None, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep, share: Share | None = None,
                 on_wait: WaitHook | None = None) -> Sender:
    """`provider` behind the limit for `key` (`sms.twilio`), or `provider` itself when it has none.

    With `per_sender` (the provider's declared metering) the rate is per sending number; without it, the whole
    provider gets one bucket at that rate (for a per-number vendor: safe, slower). The limits are the whole
    group's: each bucket paces at `rate * share()` (None: this worker is the group).
    """
    rate = limits.get(key)
    if rate is None:
        return provider
    bucket = None if per_sender is not None else TokenBucket(rate, clock=clock, sleep=sleep, share=share)
    return RateLimitedSender(provider, bucket, per_sender=per_sender,
                             per_sender_rate=rate if per_sender is not None else None, cost=cost, clock=clock,
                             sleep=sleep, share=share, on_wait=on_wait)
