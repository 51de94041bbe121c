"""Hearing back from providers: verified webhooks become statuses on `herald.status` and replies on
`herald.replies`. Framework-neutral: `web.py` adapts Faust's requests to `WebhookRequest`."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

from channels.base import WebhookReceiver
from channels.webhooks import InboundMessage, StatusUpdate, WebhookRequest, WebhookResponse
from consumers.identity import recipient_hash
from consumers.keywords import Keyword, classify
from consumers.metrics import Metrics
from consumers.preferences import PreferenceLedger
from consumers.records import Publisher
from consumers.status import StatusEmitter
from schemas.status import Status

log = logging.getLogger(__name__)

REPLY_TYPE = "herald.reply.received"
# Receipts saying the address itself is dead: never send to it again.
SUPPRESSING = frozenset({Status.BOUNCED, Status.COMPLAINED})

Contacts = Callable[[str], str | None]
SendReply = Callable[[InboundMessage, str], Awaitable[None]]
# What the send ledger and fallback make of a receipt, and what two-way replies make of an answer.
OnReceipt = Callable[[str, Status], Awaitable[None]]
OnReply = Callable[[InboundMessage], Awaitable[None]]


def _no_contacts(address: str) -> str | None:
    return None


def reply_event(reply: InboundMessage, provider: str, now: datetime,
                keyword: Keyword | None = None) -> dict[str, Any]:
    """A CloudEvent for upstream: who answered what, correlated to Herald's message when known; `keyword` says
    when the text was STOP, START or HELP (Herald already applied it to the preferences)."""
    basis = f"{reply.channel}|{provider}|{reply.provider_message_id or ''}|{reply.sender}|{reply.text}|{reply.digits}"
    return {
        "specversion": "1.0", "id": "rpl-" + hashlib.sha256(basis.encode()).hexdigest()[:24],
        "source": f"herald/{reply.channel}/{provider}", "type": REPLY_TYPE,
        "time": (reply.received_at or now).isoformat(), "subject": reply.recipient_id,
        "datacontenttype": "application/json",
        "data": {"channel": reply.channel, "provider": provider, "message_id": reply.message_id,
                 "recipient_id": reply.recipient_id, "from": reply.sender, "text": reply.text,
                 "digits": reply.digits, "keyword": keyword.value if keyword else None},
    }


class HearBack:
    """Checks each webhook's signature, then publishes what it says. A bad signature changes nothing.

    With a `ledger`, what people say also changes their preferences: STOP/START opt the channel out/in, every
    inbound message records when the person last wrote (WhatsApp's 24 h window), a bounce or complaint suppresses
    the address, an unsubscribe receipt withdraws promotional consent. `contacts` finds the recipient id of an
    address when the vendor does not tell it; `send_reply(inbound, kind)` answers STOP/START/HELP ("stop",
    "start", "help"). `secret` keys the address hashes (defaults to the status emitter's, so they join).
    """

    def __init__(self, receivers: Mapping[tuple[str, str], WebhookReceiver], statuses: StatusEmitter,
                 publisher: Publisher, metrics: Metrics, clock: Callable[[], datetime], *,
                 ledger: PreferenceLedger | None = None, contacts: Contacts = _no_contacts,
                 send_reply: SendReply | None = None, secret: bytes | None = None,
                 on_receipt: OnReceipt | None = None, on_reply: OnReply | None = None) -> None:
        self.on_receipt = on_receipt
        self.on_reply = on_reply
        self.receivers = receivers
        self.statuses = statuses
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.ledger = ledger
        self.contacts = contacts
        self.send_reply = send_reply
        self.secret = statuses.secret if secret is None else secret

    async def handle(self, channel: str, vendor: str, request: WebhookRequest) -> WebhookResponse:
        receiver = self.receivers.get((channel, vendor))
        if receiver is None:
            self.metrics.webhooks.labels("unknown", "unknown", "unknown_provider").inc()
            return WebhookResponse(status=404, body=b"unknown provider")
        if not receiver.verify_webhook(request):
            self.metrics.webhooks.labels(channel, vendor, "forbidden").inc()
            log.warning("webhook signature refused", extra={"channel": channel, "provider": vendor})
            return WebhookResponse(status=403, body=b"bad signature")
        try:
            result = receiver.parse_webhook(request)
        except (ValueError, KeyError, TypeError) as exc:
            self.metrics.webhooks.labels(channel, vendor, "bad_request").inc()
            log.warning("webhook unreadable", extra={"channel": channel, "provider": vendor,
                                                     "error": type(exc).__name__})
            return WebhookResponse(status=400, body=b"unreadable")
        for update in result.statuses:
            if update.status is None:
                self.metrics.unmapped_statuses.labels(channel, vendor).inc()
                log.info("unmapped vendor status", extra={"channel": channel, "provider": vendor,
                                                          "vendor_status": update.vendor_status[:40]})
                continue
            await self._apply_receipt(channel, update)
            if update.message_id is None:
                self.metrics.webhooks.labels(channel, vendor, "uncorrelated").inc()
                continue
            await self.statuses.for_receipt(update.message_id, update.status, channel=channel, provider=vendor,
                                            detail=update.detail)
            if self.on_receipt is not None:
                await self.on_receipt(update.message_id, update.status)
        for reply in result.inbound:
            await self._inbound(reply, channel, vendor)
        self.metrics.webhooks.labels(channel, vendor, "ok").inc()
        return result.response

    def _recipient(self, given: str | None, address: str | None) -> str | None:
        if given:
            return given
        return self.contacts(address) if address else None

    async def _inbound(self, reply: InboundMessage, channel: str, vendor: str) -> None:
        keyword = classify(reply.text) if reply.text is not None else None
        recipient = self._recipient(reply.recipient_id, reply.sender)
        if recipient and recipient != reply.recipient_id:
            reply = dataclasses.replace(reply, recipient_id=recipient)  # upstream gets the id, keyed by it
        if self.ledger is not None and recipient:
            # Ledger first: if it fails the webhook fails and the provider retries; the reply event id is stable.
            await self.ledger.record_inbound(recipient, reply.channel, reply.received_at or self.clock())
            if keyword is Keyword.STOP:
                await self.ledger.opt_out(recipient, reply.channel)
            elif keyword is Keyword.START:
                await self.ledger.opt_in(recipient, reply.channel)
        if keyword is not None:
            if keyword is Keyword.HELP or (self.ledger is not None and recipient):
                result = "ok"
            else:  # a STOP Herald could not record: visible, because sending on would break the person's wish
                result = "no_ledger" if self.ledger is None else "unknown_recipient"
            self.metrics.keywords.labels(channel, keyword.value, result).inc()
            if result != "ok":
                log.warning("opt keyword not applied", extra={"channel": channel, "provider": vendor,
                                                              "keyword": keyword.value, "reason": result})
        event = reply_event(reply, vendor, self.clock(), keyword)
        key = (reply.recipient_id or reply.sender).encode()
        await self.publisher.send("replies", key, orjson.dumps(event))
        self.metrics.replies.labels(channel, vendor).inc()
        if reply.message_id:
            await self.statuses.for_receipt(reply.message_id, Status.REPLIED, channel=channel, provider=vendor,
                                            detail="digits" if reply.digits else "text")
        if keyword is None and self.on_reply is not None:
            await self.on_reply(reply)
        if keyword is not None and self.send_reply is not None:
            try:
                await self.send_reply(reply, keyword.value)
            except Exception:  # the acknowledgement is best effort; the opt-out itself is already recorded
                log.exception("keyword reply failed", extra={"channel": channel, "keyword": keyword.value})

    async def _apply_receipt(self, channel: str, update: StatusUpdate) -> None:
        """Dead addresses are suppressed and unsubscribes withdraw promotional consent, when the recipient is known.

        `address` and `recipient_id` are read with getattr: providers fill them where the vendor says them."""
        if self.ledger is None or update.status not in (*SUPPRESSING, Status.UNSUBSCRIBED):
            return
        address: str | None = getattr(update, "address", None)
        recipient = self._recipient(getattr(update, "recipient_id", None), address)
        if not recipient:
            log.info("receipt not applied to preferences: unknown recipient",
                     extra={"channel": channel, "status": update.status.value})
            return
        if update.status is Status.UNSUBSCRIBED:
            await self.ledger.set_promotional(recipient, channel, False, source="receipt")
        elif address:
            await self.ledger.suppress(recipient, recipient_hash(self.secret, address), update.status.value)
