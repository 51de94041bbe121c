"""Where the stages' results go: the producer, `herald.status`, `herald.deadletter` and the metrics, built once per
app and handed to every stage together."""

from __future__ import annotations

from dataclasses import dataclass

from consumers.clock import Clock
from consumers.observe.metrics import Metrics
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.records import Publisher
from consumers.pipeline.status import StatusEmitter

DEFAULT_MAX_RECORD_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class Outlets:
    """The publishing side a stage writes to."""

    publisher: Publisher
    statuses: StatusEmitter
    dead_letters: DeadLetters
    metrics: Metrics

    @classmethod
    def build(cls, publisher: Publisher, metrics: Metrics, secret: bytes, clock: Clock, *,
              max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Outlets:
        """Statuses keyed by `secret` and dead letters that fit `max_record_bytes`, over one publisher."""
        statuses = StatusEmitter(publisher, metrics, secret, clock)
        dead_letters = DeadLetters(publisher, metrics, statuses, max_record_bytes=max_record_bytes)
        return cls(publisher, statuses, dead_letters, metrics)
