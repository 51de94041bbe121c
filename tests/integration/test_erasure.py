"""`herald forget` against a running worker: the person's scheduled message is cancelled and never sent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from consumers.cli.publish import make_event
from schemas.settings import Settings
from schemas.status import Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

PAYLOAD = {"order_id": "1001", "total": "59.90", "currency": "EUR", "items": []}


async def test_erasure__forget_cancels_what_waits_and_the_worker_never_sends_it(stack: Stack) -> None:
    stack.start_worker()
    # Due soon, but not before `herald forget` (a process of its own, reading every state topic) has run under load.
    soon = (datetime.now(UTC) + timedelta(seconds=15)).isoformat().replace("+00:00", "Z")
    erased = make_event("order.confirmed", {"id": "user-erase", "email": "erase@example.org"}, PAYLOAD, sendat=soon)
    kept = make_event("order.confirmed", {"id": "user-keep", "email": "keep@example.org"}, PAYLOAD, sendat=soon)
    await stack.publish([erased, kept])
    await stack.wait_statuses(lambda ss: sum(s.status is Status.SCHEDULED for s in ss) == 2, timeout=30)

    env = {**os.environ, **Settings.as_env(stack.settings)}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "consumers", "forget", "user-erase"],
                                   env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "1 scheduled messages cancelled" in done.stdout

    await stack.wait_statuses(lambda ss: any(s.status is Status.SENT for s in ss), timeout=40)
    await asyncio.sleep(2)  # the erased one would have been due at the same time
    assert [m["To"] for m in stack.sink.snapshot()] == ["keep@example.org"]
    by_event = {s.event_id: s.status for s in stack.statuses if s.event_id}
    assert by_event[erased["id"]] is Status.CANCELLED
