"""The dead-letter topic: the original bytes and key, with the reason in headers, and a `dead_lettered` status.

Headers: `herald-error` (a bounded reason word), `herald-error-class`, `herald-error-detail` (scrubbed of
addresses and numbers), `herald-source-topic`, `herald-source-partition`, `herald-source-offset`, `herald-stage`,
`herald-attempts`, `herald-first-failure`, and `herald-message-id` when known. A record over the producer's
limit is stored truncated with `herald-truncated`, `herald-original-size` and `herald-original-sha256` (and
`herald-key-size`/`herald-key-sha256` for an oversized key). `herald dlq replay` republishes
the original bytes to the source topic, and refuses a truncated dead letter (its bytes are not the original's).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime

from consumers.observe.metrics import Metrics
from consumers.pipeline.records import Publisher, Record
from consumers.pipeline.sizes import fit
from consumers.pipeline.status import StatusEmitter
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent
from schemas.status import Status

log = logging.getLogger(__name__)

DETAIL_LIMIT = 500
_EMAIL = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def scrub(text: str) -> str:
    """No email address or phone number leaves through an error detail."""
    return _PHONE.sub("<number>", _EMAIL.sub("<address>", text))[:DETAIL_LIMIT]


class DeadLetters:
    """Writes a record that cannot be processed to `herald.deadletter`, so nothing is silently dropped."""

    def __init__(self, publisher: Publisher, metrics: Metrics, statuses: StatusEmitter | None = None, *,
                 max_record_bytes: int = 1_048_576) -> None:
        self.publisher = publisher
        self.metrics = metrics
        self.statuses = statuses
        self.max_record_bytes = max_record_bytes

    async def send(self, record: Record, *, reason: str, detail: str, stage: str, error_class: str | None = None,
                   dispatch: Dispatch | None = None, message_id: str | None = None, event: CloudEvent | None = None,
                   attempts: int | None = None, first_failure: datetime | None = None,
                   known: Mapping[str, str] | None = None) -> None:
        message_id = dispatch.message_id if dispatch else message_id
        if attempts is None:
            attempts = dispatch.attempt if dispatch else 0
        headers = {
            "herald-error": reason.encode(),
            "herald-error-class": (error_class or reason).encode(),
            "herald-error-detail": scrub(detail).encode(),
            "herald-source-topic": record.topic.encode(),
            "herald-source-partition": str(record.partition).encode(),
            "herald-source-offset": str(record.offset).encode(),
            "herald-stage": stage.encode(),
            "herald-attempts": str(attempts).encode(),
        }
        first_failure = first_failure or (dispatch.first_failure_at if dispatch else None)
        if first_failure:
            headers["herald-first-failure"] = first_failure.isoformat().encode()
        if message_id:
            headers["herald-message-id"] = message_id.encode()
        # Always fits: a record too big for the producer keeps its first bytes, its size and its digest.
        fitted = fit(record.key, record.value, self.max_record_bytes, headers)
        await self.publisher.send("deadletter", fitted.key, fitted.value, {**headers, **fitted.headers},
                                  durable=True)
        # Counted once written: a write that fails is tried again (`consumers.pipeline.outcomes`) and counted then.
        self.metrics.dead_letters.labels(stage, reason).inc()
        log.warning("dead-lettered record", extra={"topic": record.topic, "partition": record.partition,
                                                    "offset": record.offset, "reason": reason})
        if self.statuses is None:
            return
        if dispatch is not None:
            await self.statuses.for_dispatch(dispatch, Status.DEAD_LETTERED, error=reason, detail=scrub(detail)[:120])
        elif message_id is not None:
            await self.statuses.for_event(message_id, Status.DEAD_LETTERED, event=event, error=reason,
                                          detail=scrub(detail)[:120], known=known)
