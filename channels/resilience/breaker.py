"""Circuit breakers per provider: stop calling a provider that keeps failing, probe it now and then, and let the
chain send through the next provider meanwhile.

closed --(failure_threshold consecutive retriable failures)--> open --(reset_after seconds)--> half_open
half_open --(a probe succeeds)--> closed;  half_open --(a probe fails)--> open (the timer starts again)

Only retriable errors are provider failures. A permanent one (invalid number, content refused) is the
recipient's or the message's fault and proves the provider is answering, so it counts as a success.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from channels.base import OutboundMessage, Sender, SendResult
from channels.errors import DeliveryError, ProviderUnavailable
from channels.resilience.chain import ProviderWrapper

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)

Listener = Callable[[str, str], None]


class CircuitBreaker:
    """The state machine of one provider's breaker, on an injectable monotonic `clock`.

    Outcomes carry the `epoch` they were admitted in (`allow()` then `epoch`): an answer to a call that started
    before the breaker last opened is stale and ignored, so a slow failure from before an outage cannot re-open a
    breaker that is probing, nor a slow success close one that just opened.
    """

    def __init__(self, name: str, *, failure_threshold: int = 5, reset_after: float = 30.0, half_open_max: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1 or half_open_max < 1 or reset_after <= 0:
            raise ValueError("failure_threshold and half_open_max must be >= 1, reset_after > 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.half_open_max = half_open_max
        self._clock = clock
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0
        self.epoch = 0  # incremented each time the breaker opens
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(name, new_state)` on every transition (a metric, a log line)."""
        self._listeners.append(listener)

    @property
    def state(self) -> str:
        """`closed`, `open` or `half_open` now (an open breaker past `reset_after` reads `half_open`)."""
        self._tick()
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive retriable failures counted while closed."""
        return self._failures

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it is not open)."""
        self._tick()
        if self._state != OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_after - self._clock())

    def allow(self) -> bool:
        """Whether a call may go to the provider now; in half-open, each True is one of `half_open_max` probes."""
        self._tick()
        if self._state == CLOSED:
            return True
        if self._state == HALF_OPEN and self._probes < self.half_open_max:
            self._probes += 1
            return True
        return False

    def record(self, error: BaseException | None, *, epoch: int | None = None) -> None:
        """The outcome of an allowed call: None for a success, else the exception it raised."""
        if epoch is not None and epoch != self.epoch:
            return
        if error is None or (isinstance(error, DeliveryError) and not error.retriable):
            self.record_success()
        elif isinstance(error, DeliveryError):
            self.record_failure()
        else:
            self.release()  # a bug or a cancellation says nothing about the provider

    def record_success(self) -> None:
        self._tick()
        if self._state == HALF_OPEN:
            self._failures = 0
            self._set(CLOSED)
        elif self._state == CLOSED:
            self._failures = 0
        # While open, a late success is ignored: only a probe decides.

    def record_failure(self) -> None:
        self._tick()
        if self._state == HALF_OPEN:
            self._open()
        elif self._state == CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open()

    def release(self, *, epoch: int | None = None) -> None:
        """An allowed call ended without an outcome: give its probe slot back."""
        if (epoch is None or epoch == self.epoch) and self._state == HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._failures = 0
        self.epoch += 1
        self._set(OPEN)

    def _tick(self) -> None:
        if self._state == OPEN and self._clock() - self._opened_at >= self.reset_after:
            self._probes = 0
            self._set(HALF_OPEN)

    def _set(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        log.log(logging.INFO if state == HALF_OPEN else logging.WARNING, "circuit %s", state,
                extra={"provider": self.name, "state": state})
        for listener in self._listeners:
            try:
                listener(self.name, state)
            except Exception:
                # A broken metric hook must not turn a send into a failure.
                log.exception("circuit listener failed", extra={"provider": self.name})


class BreakerSender(ProviderWrapper):
    """A provider behind its breaker: while open, sends raise a retriable `ProviderUnavailable` with code
    `circuit_open` without calling the provider (a `ProviderChain` moves on to the next provider at once; the
    error's `retry_after` says when the next probe is due). Otherwise outcomes are recorded.

    `on_state_change(provider_name, new_state)` is called on every transition (e.g. a Prometheus gauge).
    Stands where the provider stood: same `name`, `channel`, webhook methods (see `ProviderWrapper`).
    """

    def __init__(self, inner: Sender, breaker: CircuitBreaker, *,
                 on_state_change: Callable[[str, str], None] | None = None) -> None:
        super().__init__(inner)
        self.breaker = breaker
        if on_state_change is not None:
            name = self.name
            breaker.subscribe(lambda _breaker, state: on_state_change(name, state))

    async def send(self, message: OutboundMessage) -> SendResult:
        if not self.breaker.allow():
            error = ProviderUnavailable("circuit open", code="circuit_open", provider=self.name)
            # Read with getattr by the delivery stage's backoff: retry when the next probe is due, not sooner.
            error.retry_after = self.breaker.retry_in() or None
            raise error
        epoch = self.breaker.epoch
        try:
            result = await self.inner.send(message)
        except DeliveryError as exc:
            self.breaker.record(exc, epoch=epoch)
            raise
        except BaseException:
            self.breaker.release(epoch=epoch)
            raise
        self.breaker.record(None, epoch=epoch)
        return result
