"""Test doubles for the outbound side: a publisher that records and a sender that follows a script."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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

    def json(self, topic: str) -> list[dict]:
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
