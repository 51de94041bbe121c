"""The delivery stage: one dispatch in; render, send through the channel's provider, publish the outcome."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from channels.attachments import attachments_for
from channels.base import Attachment, OutboundMessage, Sender
from channels.errors import DeliveryError, RenderError
from channels.render import Rendered, Renderer
from consumers.deadletter import DeadLetters
from consumers.documents import Documents
from consumers.identity import record_message_id
from consumers.metrics import Metrics
from consumers.records import Record
from consumers.router import describe_validation_error
from consumers.status import StatusEmitter
from schemas.catalog import Catalog
from schemas.dispatch import Dispatch
from schemas.status import Status

log = logging.getLogger(__name__)


class DeliveryStage:
    """Sends dispatches of the channels it has senders for. Retries transient errors a few times in place."""

    def __init__(self, renderer: Renderer, senders: Mapping[str, Sender], statuses: StatusEmitter,
                 dead_letters: DeadLetters, metrics: Metrics, *, clock: Callable[[], datetime],
                 catalog: Catalog | None = None, template_globals: Mapping[str, Any] | None = None,
                 documents: Documents | None = None, max_attempts: int = 3, backoff: float = 0.5) -> None:
        self.catalog = catalog
        self.documents = documents
        self.renderer = renderer
        self.senders = senders
        self.statuses = statuses
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.clock = clock
        self.template_globals = dict(template_globals or {})
        self.max_attempts = max_attempts
        self.backoff = backoff

    async def handle(self, record: Record) -> None:
        try:
            d = Dispatch.model_validate_json(record.value or b"")
        except ValidationError as exc:
            mid = record_message_id(record.topic, record.partition, record.offset)
            detail = describe_validation_error(exc)
            await self.statuses.for_event(mid, Status.REJECTED, error="invalid_dispatch", detail=detail)
            await self.dead_letters.send(record, reason="invalid_dispatch", detail=detail, stage="delivery")
            return
        if d.expires_at and self.clock() >= d.expires_at:
            await self.statuses.for_dispatch(d, Status.EXPIRED, detail="ttl")
            return
        sender = self.senders.get(d.channel)
        address = d.to.address_for(d.channel)
        if sender is None or address is None:
            reason = "no_sender" if sender is None else "no_address"
            await self.statuses.for_dispatch(d, Status.FAILED, error=reason, detail=reason)
            await self.dead_letters.send(record, reason=reason, detail=f"channel {d.channel}", stage="delivery")
            return
        document_url = self.documents.link_for(d) if self.documents else None
        try:
            rendered = self.renderer.render(
                d.event_type, d.channel, locale=d.to.locale, timezone=d.to.timezone,
                context={**self.template_globals, "to": d.to.model_dump(mode="json"), "payload": d.payload,
                         "message_id": d.message_id, "event_id": d.event_id, "tenant": d.tenant,
                         "document_url": document_url})
        except RenderError as exc:
            await self.statuses.for_dispatch(d, Status.REJECTED, error=exc.reason, detail=exc.reason)
            await self.dead_letters.send(record, reason=exc.reason, detail=str(exc), stage="delivery")
            return
        if document_url and self.documents:
            self.documents.remember(d)
        try:
            attachments = await self._attachments(d, rendered)
        except RenderError as exc:
            await self.statuses.for_dispatch(d, Status.REJECTED, error=exc.reason, detail=exc.reason)
            await self.dead_letters.send(record, reason=exc.reason, detail=str(exc), stage="delivery")
            return
        except DeliveryError as exc:
            await self.statuses.for_dispatch(d, Status.FAILED, error=exc.reason, detail=exc.detail)
            await self.dead_letters.send(record, reason=exc.reason, detail=exc.detail, stage="delivery")
            return
        entry = self.catalog.get(d.event_type) if self.catalog else None
        message = OutboundMessage(
            message_id=d.message_id, channel=d.channel, address=address, rendered=rendered,
            idempotency_key=d.idempotency_key, display_name=d.to.name, locale=d.to.locale,
            event_type=d.event_type, metadata={"message_id": d.message_id, "recipient_id": d.to.id},
            attachments=attachments,
            options={"priority": d.priority, **({"keypad": dict(entry.keypad)} if entry and entry.keypad else {})})
        await self._send(record, d, sender, message)

    async def _attachments(self, d: Dispatch, rendered: Rendered) -> tuple[Attachment, ...]:
        """Files for an email: inline ones from the payload and the PDF part, built off the event loop (a PDF
        takes tens of milliseconds). Dated by the event, so a resend attaches identical bytes."""
        if d.channel != "email" or ("pdf" not in rendered.parts and not d.payload.get("attachments")):
            return ()
        return await asyncio.to_thread(attachments_for, rendered, d.payload, title=rendered["subject"],
                                       filename=f"{d.event_type.split('.')[0]}.pdf", created_at=d.event_time)

    async def _send(self, record: Record, d: Dispatch, sender: Sender, message: OutboundMessage) -> None:
        locale = message.rendered.locale
        for attempt in range(d.attempt, d.attempt + self.max_attempts):
            started = time.perf_counter()
            try:
                result = await sender.send(message)
            except DeliveryError as exc:
                provider = exc.provider or sender.name
                self.metrics.sends.labels(d.channel, provider, "error").inc()
                self.metrics.provider_errors.labels(d.channel, provider, exc.reason).inc()
                last = attempt == d.attempt + self.max_attempts - 1
                if exc.retriable and not last:
                    await self.statuses.for_dispatch(d, Status.RETRYING, provider=provider, locale=locale,
                                                     attempt=attempt, error=exc.reason, detail=exc.detail)
                    delay = getattr(exc, "retry_after", None) or random.uniform(0, self.backoff * 2 ** (attempt - 1))
                    await asyncio.sleep(delay)
                    continue
                await self.statuses.for_dispatch(d, Status.FAILED, provider=provider, locale=locale,
                                                 attempt=attempt, error=exc.reason, detail=exc.detail)
                await self.dead_letters.send(record, reason=exc.reason, detail=f"{exc.reason}: {exc.detail}",
                                             stage="delivery")
                return
            elapsed = time.perf_counter() - started
            self.metrics.sends.labels(d.channel, result.provider, "sent").inc()
            self.metrics.send_seconds.labels(d.channel, result.provider).observe(elapsed)
            self.metrics.end_to_end_seconds.labels(d.channel, d.priority).observe(
                max(0.0, (self.clock() - d.event_time).total_seconds()))
            await self.statuses.for_dispatch(d, Status.SENT, provider=result.provider, locale=locale,
                                             attempt=attempt, detail=result.detail)
            return
