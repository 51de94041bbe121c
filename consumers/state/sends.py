"""The send ledger: what happened to each message, by message id, in a crash-safe `TopicStore`.

It is DESIGN.md's idempotency store (`pending` before a send, `sent` with the provider's id after it, so a
redelivered dispatch is not sent twice) and the memory that outcome-driven fallback needs (a receipt names only
the message; the ledger has its dispatch and the channels left to try).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from consumers.state.kvstore import KeyValueStore
from schemas.dispatch import Dispatch

State = Literal["pending", "sent", "delivered", "failed"]
# A failed message may be sent again (a replayed dead letter); a sent one never.
SENT: frozenset[str] = frozenset({"sent", "delivered"})


class SendRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: State
    dispatch: Dispatch
    provider: str | None = None
    provider_message_id: str | None = None
    updated_at: datetime
    fell_back: bool = False


class SendLedger:
    def __init__(self, store: KeyValueStore, clock: Callable[[], datetime], *,
                 lease: timedelta = timedelta(seconds=60)) -> None:
        self.store = store
        self.clock = clock
        self.lease = lease

    def get(self, message_id: str) -> SendRecord | None:
        raw = self.store.get(message_id)
        return SendRecord.model_validate_json(raw) if raw else None

    def already_sent(self, message_id: str) -> bool:
        record = self.get(message_id)
        return record is not None and record.state in SENT

    def lease_held(self, d: Dispatch) -> datetime | None:
        """When this attempt's `pending` lease ends, if another worker may be sending it right now (or died
        mid-send); None when it is free to send."""
        record = self.get(d.message_id)
        if record is None or record.state != "pending" or record.dispatch.attempt != d.attempt:
            return None
        ends = record.updated_at + self.lease
        return ends if self.clock() < ends else None

    def was_pending(self, d: Dispatch) -> bool:
        """An earlier try of this very attempt started and never finished: sending now may duplicate it."""
        record = self.get(d.message_id)
        return record is not None and record.state == "pending" and record.dispatch.attempt == d.attempt

    async def _write(self, record: SendRecord, *, durable: bool = False) -> None:
        await self.store.put(record.dispatch.message_id, record.model_dump_json().encode(), durable=durable)

    async def pending(self, d: Dispatch) -> None:
        await self._write(SendRecord(state="pending", dispatch=d, updated_at=self.clock()))

    async def sent(self, d: Dispatch, provider: str, provider_message_id: str | None) -> None:
        # Acknowledged before going on: the gap between the provider accepting and this record being safe is
        # the only place a crash can still produce a duplicate.
        await self._write(SendRecord(state="sent", dispatch=d, provider=provider,
                                     provider_message_id=provider_message_id, updated_at=self.clock()), durable=True)

    async def outcome(self, message_id: str, state: State, *, fell_back: bool = False) -> SendRecord | None:
        record = self.get(message_id)
        if record is None:
            return None
        record = record.model_copy(update={"state": state, "updated_at": self.clock(),
                                           "fell_back": record.fell_back or fell_back})
        await self._write(record)
        return record
