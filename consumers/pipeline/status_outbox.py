"""The status webhook outbox: statuses waiting for their tenant's endpoint, delivered, retried and dead-lettered.

Why an outbox and not the Faust offsets: a record whose offset is held while its endpoint is down would hold every
rebalance of the worker group too (Faust waits for every record in flight to be acknowledged before it lets a
partition go), and the status agent's buffer would fill and stop the app's one consumer for every topic; and the
scheduler keeps dispatches only. So the status agent only copies a matching status into `herald.state.status_outbox`
(a partitioned `TopicStore`: in the status record's partition, so the worker that owns the partition delivers it,
and a crash or a rebalance hands the entry over with it) and goes on; this outbox delivers in the background.

Per tenant, a lane: its due entries in time order, at most `concurrency` POSTs in flight, and a circuit breaker
(channels/resilience/breaker.py) that pauses the endpoint after `pause_after` consecutive retriable failures
(timeouts, connection errors, 408, 429, 5xx) and lets one probe through after `pause_for` seconds: one slow or dead
endpoint never delays another tenant's deliveries. A retriable failure is tried again after an exponential backoff
with jitter, or after the receiver's `Retry-After` when that is longer, and given up (dead-lettered) after
`max_attempts` attempts or once the entry is older than `retry_for`; any other answer (4xx but 408 and 429, a URL
the SSRF guard refuses) is dead-lettered at once. At least once: an entry is deleted only after its 2xx or its dead
letter; a crash in between delivers it again under the same `webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import orjson
from pydantic import ValidationError

from channels.resilience.breaker import CLOSED, OPEN, CircuitBreaker
from consumers.observe.metrics import Metrics
from consumers.pipeline.records import Publisher
from consumers.pipeline.status_webhook_http import Attempt, StatusPoster
from consumers.state.keyvalue import KeyValueStore
from consumers.state.status_webhooks import Registrations, SecretUnreadable
from schemas.subscriptions import OutboxEntry

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC = "webhooks.deadletter"
BACKOFF_FIRST = 1.0  # seconds before the second attempt; doubles per attempt up to BACKOFF_CAP, with jitter
BACKOFF_CAP = 900.0
SCAN_EVERY = 10.0  # seconds between readings of the whole outbox (entries of partitions taken, after a restart)
REPAIR_AFTER = 5.0  # seconds before an entry whose handling failed inside Herald (not the endpoint) is tried again


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    max_attempts: int = 12
    retry_for: timedelta = timedelta(hours=1)
    concurrency: int = 4
    pause_after: int = 10
    pause_for: float = 60.0
    backoff_first: float = BACKOFF_FIRST
    backoff_cap: float = BACKOFF_CAP


@dataclass
class Lane:
    """One tenant's endpoint: its waiting entries (a heap of (due, key); `due` says which heap item is current), what
    is in flight, and its breaker."""

    tenant: str
    breaker: CircuitBreaker
    heap: list[tuple[datetime, str]] = field(default_factory=list)
    due: dict[str, datetime] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    held: bool = False  # its head is due but the breaker let nothing through at the last pump
    created: dict[str, datetime] = field(default_factory=dict)  # when each waiting entry's retry window began

    def add(self, key: str, due: datetime, created: datetime | None = None) -> None:
        self.due[key] = due
        if created is not None:
            self.created[key] = created
        heapq.heappush(self.heap, (due, key))

    def drop(self, key: str) -> None:
        self.due.pop(key, None)
        self.created.pop(key, None)

    def expired(self, before: datetime) -> list[str]:
        """Waiting entries (not in flight) whose retry window began before `before`."""
        return [key for key, created in self.created.items()
                if created < before and key in self.due and key not in self.in_flight]

    def head(self) -> tuple[datetime, str] | None:
        """The earliest waiting entry (stale heap items dropped)."""
        while self.heap:
            due, key = self.heap[0]
            if self.due.get(key) == due and key not in self.in_flight:
                return due, key
            heapq.heappop(self.heap)
        return None

    @property
    def pending(self) -> int:
        return len(self.due)


class Outbox:
    """Delivers the entries of `store` (see the module docstring). `pump` starts what is due; `run` pumps forever."""

    def __init__(self, store: KeyValueStore, registrations: Registrations, poster: StatusPoster,
                 publisher: Publisher, metrics: Metrics, *, clock: Callable[[], datetime],
                 config: OutboxConfig | None = None, jitter: Callable[[], float] = random.random) -> None:
        self.store = store
        self.registrations = registrations
        self.poster = poster
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.config = config or OutboxConfig()
        self.jitter = jitter
        self.lanes: dict[str, Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._unreadable: set[str] = set()  # entries no version of Herald could have written: reported once

    # --- the index ----------------------------------------------------------------------------------------------

    def lane(self, tenant: str) -> Lane:
        lane = self.lanes.get(tenant)
        if lane is None:
            breaker = CircuitBreaker(f"status_webhook.{tenant}", failure_threshold=self.config.pause_after,
                                     reset_after=self.config.pause_for, clock=lambda: self.clock().timestamp())
            self.metrics.status_webhook_paused.labels(tenant).set(0)
            breaker.subscribe(lambda _name, state: self._paused(tenant, state))
            lane = self.lanes[tenant] = Lane(tenant, breaker)
        return lane

    def _paused(self, tenant: str, state: str) -> None:
        self.metrics.status_webhook_paused.labels(tenant).set(0 if state == CLOSED else 1)
        if state == OPEN:
            log.warning("status webhook endpoint paused", extra={"tenant": tenant,
                                                                 "seconds": self.config.pause_for})
        elif state == CLOSED:
            log.info("status webhook endpoint resumed", extra={"tenant": tenant})

    def pending(self, tenant: str) -> int:
        lane = self.lanes.get(tenant)
        return 0 if lane is None else lane.pending

    def add(self, key: str, entry: OutboxEntry) -> None:
        """Index an entry just stored (the status agent, once the broker has it)."""
        lane = self.lane(entry.tenant)
        if key not in lane.due:
            lane.add(key, entry.due_at or self.clock(), entry.created_at)
            self.metrics.status_webhook_pending.labels(entry.tenant).set(lane.pending)
            self._wake.set()

    def scan(self) -> None:
        """Index what the store holds and the index does not (partitions taken, a restart), and forget what it no
        longer holds (partitions let go)."""
        keys = set(self.store.list_keys())
        for lane in self.lanes.values():
            for key in [k for k in lane.due if k not in keys and k not in lane.in_flight]:
                lane.drop(key)
        known = {key for lane in self.lanes.values() for key in lane.due} | self._unreadable
        for key in keys - known:
            entry = self._load(key)
            if entry is not None:
                self.lane(entry.tenant).add(key, entry.due_at or self.clock(), entry.created_at)
        for tenant, lane in self.lanes.items():
            self.metrics.status_webhook_pending.labels(tenant).set(lane.pending)

    def _load(self, key: str) -> OutboxEntry | None:
        raw = self.store.get(key)
        if raw is None:
            return None
        try:
            return OutboxEntry.model_validate_json(raw)
        except ValidationError:
            log.warning("unreadable outbox entry skipped", extra={"key": key})
            self._unreadable.add(key)
            return None

    # --- pumping ------------------------------------------------------------------------------------------------

    def pump(self) -> None:
        """Start every due entry a lane has room for and its breaker lets through."""
        now = self.clock()
        for lane in self.lanes.values():
            lane.held = False
            while len(lane.in_flight) < self.config.concurrency and (head := lane.head()) is not None:
                due, key = head
                if due > now:
                    break
                lane.held = not lane.breaker.allow()
                if lane.held:
                    break
                heapq.heappop(lane.heap)
                lane.in_flight.add(key)
                task = asyncio.create_task(self._deliver(lane, key), name=f"status webhook {lane.tenant}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def expire(self) -> None:
        """Give up the entries of paused endpoints whose retry window is over. An endpoint that answers is tried
        again and given up on at its failure past the window (`_retry`); a paused one is only probed, so without
        this its waiting entries would outlive the window (and be delivered late if it came back)."""
        before = self.clock() - self.config.retry_for
        for lane in self.lanes.values():
            if lane.breaker.state == CLOSED:
                continue
            for key in lane.expired(before):
                lane.in_flight.add(key)  # not started by a pump meanwhile
                task = asyncio.create_task(self._expire(lane, key), name=f"status webhook expiry {lane.tenant}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _expire(self, lane: Lane, key: str) -> None:
        try:
            entry = self._load(key)
            if entry is None:
                lane.drop(key)
                return
            registration = self.registrations.get(lane.tenant)
            detail = (f"endpoint paused past the {self.config.retry_for.total_seconds():g} s retry window"
                      + (f" ({entry.last_error})" if entry.last_error else ""))
            await self.dead_letter(key, entry, "retries_exhausted", detail,
                                   url=registration.url if registration else None)
            await self._forget(lane, key, entry)
        except Exception:
            log.exception("status webhook expiry failed inside Herald", extra={"tenant": lane.tenant})
        finally:
            lane.in_flight.discard(key)
            self.metrics.status_webhook_pending.labels(lane.tenant).set(lane.pending)

    def next_wake(self) -> float:
        """Seconds until a lane may start something (SCAN_EVERY at most)."""
        now = self.clock()
        wait = SCAN_EVERY
        for lane in self.lanes.values():
            head = lane.head()
            if head is None or len(lane.in_flight) >= self.config.concurrency:
                continue
            if lane.held and lane.breaker.retry_in() == 0:
                continue  # half open, its probe in flight: the probe's end wakes the loop
            wait = min(wait, max(0.0, (head[0] - now).total_seconds(), lane.breaker.retry_in()))
        return wait

    async def drain(self) -> None:
        """Wait for every delivery in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def run(self) -> None:
        """Deliver forever (a worker task); the poster is closed when it is cancelled."""
        try:
            last_scan = float("-inf")
            loop = asyncio.get_running_loop()
            while True:
                if loop.time() - last_scan >= SCAN_EVERY:
                    await self.store.ready()
                    self.scan()
                    self.expire()
                    last_scan = loop.time()
                self._wake.clear()
                self.pump()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.next_wake())
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await self.poster.close()

    # --- one delivery -------------------------------------------------------------------------------------------

    async def _deliver(self, lane: Lane, key: str) -> None:
        try:
            await self._attempt(lane, key)
        except Exception:
            # Herald's side failed (the store, the dead-letter topic): the entry stays and is tried again.
            log.exception("status webhook delivery failed inside Herald", extra={"tenant": lane.tenant})
            if key in lane.due:
                lane.add(key, self.clock() + timedelta(seconds=REPAIR_AFTER))
        finally:
            lane.in_flight.discard(key)
            self.metrics.status_webhook_pending.labels(lane.tenant).set(lane.pending)
            self._wake.set()

    async def _attempt(self, lane: Lane, key: str) -> None:
        entry = self._load(key)
        registration = self.registrations.get(lane.tenant)
        if entry is None or registration is None or not registration.wants(*_kind(entry.body)):
            # Gone meanwhile (delivered by the partition's previous owner), unregistered, or filtered out since.
            if entry is not None:
                self.metrics.status_webhook_deliveries.labels(lane.tenant, "dropped").inc()
            await self._forget(lane, key, entry)
            lane.breaker.release()
            return
        epoch = lane.breaker.epoch
        try:
            secrets = self.registrations.signing_secrets(registration)
        except SecretUnreadable:
            log.error("status webhook secret unreadable: is the HERALD_SECRET it was sealed with still in "
                      "HERALD_SECRET_PREVIOUS?", extra={"tenant": lane.tenant})
            lane.breaker.release(epoch=epoch)
            unreadable = Attempt(False, "server_error", "secret unreadable", retry_after=self.config.pause_for)
            await self._retry(lane, key, entry, unreadable, count=False)
            return
        attempt = await self.poster.post(registration.url, key, entry.body.encode(), secrets)
        if attempt.retriable:
            if epoch == lane.breaker.epoch:
                lane.breaker.record_failure()
        elif epoch == lane.breaker.epoch:
            lane.breaker.record_success()  # a 4xx too: the endpoint answers
        if attempt.ok:
            await self._forget(lane, key, entry)
            self.metrics.status_webhook_deliveries.labels(lane.tenant, "delivered").inc()
            if entry.published_at is not None:
                self.metrics.status_webhook_latency_seconds.labels(lane.tenant).observe(
                    max(0.0, (self.clock() - entry.published_at).total_seconds()))
        elif attempt.retriable:
            await self._retry(lane, key, entry, attempt)
        else:
            await self.dead_letter(key, entry, attempt.reason, attempt.detail, url=registration.url)
            await self._forget(lane, key, entry)

    async def _retry(self, lane: Lane, key: str, entry: OutboxEntry, attempt: Attempt, *, count: bool = True) -> None:
        now = self.clock()
        attempts = entry.attempts + 1
        due = now + timedelta(seconds=self.backoff(attempts, attempt.retry_after))
        if attempts >= self.config.max_attempts or due > entry.created_at + self.config.retry_for:
            registration = self.registrations.get(lane.tenant)
            detail = f"{attempt.reason} ({attempt.detail}) after {attempts} attempts"
            await self.dead_letter(key, entry.model_copy(update={"attempts": attempts}), "retries_exhausted", detail,
                                   url=registration.url if registration else None)
            await self._forget(lane, key, entry)
            return
        updated = entry.model_copy(update={"attempts": attempts if count else entry.attempts, "due_at": due,
                                           "first_failure_at": entry.first_failure_at or now,
                                           "last_error": f"{attempt.reason}: {attempt.detail}"[:200]})
        # Kept with its next time, so a restart neither forgets the attempts nor calls a failing endpoint at once.
        await self.store.put(key, updated.model_dump_json().encode(), partition=entry.partition)
        lane.add(key, due, entry.created_at)
        self.metrics.status_webhook_deliveries.labels(lane.tenant, "retried").inc()

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before attempt `attempts + 1`: exponential with jitter (half fixed, half random), or the
        receiver's Retry-After when that is longer."""
        ceiling: float = min(self.config.backoff_cap, self.config.backoff_first * 2.0 ** (attempts - 1))
        delay = ceiling / 2 + self.jitter() * ceiling / 2
        return max(delay, retry_after or 0.0)

    async def _forget(self, lane: Lane, key: str, entry: OutboxEntry | None) -> None:
        lane.drop(key)
        if entry is not None:
            await self.store.delete(key, partition=entry.partition)

    async def dead_letter(self, key: str, entry: OutboxEntry, reason: str, detail: str, *,
                          url: str | None) -> None:
        """The status, byte for byte, to herald.webhooks.deadletter with why in headers; durable."""
        headers = {
            "herald-tenant": entry.tenant.encode(),
            "herald-url-host": (urlsplit(url).hostname or "").encode() if url else b"",
            "herald-error": reason.encode(),
            "herald-error-detail": detail[:500].encode(),
            "herald-attempts": str(entry.attempts).encode(),
            "herald-webhook-id": key.encode(),
            "herald-source-topic": entry.topic.encode(),
            "herald-source-partition": str(entry.partition).encode(),
            "herald-source-offset": str(entry.offset).encode(),
        }
        if entry.first_failure_at is not None:
            headers["herald-first-failure"] = entry.first_failure_at.isoformat().encode()
        message_key = entry.message_id.encode() if entry.message_id else None
        await self.publisher.send(DEAD_LETTER_TOPIC, message_key, entry.body.encode(), headers, durable=True)
        self.metrics.status_webhook_dead_letters.labels(entry.tenant, reason).inc()
        self.metrics.status_webhook_deliveries.labels(entry.tenant, "dead_lettered").inc()
        log.warning("status webhook dead-lettered", extra={"tenant": entry.tenant, "reason": reason,
                                                           "attempts": entry.attempts})


def _kind(body: str) -> tuple[object, object]:
    """(status, event_type) of a status record's JSON."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    return (data.get("status"), data.get("event_type")) if isinstance(data, dict) else (None, None)
