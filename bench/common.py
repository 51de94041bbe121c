"""Shared pieces of the benchmarks: an isolated stack on the embedded broker, and the raw Kafka baseline."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers.dev.broker import EmbeddedBroker, free_port
from consumers.dev.devstack import start_worker, wait_http
from consumers.dev.mailsink import MailSink, start_mail_sink
from consumers.dev.processes import stop_process
from consumers.dev.samples import always_open_catalog
from consumers.topics import ensure_topics
from schemas.settings import Settings


@dataclass
class BenchStack:
    settings: Settings
    sink: MailSink


@contextlib.asynccontextmanager
async def bench_stack(**overrides: object) -> AsyncIterator[BenchStack]:
    """Broker, SMTP sink and one worker, all on free ports, torn down afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    broker = EmbeddedBroker(free_port(), log_path=tmp / "broker.log")
    broker.start()
    tag = uuid.uuid4().hex[:6]
    values: dict[str, Any] = dict(kafka_bootstrap=broker.bootstrap, topic_prefix=f"b{tag}.",
                                     app_id=f"bench-{tag}", data_dir=tmp, smtp_port=free_port(),
                                     web_port=free_port(), admin_port=free_port(), secret="bench", log_level="warning",
                                     catalog=always_open_catalog(tmp))  # a benchmark must not wait for 08:00
    values.update(overrides)
    settings = Settings(**values)
    controller, sink = start_mail_sink(settings.smtp_port)
    worker = None
    try:
        await ensure_topics(settings)
        worker = start_worker(settings, tmp / "worker.log")
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{settings.admin_port}/ready", 60, worker)
        yield BenchStack(settings, sink)
    finally:
        if worker is not None:
            stop_process(worker)
        controller.stop()
        broker.stop()


async def kafka_round_trip(bootstrap: str, payloads: list[bytes], partitions: int = 3) -> float:
    """Seconds to produce `payloads` to a fresh topic and consume them all back: the floor for any Kafka path."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"baseline-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    await admin.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}",
                                auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        for i, value in enumerate(payloads):
            await producer.send(topic, value, key=str(i).encode())
        await producer.flush()
        seen = 0
        while seen < len(payloads):
            batch = await consumer.getmany(timeout_ms=500)
            seen += sum(len(v) for v in batch.values())
        return time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()
