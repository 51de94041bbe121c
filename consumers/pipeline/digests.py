"""Digests (catalog `digest`): a type's events collected per recipient (and per value of `digest.key`) and sent as
one message when the window closes, or at once when the digest is full.

The router hands an event of a digest type here instead of dispatching it (`RouteResult.digest`). It joins its
digest (consumers/state/digests.py, a partitioned Kafka-backed store) and gets `accepted`, then `digested` with
detail `digest:<digest id>`. A digest closes by publishing a *digest message*: an event of the same type on
`herald.events` (source `herald/digests`, id the digest's, idempotency key `digest:<digest id>`, payload
`{events: [...payloads], count: N}`), which the router routes as any event of the type, so preferences, consent,
quiet hours, caps and channels apply to it and its messages get the usual statuses under their own ids.

Crash safety: a digest is written (acknowledged) before its event counts as seen, and deleted only once its message
is acknowledged. A crash before the delete closes it again after the restart; the second message carries the same
idempotency key and is dropped at the door (`deduplicated`), and its dispatches share message ids, which the send
ledger dedupes too. A collected event's dedupe key is recorded at once (not after the batch), so a replay of it
finds it seen even once its digest is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from consumers.identity import message_id
from consumers.pipeline.records import PENDING_ACKS, Publisher
from consumers.pipeline.status import StatusEmitter
from consumers.state.digests import Collected, DigestStore, OpenDigest, digest_id, digest_slot
from consumers.state.kvstore import KeyValueStore
from schemas.catalog import CatalogEntry
from schemas.digests import Digest
from schemas.events import CloudEvent
from schemas.status import Status

if TYPE_CHECKING:
    from consumers.pipeline.ingest import IngestStage
    from consumers.pipeline.router import RouteResult

log = logging.getLogger(__name__)

DIGEST_SOURCE = "herald/digests"


def digest_payloads(event: CloudEvent, entry: CatalogEntry) -> list[Any] | None:
    """The collected payloads of a digest message (the router checks each for the type's required fields); None
    for any other event."""
    if entry.digest is None or event.source != DIGEST_SOURCE:
        return None
    events = event.data.payload.get("events")
    return events if isinstance(events, list) and events else [None]  # nothing collected: not a digest at all


def idempotency_key(digest: OpenDigest) -> str:
    return f"digest:{digest.id}"


def digest_message(digest: OpenDigest, closed_at: datetime) -> dict[str, Any]:
    """The event a closing digest publishes: the type's, for the digest's recipient, with `{events, count}`.
    Its `time` is when the digest closed, so the type's `ttl` counts from then."""
    return {"specversion": "1.0", "id": digest.id, "source": DIGEST_SOURCE, "type": digest.event_type,
            "time": closed_at.isoformat(), "subject": digest.to.id, "tenant": digest.tenant,
            "idempotencykey": idempotency_key(digest), "datacontenttype": "application/json",
            "data": {"to": digest.to.model_dump(mode="json", exclude_none=True),
                     "payload": Digest.payload(digest.payloads())}}


async def no_digests(result: RouteResult, partition: int) -> None:
    raise RuntimeError("an event of a digest type, and no digest store installed (install_digests)")


class Digests:
    """Collects events into digests and closes them. Ingest and the closing loop share one lock: a digest is
    never changed while it is being sent and deleted."""

    def __init__(self, store: KeyValueStore, publisher: Publisher, statuses: StatusEmitter, *,
                 dedupe: KeyValueStore, clock: Callable[[], datetime]) -> None:
        self.open = DigestStore(store)
        self.publisher = publisher
        self.statuses = statuses
        self.dedupe = dedupe
        self.clock = clock
        self.lock = asyncio.Lock()

    async def collect(self, result: RouteResult, partition: int) -> None:
        """Add the routed event to its digest (opening one), in `partition` (the event's); a full digest is sent
        now, as is an open one the event does not fit in (the event then opens the next)."""
        event, entry, event_key = result.event, result.entry, result.dedupe_key
        assert event is not None and entry is not None and entry.digest is not None and event_key is not None
        rule = entry.digest
        key = str(event.data.payload[rule.key]) if rule.key else None
        slot = digest_slot(event.tenant, event.data.to.id, event.type, key)
        payload = event.data.payload
        size = len(orjson.dumps(payload))
        async with self.lock:
            now = self.clock()
            digest = self.open.get(slot)
            if digest is not None and not digest.holds(event_key) and (digest.full or not digest.fits(size)):
                await self._close(slot, digest, now)
                digest = None
            if digest is None:
                digest = OpenDigest(id=digest_id(slot, event_key), tenant=event.tenant, event_type=event.type,
                                    key=key, to=event.data.to, opened_at=now, due_at=now + rule.window,
                                    max_events=rule.max_events, max_bytes=rule.max_bytes)
            if not digest.holds(event_key):  # a replayed event is in its digest already
                digest = digest.add(Collected(key=event_key, event_id=event.id, payload=payload, size=size),
                                    event.data.to)
                await self.open.put(slot, digest, partition=partition)
            # At once, not after the batch's acknowledgements: the digest may be sent and deleted below, and a
            # replay of the event must not open a new one with it.
            await self.dedupe.put(event_key, now.isoformat().encode(), durable=True, partition=partition)
            if digest.full:
                await self._close(slot, digest, now)
        event_mid = message_id(event.tenant, event.dedupe_key, "event")
        await self.statuses.for_event(event_mid, Status.ACCEPTED, event=event)
        await self.statuses.for_event(event_mid, Status.DIGESTED, event=event, detail=f"digest:{digest.id}")

    async def _close(self, slot: str, digest: OpenDigest, closed_at: datetime) -> None:
        """Publish the digest's message, wait for the broker to have it, then delete the digest."""
        value = orjson.dumps(digest_message(digest, closed_at))
        # Acknowledged here even inside a batch (whose acknowledgements are otherwise awaited at its end): the
        # digest is deleted next, and must not be unless its message is safe.
        token = PENDING_ACKS.set(None)
        try:
            await self.publisher.send("events", digest.to.id.encode(), value, durable=True)
        finally:
            PENDING_ACKS.reset(token)
        await self.open.delete(slot)
        log.info("digest closed", extra={"digest": digest.id, "event_type": digest.event_type,
                                         "events": len(digest.events)})

    async def close_ready(self) -> int:
        """Send every digest whose window has passed (or that is full) of the partitions this worker holds.
        Returns how many."""
        now = self.clock()
        closed = 0
        for slot in self.open.ready_to_close(now):
            async with self.lock:
                digest = self.open.get(slot)  # again: an event may have joined it, or ingest closed it, meanwhile
                if digest is None or not (digest.full or digest.due_at <= now):
                    continue
                # Closed by its window: its time is the window's end (the same after a restart); else now.
                await self._close(slot, digest, now if digest.full else digest.due_at)
            closed += 1
        return closed

    async def run(self, interval: float = 0.5) -> None:
        """Close ready digests forever (a worker task)."""
        while True:
            try:
                await self.close_ready()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("digest pass failed")
            await asyncio.sleep(interval)


def install_digests(task: Callable[[Callable[[], Awaitable[None]]], object], ingest: IngestStage,
                    store: KeyValueStore, *, ready: Callable[[], Awaitable[None]], interval: float) -> Digests:
    """Wire digests into a worker: `ingest` hands them its digest events, and `task` runs the closing loop once
    `ready` (every store caught up). `store` is partitioned: each worker closes the digests of its partitions."""
    digests = Digests(store, ingest.publisher, ingest.statuses, dedupe=ingest.router.dedupe,
                      clock=ingest.router.clock)
    ingest.digests = digests.collect

    async def close_digests() -> None:
        await ready()
        await digests.run(interval)

    task(close_digests)
    return digests
