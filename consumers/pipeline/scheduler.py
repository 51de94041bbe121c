"""The scheduler: messages that must wait (quiet hours, `sendat`, reminders, retries, receipt checks) are kept in
a `TopicStore` and released when due. They survive restarts because the store does.

An entry lives in the partition of the record that scheduled it (the event's, for a reminder; the dispatch's, for
a retry), and the store is partitioned: a worker holds, and releases, only the entries of the partitions it owns,
so one worker releases each. Time comes from an injectable clock, so tests run on simulated time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from consumers.pipeline.records import Publisher, publish_dispatch
from consumers.pipeline.status import StatusEmitter
from consumers.state.kvstore import KeyValueStore
from schemas.dispatch import Dispatch
from schemas.status import Status

log = logging.getLogger(__name__)

Kind = Literal["dispatch", "receipt_check"]


class ScheduleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    due_at: datetime
    kind: Kind = "dispatch"
    reason: str
    dispatch: Dispatch


def entry_key(kind: Kind, message_id: str, attempt: int) -> str:
    return f"{kind}|{message_id}|{attempt}"


class Scheduler:
    """Adds, cancels and releases scheduled entries."""

    def __init__(self, store: KeyValueStore, publisher: Publisher, statuses: StatusEmitter, *,
                 clock: Callable[[], datetime], owns: Callable[[str], bool] = lambda recipient_id: True,
                 on_receipt_check: Callable[[Dispatch], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.publisher = publisher
        self.statuses = statuses
        self.clock = clock
        self.owns = owns
        self.on_receipt_check = on_receipt_check
        self._parsed: dict[str, tuple[bytes, ScheduleEntry]] = {}

    async def add(self, due_at: datetime, dispatch: Dispatch, reason: str, kind: Kind = "dispatch", *,
                  partition: int | None = None) -> None:
        """Keep `dispatch` until `due_at`, in `partition` (that of the record being handled)."""
        entry = ScheduleEntry(due_at=due_at, kind=kind, reason=reason, dispatch=dispatch)
        # Durable: the record that led here is committed once its handler returns, and this entry is all that
        # is left of the message until it is released.
        await self.store.put(entry_key(kind, dispatch.message_id, dispatch.attempt), entry.model_dump_json().encode(),
                             durable=True, partition=partition)

    def entries(self) -> list[tuple[str, ScheduleEntry]]:
        """Every entry, parsed once per stored version (compared by value: a store on disk hands out new bytes)."""
        found = []
        keys = list(self.store.list_keys())
        for stale in self._parsed.keys() - set(keys):  # released elsewhere, erased, or its partition let go
            del self._parsed[stale]
        for key in keys:
            raw = self.store.get(key)
            if raw is None:
                continue
            cached = self._parsed.get(key)
            if cached is None or cached[0] != raw:
                try:
                    cached = (raw, ScheduleEntry.model_validate_json(raw))
                except ValueError:
                    log.warning("unreadable schedule entry dropped", extra={"key": key})
                    continue
                self._parsed[key] = cached
            found.append((key, cached[1]))
        return found

    async def cancel(self, cancel_keys: list[str]) -> list[Dispatch]:
        """Remove pending messages with these cancel keys; each gets a `cancelled` status."""
        wanted = set(cancel_keys)
        cancelled = []
        for key, entry in self.entries():
            if entry.kind == "dispatch" and entry.dispatch.cancel_key in wanted:
                await self.store.delete(key)
                self._parsed.pop(key, None)
                await self.statuses.for_dispatch(entry.dispatch, Status.CANCELLED, detail="cancelled_by_event")
                cancelled.append(entry.dispatch)
        return cancelled

    async def release_due(self) -> int:
        """Publish every due entry this worker owns, then delete it. Returns how many were released.

        Publishing comes first: a crash in between releases the entry again, and the send is idempotent.
        """
        now = self.clock()
        released = 0
        for key, entry in sorted(self.entries(), key=lambda item: item[1].due_at):
            if entry.due_at > now:
                break
            if not self.owns(entry.dispatch.to.id):
                continue
            d = entry.dispatch
            if entry.kind == "receipt_check":
                if self.on_receipt_check is not None:
                    await self.on_receipt_check(d)
            else:
                await publish_dispatch(self.publisher, d)
            await self.store.delete(key)
            self._parsed.pop(key, None)
            released += 1
        return released

    async def run(self, interval: float = 0.5) -> None:
        """Release due entries forever (a worker task)."""
        while True:
            try:
                await self.release_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler pass failed")
            await asyncio.sleep(interval)

    def pending_by_kind(self) -> dict[Kind, int]:
        """Entries held, by kind (every kind present, 0 when none): the backlog `herald_scheduled_pending` shows.
        Empty when the store cannot be read now (like `pending`, it is only looked at)."""
        counts = dict.fromkeys(get_args(Kind), 0)
        try:
            entries = self.entries()
        except Exception:
            return {}
        for _, entry in entries:
            counts[entry.kind] += 1
        return counts

    def pending(self) -> int:
        with contextlib.suppress(Exception):
            return len(self.entries())
        return 0
