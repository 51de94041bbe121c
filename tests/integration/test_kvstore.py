"""TopicStore on the embedded broker: state written by one worker is there for every other, and after a restart,
without trusting ListOffsets (Faust's table recovery lost updates here)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

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
        assert len(b.data) == 499 and b.get("k7") is None and b.get("k8") == b"changed"
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
