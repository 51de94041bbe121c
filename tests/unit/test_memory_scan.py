"""A worker's memory does not grow with the state it holds: scans over every key of a store (the retention sweep,
`list_keys`) read the copy on disk a page at a time, and leave the store's cache to the keys in use (issue 13)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.state.kvstore import MemoryStore, TopicStore
from consumers.state.localdb import LocalDb
from consumers.state.retention import Janitor, Rule, dedupe_expiry
from tests.conftest import unique_settings

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Generated(MemoryStore):
    """`n` idempotency keys made up as they are read, so the store itself holds nothing: what a sweep allocates
    is the sweep's own. Counts `get` calls (each one a trip through a `TopicStore`'s cache)."""

    def __init__(self, n: int, seen: datetime) -> None:
        super().__init__()
        self.n = n
        self.value = seen.isoformat().encode()
        self.gets = 0
        self.deleted: list[str] = []

    def get(self, key: str) -> bytes | None:
        self.gets += 1
        return self.value

    def list_keys(self) -> Iterator[str]:
        return (f"idem-{i:012d}-{'x' * 40}" for i in range(self.n))

    def items(self) -> Iterator[tuple[str, bytes]]:
        return ((key, self.value) for key in self.list_keys())

    async def delete(self, key: str, *, partition: int | None = None) -> None:
        self.deleted.append(key)


async def test_memory__a_sweep_over_100_000_keys_holds_a_page_not_every_key() -> None:
    store = Generated(100_000, T0)
    janitor = Janitor([Rule("state.dedupe", store, dedupe_expiry(DAY))], clock=lambda: T0 + DAY / 2,
                      owns=lambda _key: True)
    tracemalloc.start()
    try:
        swept = await janitor.sweep()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert swept.kept["state.dedupe"] == 100_000 and swept.deleted["state.dedupe"] == 0
    # A list of every key alone is ~10 MB here (and 30 MB for 200,000 keys in a worker's store).
    assert peak < 1_000_000, f"the sweep peaked at {peak / 2**20:.1f} MB"


async def test_memory__a_sweep_reads_values_from_its_scan_and_confirms_only_what_it_deletes() -> None:
    store = Generated(1000, T0)
    kept = Janitor([Rule("state.dedupe", store, dedupe_expiry(DAY))], clock=lambda: T0 + DAY / 2,
                   owns=lambda _key: True)
    await kept.sweep()
    assert store.gets == 0  # a `get` per key would push every key in use out of a TopicStore's cache
    gone = Janitor([Rule("state.dedupe", store, dedupe_expiry(DAY))], clock=lambda: T0 + 2 * DAY,
                   owns=lambda key: key.endswith("1-" + "x" * 40))
    swept = await gone.sweep()
    assert swept.deleted["state.dedupe"] == len(store.deleted) == store.gets == 100


async def test_memory__a_sweep_keeps_an_entry_rewritten_after_its_page_was_read() -> None:
    class Rewritten(MemoryStore):
        def items(self) -> Iterator[tuple[str, bytes]]:
            return iter([("idem-1", T0.isoformat().encode())])  # the page: old, expired

    store = Rewritten()
    await store.put("idem-1", (T0 + 3 * DAY).isoformat().encode())  # now: written again since
    swept = await Janitor([Rule("state.dedupe", store, dedupe_expiry(DAY))], clock=lambda: T0 + 2 * DAY,
                          owns=lambda _key: True).sweep()
    assert swept.deleted["state.dedupe"] == 0 and store.get("idem-1") is not None


def test_memory__localdb_pages_every_key_once_in_key_order_across_deletes(tmp_path: Path) -> None:
    db = LocalDb(tmp_path / "s.sqlite")
    db.apply([(i % 3, f"k{i:04d}", str(i).encode()) for i in range(1000)], {0: 1})
    db.apply([(1, "k0003", b"also in partition 1")], {1: 2})  # a key in two partitions' rows
    seen: list[str] = []
    after: str | None = None
    while page := db.page({0, 1}, after, 64):
        assert len(page) <= 64
        seen += [key for key, _ in page]
        after = page[-1][0]
        db.apply([(int(after[1:]) % 3, after, None)], {0: 3})  # deleted between pages: nothing is skipped
    expected = [f"k{i:04d}" for i in range(1000) if i % 3 in (0, 1)]
    assert sorted(set(seen)) == expected and seen == sorted(seen)
    assert db.key_page({2}, None, 3) == ["k0002", "k0005", "k0008"]
    assert db.page(set(), None, 10) == []


async def test_memory__topicstore_scans_disk_in_pages_with_its_own_writes_and_no_cache(tmp_path: Path) -> None:
    store = TopicStore(unique_settings(tmp_path), "state.test", directory=tmp_path)
    db = store._db = LocalDb(tmp_path / "copy.sqlite")
    n = 1507  # over three pages of SCAN_PAGE (500)
    db.apply([(i % 2, f"k{i:05d}", b"disk") for i in range(n)], {0: 1, 1: 1})
    db.apply([(5, "elsewhere", b"not served"), (1, "k00002", b"also in partition 1")], {5: 1})
    store._served = {0, 1}
    # Written here, not read back yet: a new key, a changed one and a deleted one.
    store._overlay = {"new": (1, 0, b"mine"), "k00003": (2, 1, b"changed"), "k00004": (3, 0, None)}
    items = dict(store.items())
    assert len(items) == n - 1 + 1 and items["new"] == b"mine" and items["k00003"] == b"changed"
    assert "k00004" not in items and "elsewhere" not in items and items["k00010"] == b"disk"
    assert sorted(store.list_keys()) == sorted(items)
    assert not store._cache  # a scan never fills the cache
    assert store.size() == len(items)  # the gauge counts the same writes not read back yet
    db.close()


def test_memory__topicstore_list_keys_starts_without_reading_every_key(tmp_path: Path) -> None:
    store = TopicStore(unique_settings(tmp_path), "state.test", directory=tmp_path)
    db = store._db = LocalDb(tmp_path / "copy.sqlite")
    db.apply([(0, f"idem-{i:012d}-{'x' * 40}", b"v") for i in range(20_000)], {0: 1})
    store._served = {0}
    tracemalloc.start()
    try:
        first = next(iter(store.list_keys()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first == f"idem-{0:012d}-{'x' * 40}"
    assert peak < 300_000, f"{peak / 2**20:.1f} MB to read one key"  # every key at once: ~2.5 MB here
    db.close()
