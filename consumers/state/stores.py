"""Herald's durable state, one store per concern; `TopicStore`s in workers, `MemoryStore`s in unit tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields

from consumers.state.kvstore import KeyValueStore, MemoryStore, TopicStore
from schemas.settings import Settings


@dataclass
class State:
    dedupe: KeyValueStore  # idempotency keys seen at the door
    caps: KeyValueStore  # frequency-cap counters
    schedules: KeyValueStore  # messages waiting for their time
    sends: KeyValueStore  # the send ledger (pending/sent/…), by message id
    preferences: KeyValueStore  # the consent ledger, by recipient id (herald.preferences)
    contacts: KeyValueStore  # open questions and address -> recipient, by address HMAC
    documents: KeyValueStore  # dispatches whose document a signed link serves, by message id
    webhooks: KeyValueStore  # vendors' webhook delivery ids already applied (replays), by hash; value first-seen time
    consent: KeyValueStore  # what each address said itself (STOP, unsubscribe), by address HMAC; never swept

    @classmethod
    def on_topics(cls, settings: Settings) -> State:
        return cls(dedupe=TopicStore(settings, "state.dedupe"), caps=TopicStore(settings, "state.caps"),
                   schedules=TopicStore(settings, "state.schedules"), sends=TopicStore(settings, "state.sends"),
                   preferences=TopicStore(settings, "preferences"),
                   contacts=TopicStore(settings, "state.contacts"),
                   documents=TopicStore(settings, "state.documents"),
                   webhooks=TopicStore(settings, "state.webhooks"),
                   consent=TopicStore(settings, "state.consent"))

    @classmethod
    def in_memory(cls) -> State:
        return cls(**{f.name: MemoryStore() for f in fields(cls)})

    def stores(self) -> list[KeyValueStore]:
        return [getattr(self, f.name) for f in fields(self)]

    async def ready(self) -> None:
        """Every store caught up (they start in parallel)."""
        await asyncio.gather(*(store.ready() for store in self.stores()))

    async def stop(self) -> None:
        for store in self.stores():
            if isinstance(store, TopicStore):
                await store.stop()
