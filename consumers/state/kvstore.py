"""Key-value state that survives crashes on any Kafka-compatible broker: a compacted topic, and its local copy on
disk (consumers/state/localdb.py) with a bounded memory cache.

A store is either *partitioned* (given an `Ownership`): it reads only the partitions this worker owns, which are
the same partition numbers as the events and dispatches it handles, so a recipient's dedupe keys, caps and
schedules, and a message's send record, live with the worker that needs them; or *replicated* (no ownership): every
worker reads every partition (preferences, consent, contacts, documents, webhook ids: what a webhook or a link
arriving at any worker must find).

Why not a Faust table: table recovery from its changelog lost updates in 2 of 3 crash probes on Tansu, because it
trusts ListOffsets "latest" to know when it has caught up. A `TopicStore` does not ask for end offsets: to catch up
on a partition it writes a unique *fence* record to it and reads until it has seen that fence, which proves that
everything written before it has been read. A partition owned before resumes from the offset its local copy was
read to (the "fast catch-up" of a restarted worker); one never read, or not read for `RESUME_WITHIN` (a tombstone
may have been compacted away since), is read again from the beginning.

Writes go to the topic and show locally at once: an *overlay* holds this worker's writes until the reader reads
them back from the topic, so an older record read meanwhile never hides a newer write. Deletes are tombstones, so
compaction keeps the topic as small as the live data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from consumers.ownership import Ownership, partition_for
from consumers.state.keyvalue import KeyValueStore, MemoryStore
from consumers.state.localdb import Change, LocalDb
from consumers.topics import kafka_client_kwargs
from schemas.settings import Settings

__all__ = ["FENCE_PREFIX", "KeyValueStore", "MemoryStore", "TopicStore"]

log = logging.getLogger(__name__)

FENCE_PREFIX = b"__herald_fence__/"
WRITER_HEADER = "herald-writer"
CACHE_KEYS = 2048  # per store: the keys read or written lately (ledger pending -> sent, dedupe check -> put)
SCAN_PAGE = 500  # keys per page of `list_keys` and `items`: what a scan holds in memory, whatever the store's size
RESUME_WITHIN = 12 * 3600.0  # seconds; half of Kafka's default delete.retention.ms (tombstones kept 24 h)


class SharedProducer:
    """One producer for every store of a worker: their writes (a message's ledger records, dedupe key, cap, contact)
    leave in fewer and larger requests than one producer per store would send. Started by its first user, stopped
    by its last."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._users = 0
        self._lock: asyncio.Lock | None = None

    async def acquire(self) -> AIOKafkaProducer:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._producer is None:
                # A short linger batches the burst of ledger writes that concurrent sends make (aiokafka keeps one
                # request in flight per broker, so unbatched `pending` records can hold up a `sent` one). 20,000
                # events with a SIGKILL every 5 s: 11 duplicates with 2 ms; 29 with none.
                producer = AIOKafkaProducer(**kafka_client_kwargs(self.settings), linger_ms=2,
                                            max_request_size=self.settings.max_record_bytes)
                await producer.start()
                self._producer = producer
            self._users += 1
            return self._producer

    async def release(self) -> None:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            self._users -= 1
            if self._users <= 0 and self._producer is not None:
                producer, self._producer = self._producer, None
                with contextlib.suppress(Exception):
                    await producer.stop()


class TopicStore:
    """A compacted topic read into a local copy; see the module docstring."""

    def __init__(self, settings: Settings, short_topic: str, *, ownership: Ownership | None = None,
                 directory: Path | None = None, producer: SharedProducer | None = None) -> None:
        """`directory` holds the local copy (`<topic>.sqlite`); None: a temporary one, removed at `stop`.
        `producer` is shared with the worker's other stores (a producer of its own when None)."""
        self.settings = settings
        self.topic = settings.topic(short_topic)
        self.ownership = ownership
        self.directory = directory
        self._temporary: contextlib.ExitStack | None = None
        self._db: LocalDb | None = None
        self._served: set[int] = set()  # caught up: readable
        self._fences: dict[int, bytes] = {}  # partition -> the fence its catch-up waits for
        self._next: dict[int, int] = {}  # partition -> next offset to apply
        self._changed = asyncio.Condition()
        self._overlay: dict[str, tuple[int, int, bytes | None]] = {}  # key -> (seq, partition, value)
        # A bounded cache in front of the copy on disk: key -> (partition, value), or (None, None) for "absent".
        self._cache: OrderedDict[str, tuple[int | None, bytes | None]] = OrderedDict()
        self._writer = uuid.uuid4().hex.encode()
        self._seq = 0
        self._partitions = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._start: asyncio.Task[None] | None = None
        self._shared = producer or SharedProducer(settings)

    # --- life cycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._start is None:
            self._start = asyncio.create_task(self._started(), name=f"start {self.topic}")
        await asyncio.shield(self._start)

    async def _started(self) -> None:
        kwargs = kafka_client_kwargs(self.settings)
        self._producer = await self._shared.acquire()
        self._consumer = AIOKafkaConsumer(**kwargs, enable_auto_commit=False, auto_offset_reset="earliest")
        await self._consumer.start()
        await self._consumer.topics()
        self._partitions = len(self._consumer.partitions_for_topic(self.topic) or ())
        if not self._partitions:
            raise RuntimeError(f"topic {self.topic} does not exist; run `herald worker` or create topics first")
        self._db = LocalDb(self._path())
        self._reader = asyncio.create_task(self._read(), name=f"read {self.topic}")
        if self.ownership is None:
            await self._take(range(self._partitions))
        else:
            self.ownership.on_change(self._on_change)
            await self._take(self.ownership.partitions)
        log.info("store started", extra={"topic": self.topic, "partitions": sorted(self._fences)})

    def _path(self) -> Path:
        directory = self.directory
        if directory is None:
            import tempfile

            self._temporary = contextlib.ExitStack()
            directory = Path(self._temporary.enter_context(tempfile.TemporaryDirectory(prefix="herald-state-")))
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{self.topic}.sqlite"

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        if self._producer is not None:
            await self._shared.release()
        if self._db is not None:
            self._db.close()
        if self._temporary is not None:
            self._temporary.close()

    # --- partitions -------------------------------------------------------------------------------------------

    async def _on_change(self, assigned: frozenset[int], revoked: frozenset[int]) -> None:
        if revoked:
            await self._release(revoked)
        if assigned:
            await self._take(assigned)

    async def _take(self, partitions: Iterable[int]) -> None:
        """Start catching up on `partitions`: resume each from its local position, or read it from the beginning;
        it is served once the reader meets its fence."""
        assert self._consumer is not None and self._producer is not None and self._db is not None
        new = sorted(set(partitions) - self._served - set(self._fences))
        if not new:
            return
        tps = [TopicPartition(self.topic, p) for p in new]
        beginnings = await self._consumer.beginning_offsets(tps)
        for tp in tps:
            position = self._db.position(tp.partition)
            if position is None or position[0] < beginnings[tp] or time.time() - position[1] > RESUME_WITHIN:
                self._db.drop(tp.partition)
                self._next[tp.partition] = beginnings[tp]
            else:
                self._next[tp.partition] = position[0]
            self._fences[tp.partition] = FENCE_PREFIX + uuid.uuid4().hex.encode() + f"/{tp.partition}".encode()
        self._reassign()
        for p in new:
            await self._producer.send_and_wait(self.topic, b"", key=self._fences[p], partition=p)

    async def _release(self, partitions: Iterable[int]) -> None:
        """Stop serving and reading `partitions`; their local copy stays, to resume from should they come back."""
        gone = set(partitions)
        async with self._changed:
            self._served -= gone
            for p in gone:
                self._fences.pop(p, None)
                self._next.pop(p, None)
            self._overlay = {k: v for k, v in self._overlay.items() if v[1] not in gone}
            self._cache.clear()
            self._changed.notify_all()
        self._reassign()

    def _reassign(self) -> None:
        """Read exactly the partitions served or catching up, each from the next offset to apply."""
        assert self._consumer is not None
        wanted = sorted(self._next)
        self._consumer.assign([TopicPartition(self.topic, p) for p in wanted])
        for p in wanted:
            self._consumer.seek(TopicPartition(self.topic, p), self._next[p])

    # --- reading ------------------------------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            if not self._next:
                await asyncio.sleep(0.1)  # nothing assigned (yet)
                continue
            try:
                batches = await self._consumer.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker hiccup must not stop the replica; the next poll retries
                log.exception("store read failed", extra={"topic": self.topic})
                await asyncio.sleep(0.5)
                continue
            for tp, records in batches.items():
                if tp.partition in self._next and records:
                    await self._apply(tp.partition, records)

    async def _apply(self, partition: int, records: Sequence[ConsumerRecord]) -> None:
        assert self._db is not None
        changes: list[Change] = []
        caught_up = False
        for record in records:
            if record.offset < self._next[partition]:
                continue  # read before a seek took effect
            key: bytes | None = record.key
            if key is None:
                continue
            if key.startswith(FENCE_PREFIX):
                caught_up = caught_up or (record.value is not None and self._fences.get(partition) == key)
                continue
            name = key.decode()
            mine = dict(record.headers or ()).get(WRITER_HEADER)
            if mine is not None and mine.startswith(self._writer + b"/"):
                pending = self._overlay.get(name)
                if pending is not None and pending[0] == int(mine.rsplit(b"/", 1)[1]):
                    del self._overlay[name]  # read back: the local copy has it now
            changes.append((partition, name, record.value))
            if name in self._cache and partition in self._served:
                self._cache[name] = (partition if record.value is not None else None, record.value)
        self._next[partition] = records[-1].offset + 1
        self._db.apply(changes, {partition: self._next[partition]})
        if caught_up:
            assert self._producer is not None
            fence = self._fences[partition]
            await self._producer.send(self.topic, None, key=fence, partition=partition)  # compaction removes it
            async with self._changed:
                self._fences.pop(partition, None)
                self._served.add(partition)
                self._cache.clear()  # "absent" answers may be wrong now that this partition is read
                self._changed.notify_all()
            log.info("store partition caught up", extra={"topic": self.topic, "partition": partition})

    async def ready(self, partition: int | None = None) -> None:
        """Returns once `partition` (every partition this store reads, when None) is caught up: everything written
        to it before it was taken has been read. Starts the store if needed."""
        await self.start()
        if partition is not None and partition in self._served:
            return  # the hot path: once per record
        async with self._changed:
            if partition is None:
                await self._changed.wait_for(lambda: not self._fences)
            elif self.ownership is None:
                await self._changed.wait_for(lambda: partition in self._served or self._partitions <= partition)
            else:
                await self._changed.wait_for(lambda: partition in self._served)

    def serves(self, partition: int) -> bool:
        """Whether `partition` is caught up here now (the check `ready` starts with)."""
        return partition in self._served or (self.ownership is None and 0 < self._partitions <= partition)

    @property
    def served(self) -> frozenset[int]:
        return frozenset(self._served)

    def size(self) -> int:
        """Keys in the partitions served here (the state this worker holds), counting this worker's own writes not
        read back yet, as `get` and `items` do: a busy changelog reader must not make the gauge lag the sends."""
        if self._db is None:
            return 0
        size = self._db.count(self._served)
        for key, (_, _, value) in list(self._overlay.items()):
            on_disk = self._db.lookup(key, self._served) is not None
            size += (value is not None and not on_disk) - (value is None and on_disk)
        return size

    # --- the KeyValueStore interface ------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        pending = self._overlay.get(key)
        if pending is not None:
            return pending[2]
        return self._cached(key)[1]

    def _cached(self, key: str) -> tuple[int | None, bytes | None]:
        """(partition, value) of a key from the cache, else from the copy on disk (then cached)."""
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        found = self._db.lookup(key, self._served) if self._db is not None else None
        entry: tuple[int | None, bytes | None] = found if found is not None else (None, None)
        self._cache[key] = entry
        if len(self._cache) > CACHE_KEYS:
            self._cache.popitem(last=False)
        return entry

    async def put(self, key: str, value: bytes, *, durable: bool = False, partition: int | None = None) -> None:
        """Set a key. `durable` waits for the broker's acknowledgement (a crash right after loses nothing)."""
        await self._write(key, value, durable=durable, partition=partition)

    async def delete(self, key: str, *, partition: int | None = None) -> None:
        await self._write(key, None, durable=False, partition=partition)

    def _partition_of(self, key: str) -> int:
        """Where a key already lives (it stays there), else where its hash puts it."""
        pending = self._overlay.get(key)
        if pending is not None:
            return pending[1]
        found = self._cached(key)[0]
        return partition_for(key, self._partitions) if found is None else found

    async def _write(self, key: str, value: bytes | None, *, durable: bool, partition: int | None) -> None:
        assert self._producer is not None, "start() the store first"
        p = self._partition_of(key) if partition is None else partition
        self._seq += 1
        if p in self._next:  # read here: shown at once, until the reader reads it back
            self._overlay[key] = (self._seq, p, value)
        headers = [(WRITER_HEADER, self._writer + b"/" + str(self._seq).encode())]
        sent = await self._producer.send(self.topic, value, key=key.encode(), partition=p, headers=headers)
        if durable:
            await sent

    def list_keys(self) -> Iterator[str]:
        """Every key, read from disk a page at a time (see `items`)."""
        return (key for key, _ in self._scan(values=False))

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every (key, value), read from disk a page at a time past the cache: a sweep over every key holds one
        page in memory, however many keys the store has, and leaves the cache to the keys in use. This worker's
        writes not read back yet count; a key written while the scan runs may or may not show."""
        return ((key, value) for key, value in self._scan(values=True) if value is not None)

    def _scan(self, *, values: bool) -> Iterator[tuple[str, bytes | None]]:
        pending = dict(self._overlay)  # own writes: they win over the copy on disk, and come last
        after: str | None = None
        while self._db is not None:
            page: Sequence[tuple[str, bytes | None]] = (
                self._db.page(self._served, after, SCAN_PAGE) if values
                else [(key, None) for key in self._db.key_page(self._served, after, SCAN_PAGE)])
            for key, value in page:
                if key != after and key not in pending:  # a key in two partitions' rows shows once
                    yield key, value
                after = key
            if len(page) < SCAN_PAGE:
                break
        for key, (_, _, value) in pending.items():
            if value is not None:
                yield key, value

    async def flush(self) -> None:
        if self._producer is not None:
            await self._producer.flush()
