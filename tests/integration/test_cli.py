"""The command line as another team uses it: `herald broker`, `herald publish`, `herald status`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from consumers.dev.broker import free_port, port_open
from consumers.topics import topic_specs
from schemas.settings import Settings
from schemas.status import Status
from tests.integration.harness import Stack, wait_until

pytestmark = pytest.mark.integration


def herald(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consumers", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


async def test_cli__broker_runs_tansu_with_every_topic_created(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "HERALD_TOPIC_PREFIX": "cli.", "HERALD_PARTITIONS": "2"}
    process = subprocess.Popen([sys.executable, "-m", "consumers", "broker", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert await asyncio.to_thread(wait_until, lambda: port_open("127.0.0.1", port), 20)
        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        await admin.start()
        try:
            async def topics() -> set[str]:
                return set(await admin.list_topics())

            for _ in range(50):
                if {f"cli.{s.short}" for s in topic_specs()} <= await topics():
                    break
                await asyncio.sleep(0.2)
            expected = {f"cli.{s.short}" for s in topic_specs()}
            assert expected <= await topics()
            described = await admin.describe_topics(["cli.status"])
            assert len(described[0]["partitions"]) == 2
        finally:
            await admin.close()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    assert not port_open("127.0.0.1", port)


async def test_cli__publish_then_status_shows_accepted_and_sent(stack: Stack) -> None:
    stack.start_worker()
    env = Settings.as_env(stack.settings)
    published = await asyncio.to_thread(herald, "publish", "otp.requested", "--to",
                                        "id=user-42,email=ana@example.com", "--locale", "de-DE", env=env)
    assert published.returncode == 0, published.stderr
    assert "for user-42 to " in published.stdout
    await stack.wait_statuses(lambda ss: any(s.status is Status.SENT for s in ss), timeout=30)
    shown = await asyncio.to_thread(herald, "status", "--json", env=env)
    lines = shown.stdout.strip().splitlines()
    assert [line.split('"status":"')[1].split('"')[0] for line in lines] == ["accepted", "sent"]
    sent = await asyncio.to_thread(herald, "status", "--json", "--type", "otp.*", "--status", "sent", env=env)
    assert [orjson.loads(line)["status"] for line in sent.stdout.splitlines()] == ["sent"]
    [mail] = stack.sink.snapshot()
    assert mail["Content-Language"] == "de"
    assert "ana@example.com" not in shown.stdout


async def test_cli__dlq_lists_reasons_and_replays_to_the_source_topic(stack: Stack) -> None:
    env = Settings.as_env(stack.settings)
    await stack.publish_raw(b"not json at all", key=b"u1")
    stack.start_worker()
    await stack.wait_statuses(lambda ss: any(s.status is Status.DEAD_LETTERED for s in ss), timeout=30)
    listed = await asyncio.to_thread(herald, "dlq", "list", "--json", env=env)
    [letter] = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert (letter["reason"], letter["stage"]) == ("invalid_json", "router")
    assert letter["source_topic"] == stack.settings.topic("events")
    replayed = await asyncio.to_thread(herald, "dlq", "replay", f"{letter['partition']}/{letter['offset']}", env=env)
    assert "replayed 1 dead letter" in replayed.stdout
    # Replayed, it fails the same way again: a second dead letter, from the replayed copy.
    await stack.wait_statuses(lambda ss: sum(s.status is Status.DEAD_LETTERED for s in ss) >= 2, timeout=30)


def test_cli__demo_runs_the_whole_dev_stack_and_every_channel_sends(tmp_path: Path) -> None:
    # What `make run` starts (broker, SMTP sink, provider simulator, worker), on ports of its own, at any hour.
    env = {"HERALD_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "HERALD_SMTP_PORT": str(free_port()),
           "HERALD_SIM_PORT": str(free_port()), "HERALD_WEB_PORT": str(free_port()),
           "HERALD_DATA_DIR": str(tmp_path), "COLUMNS": "220"}
    done = subprocess.run([sys.executable, "-m", "consumers", "demo"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    sent = {m.group(1) for m in re.finditer(r"│ sent\s+│ [\w.]+\s+│ (\w+)\s+│", done.stdout)}
    assert sent == {"email", "sms", "voice", "whatsapp", "push", "webhook"}
    assert "│ rejected " in done.stdout and "│ dead_lettered " in done.stdout  # the three bad inputs
    assert list((tmp_path / "mail").glob("*.eml"))
