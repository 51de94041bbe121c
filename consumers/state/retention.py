"""State retention: entries in Herald's stores stop mattering at a time they carry, and the janitor deletes them.

State that is never deleted is a leak that grows with traffic (on disk, and in the time a partition takes to be
read again after a rebalance). Each rule says when an entry may go:

- idempotency keys: `dedupe_window` after they were seen;
- frequency-cap counters: when their window ends (at once if their category is no longer capped);
- send records: `receipt_grace` after the message expires. A dispatch past its expiry is never sent, so the
  ledger no longer has a duplicate to prevent; the grace keeps it for late receipts (a WhatsApp "read" days on);
- open questions: `question_max_age` after they were asked (an older answer is no longer matched to them);
- documents: when the message, and so the signed link, expires;
- webhook delivery ids (`state.webhooks`, consumers/inbound/hearback.py): `dedupe_window` after they were first applied
  (values are first-seen times, as for idempotency keys; a replay after that is applied again).
- conversion ledger entries (`state.conversions`, consumers/state/conversions.py `goals_expiry`): when their
  conversion window is over.

Preferences are never swept (they are the person's), and schedules delete themselves when they fire. Each
worker sweeps only the keys it owns (a partitioned store's keys are all its own; a replicated store's, those
whose hash falls in its partitions), so N workers do not each write the same tombstone; a key that nobody owns
during a rebalance waits for the next sweep. Rules read values with orjson, not pydantic: a sweep touches every
entry, and only one or two fields of each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from consumers.observe.metrics import Metrics
from consumers.state.kvstore import KeyValueStore
from schemas.catalog import Catalog, Category

log = logging.getLogger(__name__)

# When an entry may be deleted, from its key and value; None keeps it. Raising ValueError, KeyError or TypeError
# means the value is unreadable: it is kept and counted, never guessed about.
Expiry = Callable[[str, bytes], datetime | None]
UNREADABLE = (ValueError, KeyError, TypeError)
YIELD_EVERY = 500  # keys between yields to the event loop, so a large sweep never stalls the agents


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def dedupe_expiry(window: timedelta) -> Expiry:
    """Values are the ISO time the key was first seen."""
    return lambda _key, value: _time(value.decode()) + window


def caps_expiry(catalog: Catalog) -> Expiry:
    """Keys are `recipient|category|window index` (consumers/pipeline/policy.py `cap_key`)."""
    def expiry(key: str, _value: bytes) -> datetime | None:
        _, category, index = key.rsplit("|", 2)
        try:
            cap = catalog.frequency_caps.get(Category(category))
        except ValueError:  # a category the catalog no longer has
            cap = None
        if cap is None:
            return datetime.min.replace(tzinfo=UTC)
        seconds = cap.per.total_seconds()
        return datetime.fromtimestamp((int(index) + 1) * seconds, UTC)
    return expiry


def sends_expiry(grace: timedelta) -> Expiry:
    """Values are `SendRecord` JSON (consumers/state/sends.py): gone `grace` after the later of expiry and last
    update."""
    def expiry(_key: str, value: bytes) -> datetime | None:
        record = orjson.loads(value)
        updated = _time(record["updated_at"])
        expires = record["dispatch"].get("expires_at")
        return max(updated, _time(expires) if expires else updated) + grace
    return expiry


def questions_expiry(max_age: timedelta) -> Expiry:
    """Values are `Question` JSON (consumers/inbound/replies.py)."""
    return lambda _key, value: _time(orjson.loads(value)["asked_at"]) + max_age


def documents_expiry(_key: str, value: bytes) -> datetime | None:
    """Values are `Dispatch` JSON; a dispatch without an expiry is kept."""
    expires = orjson.loads(value).get("expires_at")
    return _time(expires) if expires else None


def _expired(expiry: Expiry, key: str, value: bytes | None, now: datetime) -> bool:
    """Whether the entry as it is now (a scan's page may be older) has expired; False when it is gone or
    unreadable."""
    if value is None:
        return False
    try:
        expires = expiry(key, value)
    except UNREADABLE:
        return False
    return expires is not None and expires <= now


@dataclass(frozen=True)
class Rule:
    name: str  # the metric label: the store's topic short name
    store: KeyValueStore
    expiry: Expiry | None  # None: never swept, only counted
    partitioned: bool = False  # the store holds only this worker's partitions: every key it lists is its to sweep


@dataclass(frozen=True)
class Sweep:
    """What one pass did, per store."""

    deleted: dict[str, int]
    kept: dict[str, int]
    unreadable: dict[str, int]


class Janitor:
    """Deletes expired entries from the stores it is given, on the keys `owns` says are this worker's."""

    def __init__(self, rules: list[Rule], *, clock: Callable[[], datetime], owns: Callable[[str], bool],
                 metrics: Metrics | None = None) -> None:
        self.rules = rules
        self.clock = clock
        self.owns = owns
        self.metrics = metrics

    async def sweep(self) -> Sweep:
        now = self.clock()
        result = Sweep({}, {}, {})
        for rule in self.rules:
            deleted = unreadable = seen = 0
            # Streamed from the store (a page at a time from disk): a sweep's memory does not grow with the
            # number of keys, nor does it push the keys in use out of the store's cache.
            entries = rule.store.items() if rule.expiry is not None else ((k, b"") for k in rule.store.list_keys())
            for key, value in entries:
                seen += 1
                if seen % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                if rule.expiry is None or not (rule.partitioned or self.owns(key)):
                    continue
                try:
                    expires = rule.expiry(key, value)
                except UNREADABLE:
                    unreadable += 1
                    continue
                if expires is not None and expires <= now and _expired(rule.expiry, key, rule.store.get(key), now):
                    await rule.store.delete(key)
                    deleted += 1
            result.deleted[rule.name], result.unreadable[rule.name] = deleted, unreadable
            result.kept[rule.name] = seen - deleted
            if self.metrics is not None:
                self.metrics.state_entries.labels(rule.name).set(result.kept[rule.name])
                self.metrics.state_expired.labels(rule.name).inc(deleted)
        if any(result.deleted.values()) or any(result.unreadable.values()):
            log.info("state swept", extra={"deleted": sum(result.deleted.values()),
                                           "unreadable": sum(result.unreadable.values())})
        return result

    async def run(self, interval: float) -> None:
        """Sweep every `interval` seconds until cancelled, the first time one interval after start (a starting
        worker has a backlog to serve first); a failed sweep is logged and the next one tries again."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("state sweep failed")
