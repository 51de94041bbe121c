"""The conversion ledger (`herald.state.conversions`, partitioned): messages that may still convert, per recipient.

Two kinds of entries, both in the partition of the recipient's events (the worker that routes a goal event finds
them without asking anyone), both keyed by recipient id first so `herald forget` finds them:

- `<recipient id>|goal|<goal type>`: `Touches`, what the router made for the recipient of the types whose goal that
  is: each message's ids (on its first channel and on every channel it may fall back to) and its `match` value.
  Written by the ingest stage, which owns the partition, so read-modify-write is safe there.
- `<recipient id>|sent|<message id>`: `SentTouch`, written once a message is sent (by the worker that sent it, into
  the recipient's partition) and marked `converted` once its goal came. It holds what the `converted` status says
  of the message: no address (its keyed hash), no payload.

Each entry carries `until`, when it stops mattering (its window is over): the janitor deletes it then
(`goals_expiry`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, ConfigDict, Field

from consumers.state.kvstore import KeyValueStore

MAX_TOUCHES = 100  # per recipient and goal: the newest kept (a test account sent thousands would grow one entry)


class Touch(BaseModel):
    """A message the router made of a type whose goal this is."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str
    event_type: str
    ids: list[str] = Field(description="Its message id on its first channel, then on each fallback channel.")
    match: str | None = Field(default=None, description="Its event's value of the conversion's `match` field.")
    until: datetime = Field(description="When it can no longer convert: its expiry plus the conversion window.")


class Touches(BaseModel):
    """The value of a `…|goal|…` entry."""

    model_config = ConfigDict(extra="ignore")

    until: datetime
    touches: list[Touch] = Field(default_factory=list)


class SentTouch(BaseModel):
    """A sent message that may convert: what its `converted` status will say of it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    message_id: str
    event_id: str
    event_type: str
    event_time: datetime
    tenant: str | None = None
    channel: str
    provider: str | None = None
    attempt: int = 1
    recipient: str | None = None  # the address's keyed hash, as on the message's other statuses
    variant: str | None = None
    sent_at: datetime
    until: datetime  # sent_at plus the conversion window
    converted: str | None = None  # the goal event's id, once converted


def goal_key(recipient_id: str, goal: str) -> str:
    return f"{recipient_id}|goal|{goal}"


def sent_key(recipient_id: str, message_id: str) -> str:
    return f"{recipient_id}|sent|{message_id}"


def goals_expiry(_key: str, value: bytes) -> datetime | None:
    """The janitor's rule (consumers/state/retention.py): both kinds of value carry `until`."""
    until = datetime.fromisoformat(orjson.loads(value)["until"])
    return until if until.tzinfo else until.replace(tzinfo=UTC)


class GoalLedger:
    """Reads and writes the conversion ledger of one store."""

    def __init__(self, store: KeyValueStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def touches(self, recipient_id: str, goal: str) -> list[Touch]:
        raw = self.store.get(goal_key(recipient_id, goal))
        if raw is None:
            return []
        try:
            return Touches.model_validate_json(raw).touches
        except ValueError:  # unreadable: nothing to attribute, and the next write replaces it
            return []

    async def add(self, recipient_id: str, goal: str, touches: Iterable[Touch], *, partition: int) -> None:
        """Add `touches` (a message already there is replaced), dropping those past their `until`; in
        `partition`, the recipient's events' (the caller must own it: this reads, then writes)."""
        now = self.clock()
        new = {t.ids[0]: t for t in touches if t.ids}
        if not new:
            return
        kept = [t for t in self.touches(recipient_id, goal) if t.until > now and t.ids[0] not in new]
        merged = sorted([*kept, *new.values()], key=lambda t: t.until)[-MAX_TOUCHES:]
        value = Touches(until=max(t.until for t in merged), touches=merged)
        await self.store.put(goal_key(recipient_id, goal), value.model_dump_json().encode(), partition=partition)

    def sent(self, recipient_id: str, message_id: str) -> SentTouch | None:
        raw = self.store.get(sent_key(recipient_id, message_id))
        if raw is None:
            return None
        try:
            return SentTouch.model_validate_json(raw)
        except ValueError:
            return None

    async def record_sent(self, recipient_id: str, sent: SentTouch, *, partition: int) -> None:
        """Remember a sent message, in `partition` (its recipient's; any worker may write it)."""
        await self.store.put(sent_key(recipient_id, sent.message_id), sent.model_dump_json().encode(),
                             partition=partition)

    async def mark_converted(self, recipient_id: str, sent: SentTouch, goal_event_id: str, *,
                             partition: int | None = None) -> None:
        """Its `converted` status is out: a goal event read again converts it no more."""
        marked = sent.model_copy(update={"converted": goal_event_id})
        await self.store.put(sent_key(recipient_id, sent.message_id), marked.model_dump_json().encode(),
                             partition=partition)
