"""Key-value state that survives crashes on any Kafka-compatible broker: a compacted topic, replicated in full
into every worker's memory.

Why not a Faust table: table recovery from its changelog lost updates in 2 of 3 crash probes on Tansu, because it
trusts ListOffsets "latest" to know when it has caught up. A `TopicStore` does not ask for end offsets: to catch up
it writes a unique *fence* record to every partition and reads until it has seen all of its own fences, which
proves that everything written before them has been read. Writes apply locally at once and go to the topic; every
other worker applies them from its background reader. Deletes are tombstones, so compaction keeps the topic as
small as the live data. Fully replicated state suits per-person data (preferences, contacts, dedupe keys,
schedules); it is not meant for bulk data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumers.topics import kafka_client_kwargs
from schemas.settings import Settings

log = logging.getLogger(__name__)

FENCE_PREFIX = b"__herald_fence__/"


class KeyValueStore(Protocol):
    """What stages need from durable state; `MemoryStore` for tests, `TopicStore` in workers."""

    async def ready(self) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, *, durable: bool = False) -> None: ...

    async def delete(self, key: str) -> None: ...

    def list_keys(self) -> Iterator[str]: ...


class MemoryStore:
    """A `KeyValueStore` in a dict: for unit tests and agents under `test_context`."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def ready(self) -> None:
        return None

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def put(self, key: str, value: bytes, *, durable: bool = False) -> None:
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def list_keys(self) -> Iterator[str]:
        return iter(list(self.data))


class TopicStore:
    """A compacted topic read in full by every worker; see the module docstring."""

    def __init__(self, settings: Settings, short_topic: str) -> None:
        self.settings = settings
        self.topic = settings.topic(short_topic)
        self.data: dict[str, bytes] = {}
        self._fences: set[bytes] = set()
        self._caught_up = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        kwargs = kafka_client_kwargs(self.settings)
        # A short linger batches the burst of ledger writes that concurrent sends make (aiokafka keeps one request
        # in flight per broker, so unbatched `pending` records can hold up a `sent` one). 20,000 events with a
        # SIGKILL every 5 s: 11 duplicates with 2 ms; 29 with none (that run also swept state at each start).
        self._producer = AIOKafkaProducer(**kwargs, linger_ms=2, max_request_size=self.settings.max_record_bytes)
        self._consumer = AIOKafkaConsumer(**kwargs, enable_auto_commit=False, auto_offset_reset="earliest")
        await self._producer.start()
        await self._consumer.start()
        await self._consumer.topics()
        partitions = sorted(self._consumer.partitions_for_topic(self.topic) or ())
        if not partitions:
            raise RuntimeError(f"topic {self.topic} does not exist; run `herald worker` or create topics first")
        assigned = [TopicPartition(self.topic, p) for p in partitions]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        self._reader = asyncio.create_task(self._read(), name=f"read {self.topic}")
        await self._fence(partitions)
        log.info("store caught up", extra={"topic": self.topic, "keys": len(self.data)})

    async def _fence(self, partitions: list[int]) -> None:
        assert self._producer is not None
        fences = {FENCE_PREFIX + uuid.uuid4().hex.encode() + f"/{p}".encode(): p for p in partitions}
        self._fences = set(fences)
        for key, partition in fences.items():
            await self._producer.send_and_wait(self.topic, b"", key=key, partition=partition)
        await self._caught_up.wait()
        for key, partition in fences.items():  # tombstones, so compaction removes the fences
            await self._producer.send(self.topic, None, key=key, partition=partition)

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker hiccup must not stop the replica; the next poll retries
                log.exception("store read failed", extra={"topic": self.topic})
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for record in records:
                    self._apply(record.key, record.value)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if key.startswith(FENCE_PREFIX):
            if value is not None and key in self._fences:
                self._fences.discard(key)
                if not self._fences:
                    self._caught_up.set()
            return
        name = key.decode()
        if value is None:
            self.data.pop(name, None)
        else:
            self.data[name] = value

    async def ready(self) -> None:
        """Returns once the replica holds everything written before `start` (starts it if needed)."""
        await self.start()
        await self._caught_up.wait()

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def put(self, key: str, value: bytes, *, durable: bool = False) -> None:
        """Set a key. `durable` waits for the broker's acknowledgement (a crash right after loses nothing)."""
        assert self._producer is not None, "start() the store first"
        self.data[key] = value
        if durable:
            await self._producer.send_and_wait(self.topic, value, key=key.encode())
        else:
            await self._producer.send(self.topic, value, key=key.encode())

    async def delete(self, key: str) -> None:
        assert self._producer is not None, "start() the store first"
        self.data.pop(key, None)
        await self._producer.send(self.topic, None, key=key.encode())

    def list_keys(self) -> Iterator[str]:
        return iter(list(self.data))

    async def flush(self) -> None:
        if self._producer is not None:
            await self._producer.flush()

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for client in (self._producer, self._consumer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
