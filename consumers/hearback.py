"""Hearing back from providers: verified webhooks become statuses on `herald.status` and replies on
`herald.replies`. Framework-neutral: `web.py` adapts Faust's requests to `WebhookRequest`."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

from channels.base import WebhookReceiver
from channels.webhooks import InboundMessage, WebhookRequest, WebhookResponse
from consumers.metrics import Metrics
from consumers.records import Publisher
from consumers.status import StatusEmitter
from schemas.status import Status

log = logging.getLogger(__name__)

REPLY_TYPE = "herald.reply.received"


def reply_event(reply: InboundMessage, provider: str, now: datetime) -> dict[str, Any]:
    """A CloudEvent for upstream: who answered what, correlated to Herald's message when known."""
    basis = f"{reply.channel}|{provider}|{reply.provider_message_id or ''}|{reply.sender}|{reply.text}|{reply.digits}"
    return {
        "specversion": "1.0", "id": "rpl-" + hashlib.sha256(basis.encode()).hexdigest()[:24],
        "source": f"herald/{reply.channel}/{provider}", "type": REPLY_TYPE,
        "time": (reply.received_at or now).isoformat(), "subject": reply.recipient_id,
        "datacontenttype": "application/json",
        "data": {"channel": reply.channel, "provider": provider, "message_id": reply.message_id,
                 "recipient_id": reply.recipient_id, "from": reply.sender, "text": reply.text,
                 "digits": reply.digits},
    }


class HearBack:
    """Checks each webhook's signature, then publishes what it says. A bad signature changes nothing."""

    def __init__(self, receivers: Mapping[tuple[str, str], WebhookReceiver], statuses: StatusEmitter,
                 publisher: Publisher, metrics: Metrics, clock: Callable[[], datetime]) -> None:
        self.receivers = receivers
        self.statuses = statuses
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock

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
            if update.message_id is None:
                self.metrics.webhooks.labels(channel, vendor, "uncorrelated").inc()
                continue
            await self.statuses.for_receipt(update.message_id, update.status, channel=channel, provider=vendor,
                                            detail=update.detail)
        for reply in result.inbound:
            event = reply_event(reply, vendor, self.clock())
            key = (reply.recipient_id or reply.sender).encode()
            await self.publisher.send("replies", key, orjson.dumps(event))
            self.metrics.replies.labels(channel, vendor).inc()
            if reply.message_id:
                await self.statuses.for_receipt(reply.message_id, Status.REPLIED, channel=channel, provider=vendor,
                                                detail="digits" if reply.digits else "text")
        self.metrics.webhooks.labels(channel, vendor, "ok").inc()
        return result.response
