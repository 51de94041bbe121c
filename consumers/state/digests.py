"""Open digests (catalog `digest`): the events of one type collected for one recipient, and one value of the type's
`digest.key`, until the digest is sent (consumers/pipeline/digests.py).

One record per open digest in the partitioned store `herald.state.digests`, keyed by its *slot* (a hash of tenant,
recipient id, type and key value) and kept in the partition of the events that fill it (the recipient's), so a
worker holds, and closes, only the digests of the partitions it owns, and they survive crashes and rebalances as
schedules do. A record is bounded by its digest's `max_events` and `max_bytes`: a full digest is sent at once.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consumers.state.kvstore import KeyValueStore
from schemas.events import Recipient

log = logging.getLogger(__name__)


def digest_slot(tenant: str | None, recipient_id: str, event_type: str, key: str | None) -> str:
    """The store key of the digest collecting `event_type` for a recipient (and key value): one open at a time."""
    basis = "\x1f".join((tenant or "", recipient_id, event_type, "" if key is None else f"={key}"))
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def digest_id(slot: str, first_event: str) -> str:
    """`dig-` + 24 hex digits: a digest's id, from its slot and its first event's dedupe key (each event is
    collected once, so no two digests share one; a replay that opens the digest again gets the same id)."""
    return "dig-" + hashlib.sha256(f"{slot}|{first_event}".encode()).hexdigest()[:24]


class Collected(BaseModel):
    """One event in a digest."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="The event's dedupe key (a hash): a replayed event is collected once.")
    event_id: str
    payload: dict[str, Any]
    size: int = Field(ge=0, description="Bytes of the payload as JSON, counted against `max_bytes`.")


class OpenDigest(BaseModel):
    """A digest being collected: sent when `due_at` passes or when it is full."""

    model_config = ConfigDict(extra="forbid")

    id: str
    tenant: str | None
    event_type: str
    key: str | None = None  # the value of the type's `digest.key`, when it has one
    to: Recipient  # from the latest event: its message goes to the addresses the person has now
    opened_at: datetime
    due_at: datetime
    max_events: int
    max_bytes: int
    events: list[Collected] = Field(default_factory=list)
    size: int = 0

    @property
    def full(self) -> bool:
        return len(self.events) >= self.max_events or self.size >= self.max_bytes

    def holds(self, event_key: str) -> bool:
        return any(c.key == event_key for c in self.events)

    def fits(self, size: int) -> bool:
        """Whether an event of `size` bytes may join (an empty digest takes any one: it is then full)."""
        return not self.events or self.size + size <= self.max_bytes

    def add(self, event: Collected, to: Recipient) -> OpenDigest:
        return self.model_copy(update={"events": [*self.events, event], "size": self.size + event.size, "to": to})

    def payloads(self) -> list[dict[str, Any]]:
        return [c.payload for c in self.events]


class DigestStore:
    """Open digests over a `KeyValueStore`; remembers when each is due between passes, so a pass parses only the
    digests that changed since the last one."""

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store
        self._due: dict[str, tuple[int, datetime, bool]] = {}  # slot -> (hash of the value, due_at, full)

    def get(self, slot: str) -> OpenDigest | None:
        raw = self.store.get(slot)
        return None if raw is None else self._parse(slot, raw)

    @staticmethod
    def _parse(slot: str, raw: bytes) -> OpenDigest | None:
        try:
            return OpenDigest.model_validate_json(raw)
        except ValidationError:
            log.warning("unreadable digest dropped", extra={"key": slot})
            return None

    async def put(self, slot: str, digest: OpenDigest, *, partition: int | None = None) -> None:
        """Durable: the events it holds have no other record once their own are committed."""
        await self.store.put(slot, digest.model_dump_json().encode(), durable=True, partition=partition)

    async def delete(self, slot: str) -> None:
        await self.store.delete(slot)
        self._due.pop(slot, None)

    def ready_to_close(self, now: datetime) -> list[str]:
        """Slots whose digest is due or full, soonest first."""
        found: list[tuple[datetime, str]] = []
        seen: set[str] = set()
        for slot, raw in self.store.items():
            seen.add(slot)
            fingerprint = hash(raw)
            cached = self._due.get(slot)
            if cached is None or cached[0] != fingerprint:
                digest = self._parse(slot, raw)
                if digest is None:
                    continue
                cached = (fingerprint, digest.due_at, digest.full)
                self._due[slot] = cached
            if cached[2] or cached[1] <= now:
                found.append((cached[1], slot))
        for gone in self._due.keys() - seen:  # closed elsewhere, erased, or its partition let go
            del self._due[gone]
        return [slot for _, slot in sorted(found)]

    def count(self) -> int:
        return len(self._due)

    async def erase(self, recipient_id: str) -> int:
        """Delete every open digest for `recipient_id` (`herald forget`): its events are never sent."""
        doomed = [slot for slot, raw in self.store.items()
                  if (digest := self._parse(slot, raw)) is not None and digest.to.id == recipient_id]
        for slot in doomed:
            await self.delete(slot)
        return len(doomed)
