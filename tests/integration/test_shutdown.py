"""Issue 6: SIGTERM finishes or hands back in-flight sends, commits, and exits within 10 s; nothing is lost."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import pytest

from consumers.cli.publish import make_event
from schemas.status import Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

ORDER = {"order_id": "1", "total": "1.00", "currency": "EUR", "items": []}


async def test_shutdown__sigterm_under_load_exits_within_10_s_and_loses_nothing(stack: Stack) -> None:
    events = [make_event("order.confirmed", {"id": f"s{i}", "email": f"s{i}@example.org"}, ORDER)
              for i in range(1500)]
    worker = stack.start_worker()
    await stack.publish(events)
    await stack.wait_statuses(lambda ss: sum(s.status is Status.SENT for s in ss) >= 100, timeout=60)
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.wait, 30)
    took = time.monotonic() - asked
    stack.workers.remove(worker)
    print(f"SIGTERM to exit: {took:.1f} s, exit code {code}, {len(stack.sink.raw)} emails by then")
    assert took < 10
    stack.start_worker()
    await stack.wait_statuses(lambda ss: len({s.message_id for s in ss if s.status is Status.SENT}) >= 1500,
                              timeout=120)
    counts = Counter(raw.split(b"X-Herald-Message-ID: ", 1)[1].split(b"\r\n", 1)[0] for raw in stack.sink.raw)
    assert len(counts) == 1500
    assert sum(c - 1 for c in counts.values()) == 0  # a graceful stop sends nothing twice
