"""Shared pieces of the benchmarks: an isolated stack on the embedded broker (one worker or several), the raw Kafka
baselines, a worker's memory and state size, and the result every benchmark hands to the table (`bench/table.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from consumers.app import BUNDLED_CATALOG
from consumers.cli.publish import make_event
from consumers.dev.broker import EmbeddedBroker, free_port
from consumers.dev.devstack import wait_http
from consumers.dev.mailsink import MailSink
from consumers.dev.processes import start_child, stop_process
from consumers.dev.samples import always_open_catalog
from consumers.topics import ensure_topics
from schemas.catalog import Catalog
from schemas.settings import Settings

LOCALES = ("es-ES", "de-DE", "en-GB")


@dataclass
class Row:
    """One line of the `make bench` table: Herald's figure next to the bare client's doing the same work in the same
    run, their ratio (Herald / bare for rates: 1.0 is the bare client's speed), the goal and whether it is met."""

    name: str
    herald: str
    bare: str
    ratio: str
    goal: str
    passed: bool
    notes: list[str] = field(default_factory=list)


def rate_row(name: str, herald_rate: float, bare_rate: float, goal: float, *, unit: str, bare_unit: str,
             notes: Sequence[str] = ()) -> Row:
    """A throughput row: ratio Herald / bare, met when at least `goal`."""
    ratio = herald_rate / bare_rate
    return Row(name, f"{herald_rate:,.0f} {unit}", f"{bare_rate:,.0f} {bare_unit}", f"{ratio:.2f}", f">= {goal}",
               ratio >= goal, list(notes))


class LeanSink(MailSink):
    """The dev mail sink keeping only its count, arrival times and last message: it kept every message in memory
    (200,000 order confirmations are 650 MB in the benchmark's own process)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.raw[-1:] = [envelope.original_content or b""]
            self.arrivals.append((time.monotonic(), envelope.rcpt_tos[0] if envelope.rcpt_tos else ""))
            self.count += 1
        return "250 OK queued"

    def __len__(self) -> int:
        return self.count


def start_lean_sink(port: int) -> tuple[Controller, LeanSink]:
    """`start_mail_sink` with a `LeanSink`."""
    sink = LeanSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, data_size_limit=25 * 1024 * 1024)
    controller.start()
    return controller, sink


@dataclass
class WorkerProcess:
    """A worker started by `bench_stack`, with its own admin port (for /metrics) and data folder."""

    process: subprocess.Popen[bytes]
    settings: Settings

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    async def state_keys(self) -> dict[str, float] | None:
        return await state_keys(self.settings.admin_port)


@dataclass
class BenchStack:
    settings: Settings
    sink: MailSink
    workers: list[WorkerProcess]
    folder: Path


def worker_command(without: Sequence[str] = ()) -> list[str]:
    """The command line of a worker: Herald's own, or `bench.worker` when some agents are left out."""
    if not without:
        return [sys.executable, "-m", "consumers", "worker"]
    return [sys.executable, "-m", "bench.worker", *(a for name in without for a in ("--without", name))]


def start_worker_process(settings: Settings, log_path: Path, without: Sequence[str] = (),
                         env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A worker as a child process with `settings` in its environment (it dies with this process)."""
    child_env = {**os.environ, **settings.as_env(), **(env or {})}
    with open(log_path, "ab") as log:
        return start_child(worker_command(without), env=child_env, stdout=log, stderr=subprocess.STDOUT)


@contextlib.asynccontextmanager
async def bench_stack(*, workers: int = 1, without: Sequence[str] = (), **overrides: object
                      ) -> AsyncIterator[BenchStack]:
    """Broker, SMTP sink and `workers` workers in one group, all on free ports, torn down afterwards. Each worker
    has its own web and admin ports and data folder; `without` names agents the workers leave out."""
    tmp = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    broker = EmbeddedBroker(free_port(), log_path=tmp / "broker.log")
    broker.start()
    tag = uuid.uuid4().hex[:6]
    values: dict[str, Any] = dict(kafka_bootstrap=broker.bootstrap, topic_prefix=f"b{tag}.",
                                  app_id=f"bench-{tag}", data_dir=tmp, smtp_port=free_port(),
                                  web_port=free_port(), admin_port=free_port(), secret="bench", log_level="warning",
                                  catalog=always_open_catalog(tmp),  # a benchmark must not wait for 08:00
                                  state_metrics_interval=1.0)  # herald_state_keys fresh when the bench reads it
    values.update(overrides)
    settings = Settings(**values)
    controller, sink = start_lean_sink(settings.smtp_port)
    started: list[WorkerProcess] = []
    try:
        await ensure_topics(settings)
        for i in range(workers):
            own = settings if i == 0 else settings.model_copy(update={
                "web_port": free_port(), "admin_port": free_port(), "data_dir": tmp / f"worker-{i}"})
            Path(own.data_dir).mkdir(parents=True, exist_ok=True)
            started.append(WorkerProcess(start_worker_process(own, tmp / f"worker-{i}.log", without), own))
        for worker in started:
            await asyncio.to_thread(wait_http, f"http://127.0.0.1:{worker.settings.admin_port}/ready", 90,
                                    worker.process)
        yield BenchStack(settings, sink, started, tmp)
    finally:
        for worker in started:
            stop_process(worker.process)
        controller.stop()
        broker.stop()


def order_events(n: int, *, offset: int = 0) -> list[dict[str, Any]]:
    """`n` order confirmations to as many recipients, in three locales."""
    sample = Catalog.load(BUNDLED_CATALOG).types["order.confirmed"].sample
    return [make_event("order.confirmed", {"id": f"user-{i}", "email": f"p{i}@example.org",
                                           "locale": LOCALES[i % 3], "name": f"P {i}"}, sample, source="bench")
            for i in range(offset, offset + n)]


async def wait_for_mail(sink: MailSink, count: int, timeout: float) -> float:
    """Wait until the sink holds `count` messages; returns the `perf_counter` time it saw them."""
    deadline = time.monotonic() + timeout
    while len(sink) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(sink)}/{count} emails after {timeout}s")
        await asyncio.sleep(0.01)
    return time.perf_counter()


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far: a cost per event that other load on the machine
    disturbs less than wall-clock throughput does."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


STATE_KEYS = re.compile(r'^herald_state_keys\{store="([^"]+)"[^}]*\}\s+([0-9.eE+-]+)$', re.MULTILINE)


async def state_keys(admin_port: int) -> dict[str, float] | None:
    """The worker's `herald_state_keys{store}` gauge from its admin `/metrics`, or None when it has none."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{admin_port}/metrics", timeout=5)).text
    found = {store: float(value) for store, value in STATE_KEYS.findall(text)}
    return found or None


def format_state(keys: dict[str, float] | None) -> str:
    if keys is None:
        return "n/a (no herald_state_keys gauge)"
    return ", ".join(f"{store} {value:.0f}" for store, value in sorted(keys.items())) or "none"


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names])
    finally:
        await admin.close()


