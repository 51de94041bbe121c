"""The delivery stage: one dispatch in; render, send through the channel's provider, publish the outcome."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from channels.base import Attachment, OutboundMessage, Sender
from channels.errors import DeliveryError, RenderError
from channels.rendering.attachments import attachments_for
from channels.rendering.render import Rendered, Renderer
from consumers.clock import Clock
from consumers.identity import record_message_id
from consumers.pipeline.fallback import fall_back
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import Record
from consumers.pipeline.router import ConsentCheck, describe_validation_error
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.variants import variant_folder
from consumers.state.documents import Documents
from consumers.state.sends import SendLedger
from schemas.catalog import Catalog
from schemas.dispatch import Dispatch
from schemas.status import Status

log = logging.getLogger(__name__)


def _consents(recipient_id: str, category: str, channel: str, address: str, /, *, event_type: str | None = None,
              tenant: str | None = None) -> str | None:
    return None


def _session_closed(recipient_id: str) -> bool:
    return False


def _no_headers(d: Dispatch) -> Mapping[str, str]:
    return {}


def _untracked(d: Dispatch, rendered: Rendered) -> Rendered:
    return rendered


async def _after_send(d: Dispatch, provider: str) -> None:
    return None


async def _keep_nothing(d: Dispatch, rendered: Rendered) -> None:
    return None


async def _on_failure(d: Dispatch, error: DeliveryError) -> None:
    return None


@dataclass(frozen=True, slots=True)
class DeliveryHooks:
    """What the rest of Herald adds around a send (consumers/hooks.py builds them). Each defaults to
    nothing, so a stage without them sends plainly.

    `consent` is asked again at send time; `session_open` says whether WhatsApp's 24-hour window is open;
    `headers` adds message headers (List-Unsubscribe); `track` adds open and click tracking to what was rendered;
    `after_send` runs once a message is sent, `on_failure` once it failed for good; `keep_content` is given what a
    sent message said (the console's copy, where the type allows it).
    """

    consent: ConsentCheck = _consents
    session_open: Callable[[str], bool] = _session_closed
    headers: Callable[[Dispatch], Mapping[str, str]] = _no_headers
    track: Callable[[Dispatch, Rendered], Rendered] = _untracked
    after_send: Callable[[Dispatch, str], Awaitable[None]] = _after_send
    on_failure: Callable[[Dispatch, DeliveryError], Awaitable[None]] = _on_failure
    keep_content: Callable[[Dispatch, Rendered], Awaitable[None]] = _keep_nothing


@dataclass(frozen=True, slots=True)
class Backoff:
    """How often and how late a retriable failure is tried again: exponential backoff with full jitter, never sooner
    than the provider's `Retry-After`. A type's `attempts` in the catalog overrides `max_attempts`."""

    max_attempts: int = 3
    base: float = 0.5
    cap: float = 300.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        jitter = self.rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        return max(retry_after or 0.0, jitter)


class DeliveryStage:
    """Sends dispatches of the channels it has senders for.

    A retriable failure is handed to the scheduler with `Backoff`, never waited for in place, so a slow provider
    does not hold its partition. A permanent failure falls back to the next channel of the type, when one is left.
    The send ledger keeps a redelivered dispatch from being sent twice.
    """

    def __init__(self, renderer: Renderer, senders: Mapping[str, Sender], catalog: Catalog, outlets: Outlets, *,
                 sends: SendLedger, documents: Documents, scheduler: Scheduler, clock: Clock,
                 template_globals: Mapping[str, Any] | None = None, hooks: DeliveryHooks = DeliveryHooks(),
                 backoff: Backoff | None = None) -> None:
        self.renderer = renderer
        self.senders = senders
        self.catalog = catalog
        self.outlets = outlets
        self.statuses = outlets.statuses
        self.dead_letters = outlets.dead_letters
        self.metrics = outlets.metrics
        self.sends = sends
        self.documents = documents
        self.scheduler = scheduler
        self.clock = clock
        self.template_globals = dict(template_globals or {})
        self.hooks = hooks
        self.backoff = backoff or Backoff()
        self._in_flight: set[str] = set()  # message ids this worker is handling right now
        for channel in senders:  # each channel's series at 0 from the start, not absent until its first send
            self.metrics.sends_in_flight.labels(channel)

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
        if self.sends.already_sent(d.message_id):
            # A redelivered dispatch (crash, rebalance, replayed event): the provider has it already.
            self.metrics.duplicates_prevented.labels(d.channel).inc()
            await self.statuses.for_dispatch(d, Status.DEDUPLICATED, detail="already_sent")
            return
        if d.message_id in self._in_flight:
            # Another copy of this dispatch (a replayed event's) is on its way out of this very worker, which may
            # not have written `pending` yet: look again when a lease would end.
            await self.scheduler.add(self.clock() + self.sends.lease, d, "lease", partition=record.partition)
            return
        self._in_flight.add(d.message_id)  # no await since the check above: the claim is atomic
        try:
            await self._deliver(record, d)
        finally:
            self._in_flight.discard(d.message_id)

    async def _deliver(self, record: Record, d: Dispatch) -> None:
        if lease_ends := self.sends.lease_held(d):
            # Another worker took this attempt moments ago (a rebalance), or died sending it: look again when
            # its lease ends, and send then if it is still not done.
            await self.scheduler.add(lease_ends, d, "lease", partition=record.partition)
            return
        if self.sends.was_pending(d):
            self.metrics.resends.labels(d.channel).inc()  # at most one duplicate, and it is counted
        sender = self.senders.get(d.channel)
        address = d.to.address_for(d.channel)
        if address is not None and (refusal := self.hooks.consent(d.to.id, d.category, d.channel, address,
                                                                  event_type=d.event_type, tenant=d.tenant)):
            # Checked again at send time: a STOP that arrived while the message was queued stops it.
            await self.statuses.for_dispatch(d, Status.SUPPRESSED, detail=refusal)
            return
        if sender is None or address is None:
            reason = "no_sender" if sender is None else "no_address"
            await self.statuses.for_dispatch(d, Status.FAILED, error=reason, detail=reason)
            await self.dead_letters.send(record, reason=reason, detail=f"channel {d.channel}", stage="delivery",
                                         dispatch=d)
            return
        document_url = self.documents.link_for(d)
        try:
            rendered = self.renderer.render(
                d.event_type, d.channel, locale=d.to.locale, timezone=d.to.timezone,
                context={**self.template_globals, "to": d.to.model_dump(mode="json"), "payload": d.payload,
                         "message_id": d.message_id, "event_id": d.event_id, "tenant": d.tenant,
                         "document_url": document_url}, variant_folder=variant_folder(self.catalog, d))
            if document_url:
                await self.documents.remember(d)
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
        await self._send(record, d, sender, self._message(d, address, rendered, attachments))

    def _message(self, d: Dispatch, address: str, rendered: Rendered,
                 attachments: tuple[Attachment, ...]) -> OutboundMessage:
        entry = self.catalog.get(d.event_type)
        options: dict[str, Any] = {"priority": d.priority}
        if d.tenant:  # picks the webhook's signing keys (channels/providers/webhook.py); never reaches a vendor
            options["tenant"] = d.tenant
        if entry and entry.keypad:
            options["keypad"] = dict(entry.keypad)
        if d.channel == "whatsapp" and self.hooks.session_open(d.to.id):
            options["whatsapp_session_open"] = True
        return OutboundMessage(
            message_id=d.message_id, channel=d.channel, address=address, rendered=self.hooks.track(d, rendered),
            idempotency_key=d.idempotency_key, display_name=d.to.name, locale=d.to.locale,
            event_type=d.event_type, metadata={"message_id": d.message_id, "recipient_id": d.to.id},
            attachments=attachments, headers=self.hooks.headers(d), options=options)

    async def _attachments(self, d: Dispatch, rendered: Rendered) -> tuple[Attachment, ...]:
        """Files for an email: inline ones from the payload and the PDF part, built off the event loop (a PDF
        takes tens of milliseconds). Dated by the event, so a resend attaches identical bytes."""
        if d.channel != "email" or ("pdf" not in rendered.parts and not d.payload.get("attachments")):
            return ()
        return await asyncio.to_thread(attachments_for, rendered, d.payload, title=rendered["subject"],
                                       filename=f"{d.event_type.split('.')[0]}.pdf", created_at=d.event_time,
                                       facturx=self.documents.facturx(d))

    async def _send(self, record: Record, d: Dispatch, sender: Sender, message: OutboundMessage) -> None:
        await self.sends.pending(d)
        started = time.perf_counter()
        try:
            with self.metrics.sends_in_flight.labels(d.channel).track_inprogress():
                result = await sender.send(message)
        except DeliveryError as exc:
            await self._failed_attempt(record, d, sender, message, exc)
            return
        except Exception:
            # A bug, not a provider answer: the agent dead-letters the record; the ledger must not keep the
            # attempt `pending`, or the next try would wait out a lease for nothing.
            await self.sends.outcome(d.message_id, "failed")
            raise
        elapsed = time.perf_counter() - started
        self.metrics.sends.labels(d.channel, result.provider, "sent").inc()
        self.metrics.send_seconds.labels(d.channel, result.provider).observe(elapsed)
        self.metrics.end_to_end_seconds.labels(d.channel, d.priority).observe(
            max(0.0, (self.clock() - d.event_time).total_seconds()))
        # Ledger first: a crash before the status leaves `deduplicated` as the message's last status (it was
        # sent); the other order would send it twice.
        await self.sends.sent(d, result.provider, result.provider_message_id)
        await self.statuses.for_dispatch(d, Status.SENT, provider=result.provider, attempt=d.attempt,
                                         locale=message.rendered.locale, detail=result.detail,
                                         provider_message_id=result.provider_message_id, segments=result.segments)
        entry = self.catalog.get(d.event_type)
        if entry and entry.receipt_wait and d.fallback:
            await self.scheduler.add(self.clock() + entry.receipt_wait, d, "receipt_wait", kind="receipt_check",
                                     partition=record.partition)
        await self.hooks.after_send(d, result.provider)
        await self.hooks.keep_content(d, message.rendered)

    async def _failed_attempt(self, record: Record, d: Dispatch, sender: Sender, message: OutboundMessage,
                              exc: DeliveryError) -> None:
        """Report a failed attempt and arrange what follows: a retry through the scheduler, or failure for good
        and the next channel."""
        provider, locale, attempt = exc.provider or sender.name, message.rendered.locale, d.attempt
        self.metrics.sends.labels(d.channel, provider, "error").inc()
        self.metrics.provider_errors.labels(d.channel, provider, exc.reason).inc()
        entry = self.catalog.get(d.event_type)
        allowed = entry.attempts if entry and entry.attempts else self.backoff.max_attempts
        due = self.clock() + timedelta(seconds=self.backoff.delay(attempt, getattr(exc, "retry_after", None)))
        # An open circuit never reached the provider: waiting for it costs no attempt, only time (the message's
        # time-to-live still bounds it), so a long outage without a second provider loses nothing.
        spent = 0 if exc.code == "circuit_open" else 1
        if exc.retriable and (attempt < allowed or not spent) and (d.expires_at is None or due < d.expires_at):
            await self.statuses.for_dispatch(d, Status.RETRYING, provider=provider, locale=locale, attempt=attempt,
                                             error=exc.reason, detail=exc.detail)
            await self.sends.outcome(d.message_id, "failed")  # this attempt is over: no lease to wait out
            await self.scheduler.add(due, d.model_copy(update={
                "attempt": attempt + spent, "first_failure_at": d.first_failure_at or self.clock()}), "retry",
                partition=record.partition)
            return
        await self.statuses.for_dispatch(d, Status.FAILED, provider=provider, locale=locale, attempt=attempt,
                                         error=exc.reason, detail=exc.detail)
        await self.dead_letters.send(
            record, reason=exc.reason, detail=f"{exc.reason}: {exc.detail}", stage="delivery",
            error_class=type(exc).__name__, dispatch=d, first_failure=d.first_failure_at or self.clock())
        await self.sends.outcome(d.message_id, "failed", fell_back=True)
        await self.hooks.on_failure(d, exc)
        await fall_back(self.outlets, d, f"{d.channel} {exc.reason}")
