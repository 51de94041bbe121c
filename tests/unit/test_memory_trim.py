"""A worker gives the memory it freed back to the system (issue 13): glibc keeps freed pages mapped, so without a
trim a worker's resident memory stays at the highest it has been."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from consumers.worker import malloc_trim, start_memory_trim

pytestmark = pytest.mark.unit


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_memory__the_trim_thread_calls_malloc_trim_every_interval() -> None:
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    thread = start_memory_trim(0.01, trim=trim)
    time.sleep(0.2)
    assert thread is not None and thread.daemon and thread.name == "herald-malloc-trim"
    assert len(calls) >= 3 and set(calls) == {0}


@pytest.mark.skipif(malloc_trim() is None, reason="not glibc")
def test_memory__memory_freed_between_survivors_leaves_the_process_within_an_interval() -> None:
    blocks = [bytes(4000) for _ in range(20_000)]  # 80 MB from malloc's heap (not mmap: each is under 128 KiB)
    survivors = blocks[::500]  # a few blocks still in use, spread over the heap: its top cannot shrink past them
    del blocks
    held = rss_mb()
    start_memory_trim(0.05)
    deadline = time.monotonic() + 5
    while held - rss_mb() < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held - rss_mb() >= 40, f"RSS {held:.0f} MB -> {rss_mb():.0f} MB"
    assert len(survivors) == 40