async def count_records(bootstrap: str, topic: str, target: int, timeout: float) -> float:
    """Read `topic` from its beginning (no group) until it holds `target` records; returns the `perf_counter`
    time the last one was seen."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = None
        while not partitions:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer.topics()
                await asyncio.sleep(0.05)
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        seen, deadline = 0, time.monotonic() + timeout
        while seen < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seen}/{target} records on {topic} after {timeout}s")
            batch = await consumer.getmany(timeout_ms=100)
            seen += sum(len(v) for v in batch.values())
        return time.perf_counter()
    finally:
        await consumer.stop()


async def kafka_round_trip(bootstrap: str, payloads: list[bytes], partitions: int = 3) -> float:
    """Seconds to produce `payloads` to a fresh topic and consume them all back: the floor for any Kafka path."""
    topic = f"baseline-{uuid.uuid4().hex[:6]}"
    await create_topics(bootstrap, [topic], partitions)
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


async def start_helper(module: str, *args: str) -> asyncio.subprocess.Process:
    """A bench helper (`python -m bench.<module>`) in a process of its own, once it printed `ready`."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", f"bench.{module}", *args,
                                                   stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if line.strip() != b"ready":
        process.kill()
        raise RuntimeError(f"bench.{module} did not start: {line!r}")
    return process
