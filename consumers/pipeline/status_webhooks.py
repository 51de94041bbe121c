"""Outbound status webhooks: the agent over `herald.status` that hands each status a tenant registered for to the
outbox (consumers/pipeline/status_outbox.py), and the wiring the app factory calls.

For every status record the agent reads `tenant`, `status` and `event_type` (one JSON parse, nothing more for
tenants without a registration), and for a registration that wants it stores an `OutboxEntry` (the record's value
byte for byte) under its `webhook-id` in the record's own partition of `herald.state.status_outbox`. The entries of a
batch are acknowledged by the broker before the batch's offsets may be committed; only then does the outbox index
them and POST. The `webhook-id` is derived from where the status record sits (topic, partition, offset), so a
status delivered again after a crash carries the same id and the receiver can drop the copy.

On only with HERALD_API_KEYS (registrations are made through the HTTP API) and HERALD_STATUS_WEBHOOKS: the agent
makes the app's consumer read every status record, a cost a deployment without the API does not pay.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import faust
import httpx
import orjson

from channels.providers.webhook import WebhookSettings
from consumers.identity import KeyRing
from consumers.observe.metrics import Metrics
from consumers.ownership import Ownership, follow_rebalances
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.records import PENDING_ACKS, Publisher, Record, once_durable
from consumers.pipeline.status_outbox import DEAD_LETTER_TOPIC, Outbox, OutboxConfig
from consumers.pipeline.status_webhook_http import StatusPoster
from consumers.state.keyvalue import KeyValueStore, MemoryStore
from consumers.state.kvstore import TopicStore
from consumers.state.status_webhooks import Registrations
from schemas.settings import Settings
from schemas.subscriptions import OutboxEntry

OUTBOX_TOPIC = "state.status_outbox"
STAGE = "status_webhooks"


def webhook_id(topic: str, partition: int, offset: int) -> str:
    """The `webhook-id` of the status record at topic/partition/offset: the same for every delivery of it."""
    return "hst_" + hashlib.sha256(f"{topic}/{partition}/{offset}".encode()).hexdigest()[:32]


def track_status_partitions(app: faust.App, settings: Settings) -> Ownership:
    """The partitions of herald.status this worker's agent owns, kept up to date from Faust's rebalances. The outbox
    follows these rather than the events' (consumers/app.py `track_ownership`): they are the same numbers only while
    every worker of the group subscribes to the same topics, which a rolling change of HERALD_API_KEYS breaks."""
    return follow_rebalances(app, settings.partitions, settings.topic("status"))


class _DeadLetterTopic:
    """A `Publisher` that writes what would go to herald.deadletter to herald.webhooks.deadletter instead: a status
    record the agent fails on must not be replayed onto herald.status by `herald dlq replay`."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: Mapping[str, bytes] | None = None,
                   *, durable: bool = False) -> None:
        target = DEAD_LETTER_TOPIC if topic == "deadletter" else topic
        await self.publisher.send(target, key, value, headers, durable=durable)


class StatusWebhooks:
    """The agent's handler (`handle`), the outbox's loop (`run`), and the registrations the HTTP API changes."""

    def __init__(self, registrations: Registrations, outbox: Outbox, store: KeyValueStore, publisher: Publisher,
                 metrics: Metrics, *, clock: Callable[[], datetime], max_pending: int) -> None:
        self.registrations = registrations
        self.outbox = outbox
        self.store = store
        self.clock = clock
        self.max_pending = max_pending
        self._registrations_read = False
        # For the agent's guard: a record `handle` raised on (a bug) is dead-lettered, with no status (it is one).
        self.guard = DeadLetters(_DeadLetterTopic(publisher), metrics)

    @classmethod
    def build(cls, settings: Settings, *, app: faust.App | None, store: KeyValueStore, publisher: Publisher,
              metrics: Metrics, keys: KeyRing, clock: Callable[[], datetime],
              webhook: WebhookSettings | None = None, outbox: KeyValueStore | None = None,
              transport: httpx.AsyncBaseTransport | None = None) -> StatusWebhooks | None:
        """Everything, over the registrations `store`; None when HERALD_API_KEYS or HERALD_STATUS_WEBHOOKS says off.
        The outbox is a `TopicStore` partitioned like herald.status is among `app`'s workers next to stores on
        topics, else (tests) in memory."""
        if not settings.api_keys or not settings.status_webhooks:
            return None
        if outbox is None:
            outbox = (TopicStore(settings, OUTBOX_TOPIC, ownership=track_status_partitions(app, settings))
                      if isinstance(store, TopicStore) and app is not None else MemoryStore())
        registrations = Registrations(store, keys, clock)
        poster = StatusPoster(webhook or WebhookSettings(), settings, transport=transport)
        config = OutboxConfig(max_attempts=settings.status_webhook_max_attempts,
                              retry_for=settings.status_webhook_retry_for,
                              concurrency=settings.status_webhook_concurrency,
                              pause_after=settings.status_webhook_pause_after,
                              pause_for=settings.status_webhook_pause_for)
        deliveries = Outbox(outbox, registrations, poster, publisher, metrics, clock=clock, config=config)
        return cls(registrations, deliveries, outbox, publisher, metrics, clock=clock,
                   max_pending=settings.status_webhook_max_pending)

    async def handle(self, record: Record) -> None:
        """Store the status for its tenant's endpoint when its registration wants it; else nothing."""
        if not record.value:
            return
        try:
            data = orjson.loads(record.value)
            body = record.value.decode()
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            return  # not a status anyone could read: not this agent's to judge
        tenant = data.get("tenant") if isinstance(data, dict) else None
        if not isinstance(tenant, str) or not tenant:
            return
        if not self._registrations_read:  # replicated: read whole once at start, then kept up as it goes
            await self.registrations.store.ready()
            self._registrations_read = True
        registration = self.registrations.get(tenant)
        if registration is None or not registration.wants(data.get("status"), data.get("event_type")):
            return
        key = webhook_id(record.topic, record.partition, record.offset)
        published = datetime.fromtimestamp(record.timestamp, UTC) if record.timestamp else None
        entry = OutboxEntry(tenant=tenant, body=body, message_id=record.key.decode(errors="replace") if record.key
                            else None, topic=record.topic, partition=record.partition, offset=record.offset,
                            published_at=published, created_at=self.clock())
        if self.outbox.pending(tenant) >= self.max_pending:
            await self.outbox.dead_letter(key, entry, "backlog_full",
                                          f"{self.max_pending} statuses already wait for this endpoint",
                                          url=registration.url)
            return
        await self.store.ready(record.partition)
        put = self.store.put(key, entry.model_dump_json().encode(), durable=True, partition=record.partition)
        acks = PENDING_ACKS.get()
        if acks is None:
            await put
        else:  # acknowledged once per batch, with the batch's other writes
            acks.append(asyncio.ensure_future(put))

        async def index() -> None:
            self.outbox.add(key, entry)

        await once_durable(index)

    async def run(self) -> None:
        """The outbox's delivery loop (a worker task); its store is stopped when it is cancelled."""
        try:
            await self.outbox.run()
        finally:
            if isinstance(self.store, TopicStore):
                await self.store.stop()
