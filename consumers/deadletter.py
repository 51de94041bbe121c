"""The dead-letter topic: the original bytes and key, with the reason in headers DESIGN.md names."""

from __future__ import annotations

import logging

from consumers.metrics import Metrics
from consumers.records import Publisher, Record

log = logging.getLogger(__name__)

DETAIL_LIMIT = 500


class DeadLetters:
    """Writes a record that cannot be processed to `herald.deadletter`, so nothing is silently dropped."""

    def __init__(self, publisher: Publisher, metrics: Metrics) -> None:
        self.publisher = publisher
        self.metrics = metrics

    async def send(self, record: Record, *, reason: str, detail: str, stage: str) -> None:
        headers = {
            "herald-error": reason.encode(),
            "herald-error-detail": detail[:DETAIL_LIMIT].encode(),
            "herald-source-topic": record.topic.encode(),
            "herald-source-partition": str(record.partition).encode(),
            "herald-source-offset": str(record.offset).encode(),
            "herald-stage": stage.encode(),
        }
        self.metrics.dead_letters.labels(stage, reason).inc()
        log.warning("dead-lettered record", extra={"topic": record.topic, "partition": record.partition,
                                                    "offset": record.offset, "reason": reason})
        await self.publisher.send("deadletter", record.key, record.value or b"", headers)
