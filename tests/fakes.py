"""Test doubles shared by the suites: a publisher that records, a sender that follows a script, a clock that only
moves when a test moves it, and every `httpx` transport error a provider must map."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, overload

import httpx
import orjson

from channels.base import OutboundMessage, SendResult
from channels.errors import DeliveryError
from schemas.status import DeliveryStatus


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


@dataclass
class RecordingPublisher:
    records: list[Sent] = field(default_factory=list)

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Mapping[str, bytes] | None = None, *, durable: bool = False) -> None:
        self.records.append(Sent(topic, key, value, dict(headers or {})))

    def on(self, topic: str) -> list[Sent]:
        return [r for r in self.records if r.topic == topic]

    def statuses(self) -> list[DeliveryStatus]:
        return [DeliveryStatus.model_validate_json(r.value) for r in self.on("status")]

    def json(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.on(topic)]


@dataclass
class ScriptedSender:
    """Raises the scripted errors in order, then succeeds."""

    name: str = "fake"
    channel: str = "email"
    script: list[DeliveryError] = field(default_factory=list)
    sent: list[OutboundMessage] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def send(self, message: OutboundMessage) -> SendResult:
        if self.script:
            raise self.script.pop(0)
        self.sent.append(message)
        return SendResult(provider=self.name, provider_message_id=f"p-{len(self.sent)}")

    async def close(self) -> None:
        return None


Now = TypeVar("Now", float, datetime)


class FakeClock(Generic[Now]):
    """Simulated time for code that takes a clock: calling it reads the time, `advance` and `sleep` move it.

    Monotonic seconds (`FakeClock()`, `FakeClock(100.0)`) for breakers, token buckets and chains; an aware datetime
    (`FakeClock(NOW)`) for what stamps, schedules or expires by the wall clock. `now` may also be set directly.
    """

    @overload
    def __init__(self: FakeClock[float], now: float = 0.0, *, yields: int = 1) -> None: ...

    @overload
    def __init__(self: FakeClock[datetime], now: datetime, *, yields: int = 1) -> None: ...

    def __init__(self, now: float | datetime = 0.0, *, yields: int = 1) -> None:
        self.now: Now = now  # type: ignore[assignment]  # the overloads tie `now` to the clock's kind
        self.yields = yields  # loop turns each `sleep` gives other tasks: what happens "during" the sleep does
        self.sleeps: list[float] = []

    def __call__(self) -> Now:
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> Now:
        """Move time by `seconds` and/or `timedelta` keywords (`advance(30)`, `advance(days=7, seconds=1)`)."""
        step = timedelta(seconds=seconds, **delta)
        self.now = self.now + step if isinstance(self.now, datetime) else self.now + step.total_seconds()
        return self.now

    async def sleep(self, seconds: float) -> None:
        """An `asyncio.sleep` stand-in: notes the wait, advances instead of waiting, and lets other tasks run."""
        self.sleeps.append(seconds)
        self.advance(seconds)
        for _ in range(self.yields):
            await asyncio.sleep(0)


def transport_errors() -> list[type[httpx.TransportError]]:
    """`httpx.TransportError` and every subclass, however deep: none may escape a provider unmapped."""
    found: set[type[httpx.TransportError]] = set()
    todo: list[type[httpx.TransportError]] = [httpx.TransportError]
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


TRANSPORT_ERRORS = transport_errors()
