"""Conversion attribution (catalog `conversion: {goal, within, match}`): a later event of the goal type for the
same recipient makes the messages it followed `converted`.

Three moments, one ledger (consumers/state/conversions.py), all in the partition of the recipient's events:
1. The ingest stage routes an event of a type with a goal: its messages (with the ids of every channel they may
   fall back to) are listed under the recipient and goal (`track`).
2. A message of such a type is sent: the worker that sent it remembers when (`after_send`, a DeliveryHooks hook).
3. A goal event arrives at the ingest stage (`observe`): for each type whose goal it is, the messages of the
   *last* event of that type sent to the person within `within` before the goal's time (and, with `match`, of the
   same value of that field when the goal names it) get a `converted` status, with `detail`
   `goal:<type> <goal event id>`: every message of that event (its reminders, its fallback message), none of older
   events (last touch per type). The goal's time is its `time`, else when the broker got it.

A message converts once: its ledger entry is marked after its status is acknowledged (a goal event read again
after a crash before that publishes it again: statuses are at least once), and the marks of the batch being handled
are kept in memory meanwhile, so a second goal in the same batch converts nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from consumers.ownership import partition_for
from consumers.pipeline.fallback import next_dispatch
from consumers.pipeline.records import once_durable
from consumers.pipeline.router import RouteResult
from consumers.pipeline.status import StatusEmitter
from consumers.state.conversions import GoalLedger, SentTouch, Touch, goals_expiry
from consumers.state.kvstore import KeyValueStore
from consumers.state.retention import Rule
from schemas.catalog import Catalog, CatalogEntry
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent
from schemas.experiments import Conversion
from schemas.status import DeliveryStatus, Status

# How long the ledger keeps an entry past its window: a goal event is judged by its own `time`, and one that happened
# within the window may reach Herald later (a producer's backlog, a consumer's lag).
LATE_GOALS = timedelta(days=1)


def message_ids(d: Dispatch) -> list[str]:
    """The dispatch's message id, then the id it would have on each channel it may fall back to, in order."""
    ids = [d.message_id]
    nxt = next_dispatch(d)
    while nxt is not None:
        ids.append(nxt.message_id)
        nxt = next_dispatch(nxt)
    return ids


def match_value(conversion: Conversion, payload: Mapping[str, object]) -> str | None:
    """The value of the conversion's `match` field in a payload, as text; None without one."""
    if conversion.match is None or conversion.match not in payload:
        return None
    return str(payload[conversion.match])


def last_touch(touches: Iterable[Touch], sent: Callable[[str], SentTouch | None], *, event_type: str,
               goal_at: datetime, conversion: Conversion, goal_match: str | None) -> list[SentTouch]:
    """The messages a goal at `goal_at` converts among the `touches` of `event_type`: those of the last event of that
    type sent within the window before the goal (sent at or before it, at most `within` earlier), matching
    `goal_match` when the goal names one, not converted yet. Empty when that last event's messages all are."""
    by_event: dict[str, list[SentTouch]] = {}
    for touch in touches:
        if touch.event_type != event_type or (goal_match is not None and touch.match != goal_match):
            continue
        for message_id in touch.ids:
            found = sent(message_id)
            if found is not None and found.sent_at <= goal_at <= found.sent_at + conversion.within:
                by_event.setdefault(touch.event_id, []).append(found)
    if not by_event:
        return []
    last = max(by_event.values(), key=lambda messages: max(m.sent_at for m in messages))
    return [m for m in last if m.converted is None]


