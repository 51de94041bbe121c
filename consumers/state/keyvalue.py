"""The interface stages need from durable state, and the in-memory store unit tests use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class KeyValueStore(Protocol):
    """What stages need from durable state; `MemoryStore` for tests, `TopicStore` in workers.

    `partition` on a write places the key in that partition of the store's topic (the partition of the record
    being handled, so the state of a recipient lives where its events do); without it, a key stays where it is,
    and a new one goes where its own hash puts it, like a Kafka producer's default partitioner.
    `ready(partition)` returns once that partition's state is here. `list_keys` and `items` iterate over every key
    (with its value) without holding them all in memory at once (a `TopicStore` reads them from disk a page at a
    time), and without filling a cache.
    """

    async def ready(self, partition: int | None = None) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, *, durable: bool = False, partition: int | None = None) -> None: ...

    async def delete(self, key: str, *, partition: int | None = None) -> None: ...

    def list_keys(self) -> Iterator[str]: ...

    def items(self) -> Iterator[tuple[str, bytes]]: ...


class MemoryStore:
    """A `KeyValueStore` in a dict: for unit tests and agents under `test_context`. It owns every partition."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def ready(self, partition: int | None = None) -> None:
        return None

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def put(self, key: str, value: bytes, *, durable: bool = False, partition: int | None = None) -> None:
        self.data[key] = value

    async def delete(self, key: str, *, partition: int | None = None) -> None:
        self.data.pop(key, None)

    def list_keys(self) -> Iterator[str]:
        return iter(list(self.data))

    def items(self) -> Iterator[tuple[str, bytes]]:
        return iter(list(self.data.items()))
