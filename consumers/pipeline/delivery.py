"""The delivery stage: one dispatch in; render, send through the channel's provider, publish the outcome."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from channels.base import Attachment, OutboundMessage, Sender
from channels.errors import DeliveryError, RenderError
from channels.rendering.attachments import attachments_for
from channels.rendering.render import Rendered, Renderer
from consumers.observe.metrics import Metrics
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.fallback import next_dispatch
from consumers.pipeline.identity import record_message_id
from consumers.pipeline.records import Publisher, Record
from consumers.pipeline.router import ConsentCheck, describe_validation_error
from consumers.pipeline.status import StatusEmitter
from consumers.state.documents import Documents
from consumers.state.sends import SendLedger
from consumers.topics import dispatch_topic
from schemas.catalog import Catalog
from schemas.dispatch import Dispatch
from schemas.status import Status

log = logging.getLogger(__name__)


Retry = Callable[[datetime, Dispatch, str], Awaitable[None]]


class DeliveryStage:
    """Sends dispatches of the channels it has senders for.

    A retriable failure is handed to the scheduler (`retry`) with exponential backoff and full jitter, never
    waited for in place, so a slow provider does not hold its partition. Without a scheduler (unit tests) it
    retries in place. A permanent failure falls back to the next channel of the type, when one is left.
    """

    def __init__(self, renderer: Renderer, senders: Mapping[str, Sender], statuses: StatusEmitter,
                 dead_letters: DeadLetters, metrics: Metrics, *, clock: Callable[[], datetime],
                 catalog: Catalog | None = None, template_globals: Mapping[str, Any] | None = None,
                 documents: Documents | None = None, max_attempts: int = 3, backoff: float = 0.5,
                 backoff_cap: float = 300.0, sends: SendLedger | None = None, retry: Retry | None = None,
                 publisher: Publisher | None = None, consent: ConsentCheck | None = None,
                 session_open: Callable[[str], bool] | None = None,
                 after_send: Callable[[Dispatch, str], Awaitable[None]] | None = None,
                 headers: Callable[[Dispatch], Mapping[str, str]] | None = None,
                 on_failure: Callable[[Dispatch, DeliveryError], Awaitable[None]] | None = None,
                 rng: random.Random | None = None) -> None:
        self.headers = headers
        self.on_failure = on_failure
        self.catalog = catalog
        self.documents = documents
        self.sends = sends
        self.retry = retry
        self.publisher = publisher
        self.consent = consent
        self.session_open = session_open
        self.after_send = after_send
        self.backoff_cap = backoff_cap
        self.rng = rng or random.Random()
        self.renderer = renderer
        self.senders = senders
        self.statuses = statuses
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.clock = clock
        self.template_globals = dict(template_globals or {})
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._in_flight: set[str] = set()  # message ids this worker is handling right now

    async def handle(self, record: Record) -> None:
        try:
            d = Dispatch.model_validate_json(record.value or b"")
        except ValidationError as exc:
            mid = record_message_id(record.topic, record.partition, record.offset)
            detail = describe_validation_error(exc)
            await self.statuses.for_event(mid, Status.REJECTED, error="invalid_dispatch", detail=detail)
            await self.dead_letters.send(record, reason="invalid_dispatch", detail=detail, stage="delivery",
                                         error_class=type(exc).__name__, message_id=mid)
            return
        if d.expires_at and self.clock() >= d.expires_at:
            await self.statuses.for_dispatch(d, Status.EXPIRED, detail="ttl")
            return
        if self.sends and self.sends.already_sent(d.message_id):
            # A redelivered dispatch (crash, rebalance, replayed event): the provider has it already.
            self.metrics.duplicates_prevented.labels(d.channel).inc()
            await self.statuses.for_dispatch(d, Status.DEDUPLICATED, detail="already_sent")
            return
        if self.sends and self.retry and d.message_id in self._in_flight:
            # Another copy of this dispatch (a replayed event's) is on its way out of this very worker, which may
            # not have written `pending` yet: look again when a lease would end.
            await self.retry(self.clock() + self.sends.lease, d, "lease")
            return
        self._in_flight.add(d.message_id)  # no await since the check above: the claim is atomic
        try:
            await self._deliver(record, d)
        finally:
            self._in_flight.discard(d.message_id)

    async def _deliver(self, record: Record, d: Dispatch) -> None:
        if self.sends and self.retry and (lease_ends := self.sends.lease_held(d)):
            # Another worker took this attempt moments ago (a rebalance), or died sending it: look again when
            # its lease ends, and send then if it is still not done.
            await self.retry(lease_ends, d, "lease")
            return
        if self.sends and self.sends.was_pending(d):
            self.metrics.resends.labels(d.channel).inc()  # at most one duplicate, and it is counted
        sender = self.senders.get(d.channel)
        address = d.to.address_for(d.channel)
        if address is not None and self.consent and (refusal := self.consent(d.to.id, d.category, d.channel,
                                                                             address)):
            # Checked again at send time: a STOP that arrived while the message was queued stops it.
            await self.statuses.for_dispatch(d, Status.SUPPRESSED, detail=refusal)
            return
        if sender is None or address is None:
            reason = "no_sender" if sender is None else "no_address"
            await self.statuses.for_dispatch(d, Status.FAILED, error=reason, detail=reason)
            await self.dead_letters.send(record, reason=reason, detail=f"channel {d.channel}", stage="delivery",
                                         dispatch=d)
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
            await self.dead_letters.send(record, reason=exc.reason, detail=str(exc), stage="delivery", dispatch=d,
                                         error_class=type(exc).__name__)
            return
        if document_url and self.documents:
            await self.documents.remember(d)
        try:
            attachments = await self._attachments(d, rendered)
        except RenderError as exc:
            await self.statuses.for_dispatch(d, Status.REJECTED, error=exc.reason, detail=exc.reason)
            await self.dead_letters.send(record, reason=exc.reason, detail=str(exc), stage="delivery", dispatch=d,
                                         error_class=type(exc).__name__)
            return
        except DeliveryError as exc:
            await self.statuses.for_dispatch(d, Status.FAILED, error=exc.reason, detail=exc.detail)
            await self.dead_letters.send(record, reason=exc.reason, detail=exc.detail, stage="delivery", dispatch=d,
                                         error_class=type(exc).__name__)
            return
        entry = self.catalog.get(d.event_type) if self.catalog else None
        message = OutboundMessage(
            message_id=d.message_id, channel=d.channel, address=address, rendered=rendered,
            idempotency_key=d.idempotency_key, display_name=d.to.name, locale=d.to.locale,
            event_type=d.event_type, metadata={"message_id": d.message_id, "recipient_id": d.to.id},
            attachments=attachments, headers=self.headers(d) if self.headers else {},
            # The tenant picks the webhook's signing keys (channels/providers/webhook.py); options never reach a vendor.
            options={"priority": d.priority, **({"tenant": d.tenant} if d.tenant else {}),
                     **({"keypad": dict(entry.keypad)} if entry and entry.keypad else {}),
                     **({"whatsapp_session_open": True} if d.channel == "whatsapp" and self.session_open
                        and self.session_open(d.to.id) else {})})
        await self._send(record, d, sender, message)

    async def _attachments(self, d: Dispatch, rendered: Rendered) -> tuple[Attachment, ...]:
        """Files for an email: inline ones from the payload and the PDF part, built off the event loop (a PDF
        takes tens of milliseconds). Dated by the event, so a resend attaches identical bytes."""
        if d.channel != "email" or ("pdf" not in rendered.parts and not d.payload.get("attachments")):
            return ()
        return await asyncio.to_thread(attachments_for, rendered, d.payload, title=rendered["subject"],
                                       filename=f"{d.event_type.split('.')[0]}.pdf", created_at=d.event_time)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, never sooner than the provider's `Retry-After`."""
        jitter = self.rng.uniform(0, min(self.backoff_cap, self.backoff * 2 ** (attempt - 1)))
        return max(retry_after or 0.0, jitter)

    async def _send(self, record: Record, d: Dispatch, sender: Sender, message: OutboundMessage) -> None:
        if self.sends:
            await self.sends.pending(d)
        attempt = d.attempt
        while True:
            started = time.perf_counter()
            try:
                result = await sender.send(message)
            except DeliveryError as exc:
                delay = await self._failed_attempt(record, d, sender, message, exc, attempt)
                if delay is None:
                    return
                await asyncio.sleep(delay)  # only without a scheduler (unit tests): retry in place
                attempt += 1
                continue
            except Exception:
                # A bug, not a provider answer: the agent dead-letters the record; the ledger must not keep the
                # attempt `pending`, or the next try would wait out a lease for nothing.
                if self.sends:
                    await self.sends.outcome(d.message_id, "failed")
                raise
            elapsed = time.perf_counter() - started
            self.metrics.sends.labels(d.channel, result.provider, "sent").inc()
            self.metrics.send_seconds.labels(d.channel, result.provider).observe(elapsed)
            self.metrics.end_to_end_seconds.labels(d.channel, d.priority).observe(
                max(0.0, (self.clock() - d.event_time).total_seconds()))
            # Ledger first: a crash before the status leaves `deduplicated` as the message's last status (it was
            # sent); the other order would send it twice.
            if self.sends:
                await self.sends.sent(d, result.provider, result.provider_message_id)
            await self.statuses.for_dispatch(d, Status.SENT, provider=result.provider, attempt=attempt,
                                             locale=message.rendered.locale, detail=result.detail)
            await self._after_sent(d, result.provider)
            return

    async def _failed_attempt(self, record: Record, d: Dispatch, sender: Sender, message: OutboundMessage,
                              exc: DeliveryError, attempt: int) -> float | None:
        """Report a failed attempt and arrange what follows. Returns a delay only when the caller must retry
        in place (no scheduler); None when the attempt is settled (retry scheduled, or failed for good)."""
        provider = exc.provider or sender.name
        locale = message.rendered.locale
        self.metrics.sends.labels(d.channel, provider, "error").inc()
        self.metrics.provider_errors.labels(d.channel, provider, exc.reason).inc()
        entry = self.catalog.get(d.event_type) if self.catalog else None
        allowed = entry.attempts if entry and entry.attempts else self.max_attempts
        last_attempt = allowed if self.retry is not None else d.attempt + allowed - 1
        delay = self._backoff(attempt, getattr(exc, "retry_after", None))
        due = self.clock() + timedelta(seconds=delay)
        # An open circuit never reached the provider: waiting for it costs no attempt, only time (the message's
        # time-to-live still bounds it), so a long outage without a second provider loses nothing.
        spent = 0 if exc.code == "circuit_open" else 1
        if exc.retriable and (attempt < last_attempt or not spent) and (d.expires_at is None or due < d.expires_at):
            await self.statuses.for_dispatch(d, Status.RETRYING, provider=provider, locale=locale, attempt=attempt,
                                             error=exc.reason, detail=exc.detail)
            if self.retry is None:
                return delay
            if self.sends:  # this attempt is over: the retry must not wait out its lease
                await self.sends.outcome(d.message_id, "failed")
            await self.retry(due, d.model_copy(update={
                "attempt": attempt + spent, "first_failure_at": d.first_failure_at or self.clock()}), "retry")
            return None
        await self.statuses.for_dispatch(d, Status.FAILED, provider=provider, locale=locale, attempt=attempt,
                                         error=exc.reason, detail=exc.detail)
        await self.dead_letters.send(
            record, reason=exc.reason, detail=f"{exc.reason}: {exc.detail}", stage="delivery",
            error_class=type(exc).__name__, dispatch=d.model_copy(update={"attempt": attempt}),
            first_failure=d.first_failure_at or self.clock())
        if self.sends:
            await self.sends.outcome(d.message_id, "failed", fell_back=True)
        if self.on_failure is not None:
            await self.on_failure(d, exc)
        await self.fall_back(d, f"{d.channel} {exc.reason}")
        return None

    async def _after_sent(self, d: Dispatch, provider: str) -> None:
        entry = self.catalog.get(d.event_type) if self.catalog else None
        if entry and entry.receipt_wait and d.fallback and self.retry is not None:
            await self.retry(self.clock() + entry.receipt_wait, d, "receipt_wait")
        if self.after_send is not None:
            await self.after_send(d, provider)

    async def fall_back(self, d: Dispatch, why: str) -> Dispatch | None:
        """Send the message on the next channel left (SMS -> voice -> email for a code), if any."""
        nxt = next_dispatch(d)
        if nxt is None or self.publisher is None:
            return None
        await self.statuses.for_dispatch(nxt, Status.ACCEPTED, attempt=0, detail=f"fallback: {why}")
        topic = dispatch_topic(nxt.channel, critical=nxt.priority == "critical")
        await self.publisher.send(topic, nxt.message_id.encode(), nxt.model_dump_json().encode(), durable=True)
        return nxt
