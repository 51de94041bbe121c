"""`herald forget` against a running worker: the person's scheduled message is cancelled and never sent."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import orjson
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


async def test_erasure__forget_erases_what_the_console_kept_of_the_persons_messages_and_only_theirs(
        stack: Stack) -> None:
    token = "erasure-test-admin-token"
    stack.start_worker(HERALD_ADMIN_TOKEN=token, HERALD_CONSOLE_PERSONAL_DATA="true")
    erased = make_event("order.confirmed", {"id": "user-erase", "email": "erase@example.org"},
                        {**PAYLOAD, "order_id": "ORD-ERASE-77"})
    kept = make_event("order.confirmed", {"id": "user-keep", "email": "keep@example.org"},
                      {**PAYLOAD, "order_id": "ORD-KEEP-88"})
    await stack.publish([erased, kept])
    await stack.wait_statuses(lambda ss: sum(s.status is Status.SENT for s in ss) == 2, timeout=30)
    message = {s.event_id: s.message_id for s in stack.statuses if s.status is Status.SENT}
    console = f"http://127.0.0.1:{stack.settings.admin_port}/console/messages/"

    async def shown(client: httpx.AsyncClient, event: dict[str, object], marker: str) -> bool:
        page = await client.get(console + message[str(event["id"])])
        assert page.status_code == 200, page.status_code
        return marker in page.text

    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
        for _ in range(100):  # the console's index reads herald.content off the send path
            if await shown(client, erased, "ORD-ERASE-77") and await shown(client, kept, "ORD-KEEP-88"):
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the console never showed what the two messages said")

        env = {**os.environ, **Settings.as_env(stack.settings)}
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "consumers", "forget", "user-erase"],
                                       env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert re.search(r"^content\s+1 deleted$", done.stdout, re.M), done.stdout

        for _ in range(100):  # the running worker reads the erasure like any record of the topic
            if not await shown(client, erased, "ORD-ERASE-77"):
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the console still shows the forgotten person's message")
        assert await shown(client, kept, "ORD-KEEP-88")

    # In the log, the newest record under the forgotten message's key is the erasure (compaction keeps only it).
    newest = {r.key: orjson.loads(r.value) for r in await stack.read("content")}
    assert newest[message[erased["id"]].encode()] == {
        "schema_version": "1", "message_id": message[erased["id"]], "erased": True,
        "at": newest[message[erased["id"]].encode()]["at"]}
    assert newest[message[kept["id"]].encode()]["recipient_id"] == "user-keep"
