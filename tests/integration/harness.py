"""The integration harness: a real broker, a real SMTP sink and `herald worker` processes."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord

from consumers.cli.publish import EventProducer, parse_status, read_topic
from consumers.dev.broker import free_port
from consumers.dev.devstack import start_worker, stop_process, wait_http
from consumers.dev.mailsink import MailSink
from consumers.topics import ensure_topics
from schemas.settings import Settings
from schemas.status import DeliveryStatus


@dataclass
class Stack:
    """One isolated Herald deployment on the shared test broker."""

    settings: Settings
    sink: MailSink
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    statuses: list[DeliveryStatus] = field(default_factory=list)

    async def create_topics(self) -> None:
        await ensure_topics(self.settings)

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        """A worker, returned once ready. Several at once: give each its own `HERALD_WEB_PORT`,
        `HERALD_ADMIN_PORT` (its /ready is waited on) and `HERALD_DATA_DIR` in `env` (see `other_worker_env`)."""
        log = Path(self.settings.data_dir) / f"worker-{len(self.workers)}.log"
        process = start_worker(self.settings, log, env=env)
        self.workers.append(process)
        admin_port = env.get("HERALD_ADMIN_PORT", str(self.settings.admin_port))
        wait_http(f"http://127.0.0.1:{admin_port}/ready", 60, process)
        return process

    def other_worker_env(self, name: str) -> dict[str, str]:
        """`start_worker` environment for one more worker of the same group running beside the first: web and
        admin ports and a data directory of its own (`<data_dir>/<name>`)."""
        data = Path(self.settings.data_dir) / name
        data.mkdir(parents=True, exist_ok=True)
        return {"HERALD_WEB_PORT": str(free_port()), "HERALD_ADMIN_PORT": str(free_port()),
                "HERALD_DATA_DIR": str(data)}

    def stop_workers(self) -> None:
        for process in self.workers:
            stop_process(process)

    def worker_log(self, limit: int = 4000) -> str:
        return "\n".join(p.read_text(errors="replace")[-limit:]
                         for p in sorted(Path(self.settings.data_dir).glob("worker-*.log")))

    async def publish(self, events: Iterable[Mapping[str, Any]]) -> None:
        async with EventProducer(self.settings) as producer:
            for event in events:
                await producer.publish(event)
            await producer.flush()

    async def publish_raw(self, value: bytes, *, key: bytes | None = None,
                          headers: list[tuple[str, bytes]] | None = None, topic: str | None = None) -> None:
        async with EventProducer(self.settings) as producer:
            await producer.publish_raw(value, key=key, headers=headers, topic=topic)

    async def read(self, short: str) -> list[ConsumerRecord]:
        return [r async for r in read_topic(self.settings, short)]

    async def wait_statuses(self, done: Callable[[list[DeliveryStatus]], bool], timeout: float = 60) -> None:
        """Follow herald.status until `done(all statuses so far)` holds; fail with what was seen."""
        self.statuses = []

        async def follow() -> None:
            async for record in read_topic(self.settings, "status", follow=True, idle_timeout=0.3):
                self.statuses.append(parse_status(record))
                if done(self.statuses):
                    return

        try:
            await asyncio.wait_for(follow(), timeout)
        except TimeoutError as exc:
            counts: dict[str, int] = {}
            for s in self.statuses:
                counts[s.status.value] = counts.get(s.status.value, 0) + 1
            raise AssertionError(f"statuses not settled in {timeout}s: {counts}\n{self.worker_log()}") from exc


def last_by_message(statuses: Iterable[DeliveryStatus]) -> dict[str, DeliveryStatus]:
    last: dict[str, DeliveryStatus] = {}
    for s in statuses:
        last[s.message_id] = s
    return last


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()