class Attribution:
    """Tracks the messages of types with a goal and converts them when it comes (see the module docstring)."""

    def __init__(self, store: KeyValueStore, catalog: Catalog, statuses: StatusEmitter,
                 clock: Callable[[], datetime], *, partitions: int) -> None:
        self.ledger = GoalLedger(store, clock)
        self.catalog = catalog
        self.statuses = statuses
        self.clock = clock
        self.partitions = partitions
        self.goals: dict[str, list[str]] = {}  # goal type -> the types whose goal it is, in catalog order
        for name, entry in catalog.types.items():
            if entry.conversion is not None:
                self.goals.setdefault(entry.conversion.goal, []).append(name)
        self.pending: set[str] = set()  # converted, marked once the batch's statuses are acknowledged

    @staticmethod
    def retention(store: KeyValueStore) -> Rule:
        """The janitor's rule for the ledger: each entry goes when its window is over."""
        return Rule("state.conversions", store, goals_expiry, partitioned=True)

    async def observe(self, result: RouteResult, partition: int, received_at: datetime | None = None) -> None:
        """What the ingest stage routed (`partition`: the event's): a goal converts, a type with a goal is tracked."""
        event, entry = result.event, result.entry
        if event is None or entry is None or result.rejection is not None:
            return
        if event.type in self.goals:
            await self.attribute(event, partition, event.time or received_at or self.clock())
        if entry.conversion is not None and (result.dispatches or result.scheduled):
            await self.track(entry, [*result.dispatches, *(d for _, d, _ in result.scheduled)], partition)

    async def track(self, entry: CatalogEntry, dispatches: list[Dispatch], partition: int) -> None:
        """List an event's messages under their recipient and goal, with their ids on every fallback channel."""
        conversion = entry.conversion
        assert conversion is not None
        now = self.clock()
        touches = [Touch(event_id=d.event_id, event_type=d.event_type, ids=message_ids(d),
                         match=match_value(conversion, d.payload),
                         until=(d.expires_at or now + entry.ttl) + conversion.within + LATE_GOALS)
                   for d in dispatches]
        await self.ledger.add(dispatches[0].to.id, conversion.goal, touches, partition=partition)

    async def after_send(self, d: Dispatch, provider: str) -> None:
        """A message of a type with a goal was sent: remember it in its recipient's partition."""
        entry = self.catalog.get(d.event_type)
        if entry is None or entry.conversion is None:
            return
        now = self.clock()
        sent = SentTouch(message_id=d.message_id, event_id=d.event_id, event_type=d.event_type,
                         event_time=d.event_time, tenant=d.tenant, channel=d.channel, provider=provider,
                         attempt=d.attempt, recipient=self.statuses.recipient(d.channel, d.to.address_for(d.channel)),
                         variant=d.variant, sent_at=now, until=now + entry.conversion.within + LATE_GOALS)
        await self.ledger.record_sent(d.to.id, sent, partition=partition_for(d.to.id, self.partitions))

    async def attribute(self, event: CloudEvent, partition: int, goal_at: datetime) -> list[DeliveryStatus]:
        """Publish `converted` for what the goal `event` converts; returns the statuses."""
        recipient_id = event.data.to.id
        touches = self.ledger.touches(recipient_id, event.type)
        published = []
        for event_type in self.goals[event.type]:
            conversion = self.catalog.types[event_type].conversion
            assert conversion is not None
            for sent in last_touch(touches, lambda mid: self._sent(recipient_id, mid), event_type=event_type,
                                   goal_at=goal_at, conversion=conversion,
                                   goal_match=match_value(conversion, event.data.payload)):
                published.append(await self._convert(recipient_id, sent, event, partition))
        return published

    def _sent(self, recipient_id: str, message_id: str) -> SentTouch | None:
        found = self.ledger.sent(recipient_id, message_id)
        if found is not None and found.converted is None and message_id in self.pending:
            return found.model_copy(update={"converted": "pending"})
        return found

    async def _convert(self, recipient_id: str, sent: SentTouch, goal: CloudEvent, partition: int) -> DeliveryStatus:
        now = self.clock()
        status = DeliveryStatus(
            message_id=sent.message_id, event_id=sent.event_id, event_type=sent.event_type, tenant=sent.tenant,
            channel=sent.channel, provider=sent.provider, status=Status.CONVERTED, attempt=sent.attempt,
            recipient=sent.recipient, template=f"{sent.event_type}/{sent.channel}", at=now,
            latency_ms=max(0, int((now - sent.event_time).total_seconds() * 1000)),
            detail=f"goal:{goal.type} {goal.id[:100]}", variant=sent.variant)
        await self.statuses.publish(status)
        self.pending.add(sent.message_id)

        async def mark() -> None:
            try:
                await self.ledger.mark_converted(recipient_id, sent, goal.id, partition=partition)
            finally:
                self.pending.discard(sent.message_id)

        await once_durable(mark, undo=lambda: self.pending.discard(sent.message_id))
        return status
