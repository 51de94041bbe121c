"""Hearing back from providers: verified webhooks become statuses on `herald.status` and replies on
`herald.replies`. Framework-neutral: `web.py` adapts Faust's requests to `WebhookRequest`.

What a webhook may do, in order, and what each failure answers:

1. unknown provider: 404; a body over `max_body_bytes`: 413.
2. `verify_webhook` (signature, and the signed timestamp where the vendor signs one): false is 403; raising is a
   malformed request (400, counted `malformed` and logged as a bug): nothing has changed yet.
3. `parse_webhook`: ValueError/KeyError/TypeError is 400 `bad_request`; anything else 400 `malformed` (a bug,
   logged with its traceback). Parsing is pure, so nothing has changed yet either.
4. Replays: every vendor id of the request (`WebhookResult.delivery_id`) and of each receipt or message in it
   (`delivery_id`) that was applied within the replay window is skipped and counted; a request whose every item is
   a replay answers 200 (so the vendor stops) having changed nothing. Ids live in a `KeyValueStore`
   (`herald.state.webhooks`, so they survive restarts), keyed by a hash of (channel, provider, id), valued by when
   they were first applied; the retention janitor deletes them after the window.
5. Applying: each item's effects (preferences, status or receipt record, hooks, reply event), then its id. An
   exception here means state may be half-changed: it is logged as a bug, counted `error` and answered 500 so the
   vendor retries; the items applied before it were remembered, so the retry applies only the rest (and the
   request's own id is remembered only once every item is applied).

Ids are remembered after their effects, never before: a crash in between makes the vendor's retry apply an item
twice (a duplicate status, which consumers already tolerate) rather than never. Two deliveries of one id at once
on one worker wait for each other; on two workers at once (within the store's replication delay, milliseconds)
both may apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from channels.base import WebhookReceiver
from channels.webhooks import InboundMessage, StatusUpdate, WebhookRequest, WebhookResponse, WebhookResult
from consumers.clock import Clock
from consumers.identity import recipient_hash
from consumers.inbound.keywords import Keyword, classify
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.status import Receipt
from consumers.state.kvstore import KeyValueStore
from consumers.state.preferences import PreferenceLedger, address_key
from schemas.status import Status

log = logging.getLogger(__name__)

REPLY_TYPE = "herald.reply.received"
# Receipts saying the address itself is dead: never send to it again.
SUPPRESSING = frozenset({Status.BOUNCED, Status.COMPLAINED})

Contacts = Callable[[str], str | None]


DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_REPLAY_WINDOW = timedelta(days=7)  # Meta retries an unanswered webhook for up to 7 days
# Errors a parser raises for input it cannot read: a 400. Any other exception from verifying or parsing is a bug,
# still answered 400 (nothing has changed), but logged with its traceback.
UNREADABLE = (ValueError, KeyError, TypeError)


def replay_key(channel: str, vendor: str, scope: str, delivery_id: str) -> str:
    """The store key of a vendor's delivery id: a hash, so the key is short and says nothing about its content.
    `scope` keeps a request's id ("request") apart from an item's ("item")."""
    basis = "|".join((channel, vendor, scope, delivery_id)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(basis).hexdigest()[:32]


def reply_event(reply: InboundMessage, provider: str, now: datetime,
                keyword: Keyword | None = None, *, sender_hash: str | None = None) -> dict[str, Any]:
    """A CloudEvent for upstream: who answered what, correlated to Herald's message when known; `keyword` says
    when the text was STOP, START or HELP (Herald already applied it to the preferences). The sender's address
    is never in clear: `from_hash` is its keyed hash, the same as `recipient` on `herald.status`."""
    basis = f"{reply.channel}|{provider}|{reply.provider_message_id or ''}|{reply.sender}|{reply.text}|{reply.digits}"
    return {
        "specversion": "1.0", "id": "rpl-" + hashlib.sha256(basis.encode()).hexdigest()[:24],
        "source": f"herald/{reply.channel}/{provider}", "type": REPLY_TYPE,
        "time": (reply.received_at or now).isoformat(), "subject": reply.recipient_id,
        "datacontenttype": "application/json",
        "data": {"channel": reply.channel, "provider": provider, "message_id": reply.message_id,
                 "recipient_id": reply.recipient_id, "from_hash": sender_hash, "text": reply.text,
                 "digits": reply.digits, "keyword": keyword.value if keyword else None},
    }


async def _reply_ignored(reply: InboundMessage) -> None:
    return None


@dataclass(frozen=True, slots=True)
class HearBackHooks:
    """What the rest of Herald makes of what it hears (consumers/hooks.py builds them): `on_receipt(receipt)` takes
    a receipt (or a reply's `replied`) to the worker that owns the message's send record, which publishes its
    status enriched from the ledger, updates the ledger and falls back on a failed one; without it, HearBack
    publishes the status itself, as the receipt says it. `on_reply(inbound)` reads an answer to an open question
    (defaults to nothing)."""

    on_receipt: Callable[[Receipt], Awaitable[None]] | None = None
    on_reply: Callable[[InboundMessage], Awaitable[None]] = _reply_ignored


class HearBack:
    """Checks each webhook's signature, then publishes what it says. A bad signature changes nothing.

    What people say also changes their preferences (`ledger`): STOP/START opt the address out/in, every inbound
    message records when the person last wrote (WhatsApp's 24 h window), a bounce or complaint suppresses the
    address, an unsubscribe receipt withdraws promotional consent. `contacts` finds the recipient id of an address
    when the vendor does not tell it; `replays` remembers the vendors' delivery ids for `replay_window`;
    `max_body_bytes` is the largest body accepted (the web view reads no more than that). Address hashes are keyed
    like `herald.status`'s `recipient`, so they join.
    """

    def __init__(self, receivers: Mapping[tuple[str, str], WebhookReceiver], outlets: Outlets, clock: Clock, *,
                 ledger: PreferenceLedger, contacts: Contacts, replays: KeyValueStore,
                 hooks: HearBackHooks = HearBackHooks(), replay_window: timedelta = DEFAULT_REPLAY_WINDOW,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.receivers = receivers
        self.statuses = outlets.statuses
        self.publisher = outlets.publisher
        self.metrics = outlets.metrics
        self.clock = clock
        self.ledger = ledger
        self.contacts = contacts
        self.replays = replays
        self.hooks = hooks
        self.replay_window = replay_window
        self.max_body_bytes = max_body_bytes
        self.secret = outlets.statuses.secret
        self._inflight: dict[str, asyncio.Future[None]] = {}

    def labels(self, channel: str, vendor: str) -> tuple[str, str]:
        """Metric labels for a route: only configured providers name themselves (labels stay a bounded set)."""
        return (channel, vendor) if (channel, vendor) in self.receivers else ("unknown", "unknown")

    async def handle(self, channel: str, vendor: str, request: WebhookRequest) -> WebhookResponse:
        """Verify, parse, drop replays, apply; never raises (see the module docstring for every answer)."""
        receiver = self.receivers.get((channel, vendor))
        if receiver is None:
            self.metrics.webhooks.labels("unknown", "unknown", "unknown_provider").inc()
            return WebhookResponse(status=404, body=b"unknown provider")
        if len(request.body) > self.max_body_bytes:
            self.metrics.webhooks.labels(channel, vendor, "too_large").inc()
            return WebhookResponse(status=413, body=b"too large")
        request = dataclasses.replace(request, received_at=self.clock())
        try:
            verified = receiver.verify_webhook(request)
        except Exception as exc:
            return self._unreadable(channel, vendor, "verify", exc)
        if not verified:
            self.metrics.webhooks.labels(channel, vendor, "forbidden").inc()
            log.warning("webhook signature refused", extra={"channel": channel, "provider": vendor})
            return WebhookResponse(status=403, body=b"bad signature")
        try:
            result = receiver.parse_webhook(request)
        except Exception as exc:
            return self._unreadable(channel, vendor, "parse", exc)
        try:
            applied = await self._apply(channel, vendor, result)
        except Exception:
            # Verified, and some of it may be applied: a bug or an outage, never the vendor's fault. 500 makes the
            # vendor retry; what was applied is remembered, so the retry applies only the rest.
            self.metrics.webhooks.labels(channel, vendor, "error").inc()
            log.exception("webhook failed after its signature was verified",
                          extra={"channel": channel, "provider": vendor})
            return WebhookResponse(status=500, body=b"error")
        self.metrics.webhooks.labels(channel, vendor, "ok" if applied else "replay").inc()
        return result.response

    def _unreadable(self, channel: str, vendor: str, stage: str, exc: Exception) -> WebhookResponse:
        """Before anything changed: a 400. Expected parse errors are the sender's; anything else is Herald's bug."""
        expected = stage == "parse" and isinstance(exc, UNREADABLE)
        self.metrics.webhooks.labels(channel, vendor, "bad_request" if expected else "malformed").inc()
        extra = {"channel": channel, "provider": vendor, "stage": stage, "error": type(exc).__name__}
        if expected:
            log.warning("webhook unreadable", extra=extra)
        else:
            log.error("webhook input raised unexpectedly; answered 400", exc_info=exc, extra=extra)
        return WebhookResponse(status=400, body=b"unreadable")

    async def _apply(self, channel: str, vendor: str, result: WebhookResult) -> bool:
        """Apply every item not applied before; False when the whole request was a replay."""
        items: list[tuple[StatusUpdate | None, InboundMessage | None]] = [
            *((update, None) for update in result.statuses), *((None, reply) for reply in result.inbound)]
        if not items:
            return True
        request_key = self._key(channel, vendor, "request", result.delivery_id)
        item_keys = [self._key(channel, vendor, "item", getattr(update or reply, "delivery_id", None))
                     for update, reply in items]
        claimed = [k for k in (request_key, *item_keys) if k is not None]
        async with self._claim(claimed):
            now = self.clock()
            if request_key is not None and self._seen(request_key, now):
                self.metrics.webhook_replays.labels(channel, vendor).inc()
                return False
            applied = 0
            try:
                for (update, reply), key in zip(items, item_keys, strict=True):
                    if key is not None and self._seen(key, now):
                        self.metrics.webhook_replays.labels(channel, vendor).inc()
                        continue
                    if update is not None:
                        await self._status(channel, vendor, update)
                    elif reply is not None:
                        await self._inbound(reply, channel, vendor)
                    applied += 1
                    if key is not None:
                        await self._remember(key, now)
                if request_key is not None:
                    await self._remember(request_key, now)
            finally:
                await self._flush()
            return applied > 0

    async def _status(self, channel: str, vendor: str, update: StatusUpdate) -> None:
        if update.status is None:
            self.metrics.unmapped_statuses.labels(channel, vendor).inc()
            log.info("unmapped vendor status", extra={"channel": channel, "provider": vendor,
                                                      "vendor_status": update.vendor_status[:40]})
            return
        await self._apply_receipt(channel, update)
        if update.message_id is None:
            self.metrics.webhooks.labels(channel, vendor, "uncorrelated").inc()
            return
        await self._receipt(Receipt(
            message_id=update.message_id, status=update.status, channel=channel, provider=vendor,
            provider_message_id=update.provider_message_id, detail=update.detail,
            recipient=self.statuses.recipient(channel, getattr(update, "address", None)),
            heard_at=self.clock(), reported_at=update.at))

    async def _receipt(self, receipt: Receipt) -> None:
        """The receipt's status and effects: through the owner of its send record when Herald runs as workers."""
        if self.hooks.on_receipt is None:
            await self.statuses.for_receipt(receipt)
        else:
            await self.hooks.on_receipt(receipt)

    # --- replays ----------------------------------------------------------------------------------------------

    def _key(self, channel: str, vendor: str, scope: str, delivery_id: str | None) -> str | None:
        if not delivery_id:
            return None
        return replay_key(channel, vendor, scope, delivery_id)

    def _seen(self, key: str, now: datetime) -> bool:
        raw = self.replays.get(key)
        if raw is None:
            return False
        try:
            first = datetime.fromisoformat(raw.decode())
        except (ValueError, UnicodeDecodeError):
            return True  # unreadable: remembered all the same (the janitor counts it)
        first = first if first.tzinfo else first.replace(tzinfo=UTC)
        return now - first < self.replay_window  # older: the janitor has not swept it yet

    async def _remember(self, key: str, now: datetime) -> None:
        await self.replays.put(key, now.isoformat().encode())

    async def _flush(self) -> None:
        """Make the ids just remembered durable before the vendor hears 200 (one round trip for all of them)."""
        flush = getattr(self.replays, "flush", None)
        if flush is not None:
            await flush()

    @contextlib.asynccontextmanager
    async def _claim(self, keys: list[str]) -> AsyncIterator[None]:
        """Hold these ids while applying them: a second delivery of one of them waits, then finds it seen."""
        while busy := {self._inflight[k] for k in keys if k in self._inflight}:
            await asyncio.wait(busy)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._inflight[key] = done
        try:
            yield
        finally:
            for key in keys:
                if self._inflight.get(key) is done:
                    del self._inflight[key]
            done.set_result(None)

    def _recipient(self, given: str | None, address: str | None) -> str | None:
        if given:
            return given
        return self.contacts(address) if address else None

    async def _inbound(self, reply: InboundMessage, channel: str, vendor: str) -> None:
        keyword = classify(reply.text) if reply.text is not None else None
        recipient = self._recipient(reply.recipient_id, reply.sender)
        if recipient and recipient != reply.recipient_id:
            reply = dataclasses.replace(reply, recipient_id=recipient)  # upstream gets the id, keyed by it
        if recipient:
            # Ledger first: if it fails the webhook fails and the provider retries; the reply event id is stable.
            await self.ledger.record_inbound(recipient, reply.channel, reply.received_at or self.clock())
        # STOP and START belong to the number that sent them, whoever it belongs to and even before Herald ever
        # wrote to it (consumers/state/preferences.py); without an address store, to a known recipient only.
        applied = bool(recipient or (self.ledger.addresses is not None and reply.sender))
        if applied:
            if keyword is Keyword.STOP:
                await self.ledger.stop_address(reply.channel, reply.sender, recipient)
            elif keyword is Keyword.START:
                await self.ledger.start_address(reply.channel, reply.sender, recipient)
        if keyword is not None:
            # A STOP Herald could not record is visible: sending on would break the person's wish.
            result = "ok" if keyword is Keyword.HELP or applied else "unknown_recipient"
            self.metrics.keywords.labels(channel, keyword.value, result).inc()
            if result != "ok":
                log.warning("opt keyword not applied", extra={"channel": channel, "provider": vendor,
                                                              "keyword": keyword.value, "reason": result})
        sender_hash = address_key(self.secret, reply.channel, reply.sender)  # `recipient`'s rule, so they join
        event = reply_event(reply, vendor, self.clock(), keyword, sender_hash=sender_hash)
        key = (reply.recipient_id or sender_hash).encode()  # never the number itself
        # Durable: the reply's id is remembered right after, and a remembered reply is never published again.
        await self.publisher.send("replies", key, orjson.dumps(event), durable=True)
        self.metrics.replies.labels(channel, vendor).inc()
        if reply.message_id:
            # The reply's own provider id names the inbound message, not Herald's: the owner's ledger gives that one.
            await self._receipt(Receipt(message_id=reply.message_id, status=Status.REPLIED, channel=channel,
                                        provider=vendor, detail="digits" if reply.digits else "text",
                                        recipient=sender_hash, heard_at=self.clock(), reported_at=reply.received_at))
        if keyword is None:
            await self.hooks.on_reply(reply)

    async def _apply_receipt(self, channel: str, update: StatusUpdate) -> None:
        """Dead addresses are suppressed and unsubscribes withdraw promotional consent, when the recipient is known.

        `address` and `recipient_id` are read with getattr: providers fill them where the vendor says them."""
        if update.status not in (*SUPPRESSING, Status.UNSUBSCRIBED):
            return
        address: str | None = getattr(update, "address", None)
        if update.status is Status.UNSUBSCRIBED and address:  # the mailbox's own wish, known recipient or not
            await self.ledger.unsubscribe_address(channel, address=address, source="receipt")
        recipient = self._recipient(getattr(update, "recipient_id", None), address)
        if not recipient:
            log.info("receipt not applied to preferences: unknown recipient",
                     extra={"channel": channel, "status": update.status.value})
            return
        if update.status is Status.UNSUBSCRIBED:
            await self.ledger.set_promotional(recipient, channel, False, source="receipt")
        elif address:
            await self.ledger.suppress(recipient, recipient_hash(self.secret, address), update.status.value)
