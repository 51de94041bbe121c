"""Herald's durable state, one store per concern; `TopicStore`s in workers, `MemoryStore`s in unit tests.

What grows with every event or message is *partitioned* with the events and dispatches (dedupe keys, caps and
schedules by the record being handled, the send ledger by message id), so each worker holds the share it owns;
what a webhook or a link may need on any worker is *replicated* (preferences, consent, contacts, documents,
webhook ids). Both kinds live on disk with a bounded cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from consumers.ownership import Ownership
from consumers.state.kvstore import KeyValueStore, MemoryStore, SharedProducer, TopicStore
from schemas.settings import Settings

PARTITIONED = frozenset({"dedupe", "caps", "schedules", "sends", "digests", "conversions"})


@dataclass
class State:
    dedupe: KeyValueStore  # idempotency keys seen at the door, in the event's partition
    caps: KeyValueStore  # frequency-cap counters, in the event's partition
    schedules: KeyValueStore  # messages waiting for their time, in the partition of the record that scheduled them
    sends: KeyValueStore  # the send ledger (pending/sent/…), by message id (the dispatch's partition)
    preferences: KeyValueStore  # the consent ledger, by recipient id (herald.preferences)
    contacts: KeyValueStore  # open questions and address -> recipient, by address HMAC
    documents: KeyValueStore  # dispatches whose document a signed link serves, by message id
    webhooks: KeyValueStore  # vendors' webhook delivery ids already applied (replays), by hash; value first-seen time
    consent: KeyValueStore  # what each address said itself (STOP, unsubscribe), by address HMAC; never swept
    api_requests: KeyValueStore  # HTTP API answers by hash of tenant and Idempotency-Key (consumers/inbound/api.py)
    status_webhooks: KeyValueStore  # outbound status webhook registrations, by tenant (state/status_webhooks.py)
    digests: KeyValueStore  # open digests (state/digests.py), in the partition of the events that fill them
    conversions: KeyValueStore  # messages that may still convert (state/conversions.py), in the recipient's partition
    _lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False, repr=False)

    @classmethod
    def on_topics(cls, settings: Settings, *, ownership: Ownership | None = None,
                  directory: Path | None = None) -> State:
        """Stores over Herald's state topics. With `ownership` (a worker) the partitioned stores read only what it
        owns and their copies live in `directory`; without (tools), every store reads everything into a temporary
        copy."""
        lock = contextlib.ExitStack()
        if directory is not None:
            directory = lock.enter_context(_claimed(directory))
        topics = {"preferences": "preferences"}

        # The stores share one producer, except the send ledger: its `sent` record must not queue behind the
        # others' writes (aiokafka keeps one request in flight per broker), or a crash right after a send finds it
        # `pending` more often and sends it again (2,000 events, 5 SIGKILLs, one run each: 4 duplicates shared, 1-2 on
        # its own).
        shared = SharedProducer(settings)

        def store(name: str) -> TopicStore:
            return TopicStore(settings, topics.get(name, f"state.{name}"),
                              ownership=ownership if name in PARTITIONED else None, directory=directory,
                              producer=None if name == "sends" else shared)

        names = [f.name for f in fields(cls) if f.init]
        state = cls(**{name: store(name) for name in names})
        state._lock = lock
        return state

    @classmethod
    def in_memory(cls) -> State:
        return cls(**{f.name: MemoryStore() for f in fields(cls) if f.init})

    def named(self) -> dict[str, KeyValueStore]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def stores(self) -> list[KeyValueStore]:
        return list(self.named().values())

    async def ready(self, partition: int | None = None) -> None:
        """Every store caught up (they start in parallel); with `partition`, on that partition."""
        if partition is not None and all(not isinstance(store, TopicStore) or store.serves(partition)
                                         for store in self.stores()):
            return  # the hot path: once per record
        await asyncio.gather(*(store.ready(partition) for store in self.stores()))

    def sizes(self) -> dict[str, int]:
        """Keys each store holds on this worker (its partitions only, for the partitioned ones)."""
        return {name: store.size() for name, store in self.named().items() if isinstance(store, TopicStore)}

    async def stop(self) -> None:
        for store in self.stores():
            if isinstance(store, TopicStore):
                await store.stop()
        self._lock.close()


def worker_directory(settings: Settings) -> Path:
    """Where a worker keeps its local copies: one folder per host and admin port, so two workers on one machine
    never share one, and a restarted worker finds its own again (fast catch-up)."""
    return Path(settings.data_dir) / "state" / settings.app_id / f"{socket.gethostname()}-{settings.admin_port}"


@contextlib.contextmanager
def _claimed(directory: Path) -> Iterator[Path]:
    """`directory`, locked for this process; a fresh sibling when another live process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):
        candidate = directory if attempt == 0 else directory.with_name(f"{directory.name}-{attempt}")
        candidate.mkdir(parents=True, exist_ok=True)
        handle = os.open(candidate / ".lock", os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            continue
        try:
            yield candidate
        finally:
            os.close(handle)  # closing releases the lock
        return
    raise RuntimeError(f"no free state directory next to {directory}")
