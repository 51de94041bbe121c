"""TopicStore on the embedded broker: state written by one worker is there for every other, and after a restart,
without trusting ListOffsets (Faust's table recovery lost updates here); a partitioned store holds only the
partitions its worker owns, takes one over on a rebalance and resumes its own from disk."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from consumers.ownership import Ownership, partition_for
from consumers.state.kvstore import TopicStore
from schemas.settings import Settings

pytestmark = pytest.mark.integration


async def test_kvstore__a_new_replica_sees_every_write_and_delete(stack) -> None:  # type: ignore[no-untyped-def]
    a = TopicStore(stack.settings, "state.dedupe")
    await a.ready()
    for i in range(500):
        await a.put(f"k{i}", f"v{i}".encode())
    await a.delete("k7")
    await a.put("k8", b"changed")
    await a.flush()
    b = TopicStore(stack.settings, "state.dedupe")
    await b.ready()
    try:
        assert len(list(b.list_keys())) == 499 and b.get("k7") is None and b.get("k8") == b"changed"
        await a.put("live", b"1")  # a running replica follows the other's writes
        for _ in range(100):
            if b.get("live") == b"1":
                break
            await asyncio.sleep(0.05)
        assert b.get("live") == b"1"
    finally:
        await a.stop()
        await b.stop()


async def test_kvstore__writes_survive_a_sigkilled_writer(stack) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = stack.settings
    script = textwrap.dedent("""
        import asyncio, os, sys
        from consumers.state.kvstore import TopicStore
        from schemas.settings import Settings
        async def main():
            store = TopicStore(Settings(), "state.sends")
            await store.ready()
            for i in range(300):
                await store.put(f"key-{i}", b"sent")
            await store.flush()
            print("flushed", flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
    """)
    env = {**os.environ, **settings.as_env()}
    writer = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(writer.stdout.readline), 60)  # type: ignore[union-attr]
        assert line.strip() == "flushed"
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    finally:
        if writer.poll() is None:
            writer.kill()
    reader = TopicStore(settings, "state.sends")
    await reader.ready()
    try:
        assert sorted(reader.list_keys()) == sorted(f"key-{i}" for i in range(300))
    finally:
        await reader.stop()


def keys_by_partition(n: int, partitions: int) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    for i in range(n):
        found[partition_for(f"m{i}", partitions)].append(f"m{i}")
    return found


async def test_kvstore__a_partitioned_store_holds_its_partitions_and_follows_a_rebalance(  # type: ignore[no-untyped-def]
        stack, tmp_path) -> None:
    settings: Settings = stack.settings
    total = settings.partitions
    by_partition = keys_by_partition(300, total)
    writer = TopicStore(settings, "state.sends")  # replicated: writes every partition
    await writer.ready()
    for keys in by_partition.values():
        for key in keys:
            await writer.put(key, b"v1")
    await writer.put("elsewhere", b"x", partition=1)  # an explicit partition wins over the key's hash
    await writer.flush()
    ownership = Ownership(total, [0])
    mine = TopicStore(settings, "state.sends", ownership=ownership, directory=tmp_path / "w1")
    try:
        await mine.ready()
        assert sorted(mine.list_keys()) == sorted(by_partition[0]) and mine.size() == len(by_partition[0])
        assert mine.get(by_partition[1][0]) is None  # not this worker's
        await ownership.set([0, 1])  # a rebalance gives it partition 1 as well
        await asyncio.wait_for(mine.ready(1), 20)
        assert sorted(mine.list_keys()) == sorted([*by_partition[0], *by_partition[1], "elsewhere"])
        await ownership.set([1])  # ...and takes partition 0 away
        assert mine.get(by_partition[0][0]) is None and mine.served == {1}
        await mine.put(by_partition[1][0], b"v2")  # its own write shows at once and stays in partition 1
        assert mine.get(by_partition[1][0]) == b"v2"
        await mine.delete("elsewhere")
        await mine.flush()
    finally:
        await mine.stop()
    # A restarted worker resumes partition 1 from its copy on disk, and still sees what others wrote meanwhile.
    await writer.put(by_partition[1][1], b"while-away")
    await writer.flush()
    again = TopicStore(settings, "state.sends", ownership=Ownership(total, [1]), directory=tmp_path / "w1")
    try:
        await asyncio.wait_for(again.ready(), 20)
        assert again.get(by_partition[1][0]) == b"v2" and again.get(by_partition[1][1]) == b"while-away"
        assert again.get("elsewhere") is None and len(list(again.list_keys())) == len(by_partition[1])
    finally:
        await again.stop()
        await writer.stop()
