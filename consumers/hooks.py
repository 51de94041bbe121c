"""The glue between stages and state: small closures the app factory hands to the router, the delivery stage
and the webhook handler, so that none of them knows the others."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime

import orjson

from channels.errors import DeliveryError, InvalidRecipient
from channels.rendering.render import Rendered
from channels.rendering.tracking import track_html
from channels.webhooks import InboundMessage
from consumers.identity import KeyRing, recipient_hash
from consumers.inbound.replies import (
    ReplyKind,
    acknowledgement_event,
    asks_question,
    help_event,
    interpret,
    rating_cloudevent,
    reply_cloudevent,
    reply_recipient,
)
from consumers.inbound.tracking import TrackingLinks
from consumers.inbound.unsubscribe import list_unsubscribe_headers, unsubscribe_link
from consumers.pipeline.conversions import Attribution
from consumers.pipeline.fallback import fall_back
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import Publisher, Record
from consumers.pipeline.router import ConsentCheck
from consumers.pipeline.status import Receipt, StatusEmitter
from consumers.state.conversations import Conversations, Question
from consumers.state.kvstore import KeyValueStore
from consumers.state.preferences import PreferenceLedger, address_key, whatsapp_session_open
from consumers.state.sends import SendLedger
from schemas.catalog import Catalog
from schemas.content import MAX_PART_CHARS, MessageContent
from schemas.dispatch import Dispatch
from schemas.status import Status
from schemas.topics import preference_topic

log = logging.getLogger(__name__)

FAILED_RECEIPTS = frozenset({Status.FAILED, Status.BOUNCED})
DELIVERED_RECEIPTS = frozenset({Status.DELIVERED, Status.READ, Status.OPENED, Status.CLICKED, Status.REPLIED})


def consent_check(ledger: PreferenceLedger, secret: bytes | KeyRing,
                  catalog: Catalog | None = None) -> ConsentCheck:
    """The router's and the send-time check: the recipient's preferences and the address's own record (a
    suppression hashed with a secret still in the ring counts, so it outlives a rotation), then, with the
    `catalog`, the person's choice for the type's preference topic (never for a critical type or required topic)."""
    ring = KeyRing.of(secret)

    def check(recipient_id: str, category: str, channel: str, address: str, /, *, event_type: str | None = None,
              tenant: str | None = None) -> str | None:
        entry = catalog.get(event_type) if catalog is not None and event_type else None
        return ledger.refusal(recipient_id, category=category, channel=channel, address=address,
                              address_hash=recipient_hash(ring.current, address),
                              previous_hashes=[recipient_hash(old, address) for old in ring.previous],
                              topic=preference_topic(catalog, entry) if catalog and entry else None, tenant=tenant)

    return check


def session_open(ledger: PreferenceLedger, clock: Callable[[], datetime]) -> Callable[[str], bool]:
    return lambda recipient_id: whatsapp_session_open(ledger.get(recipient_id), clock())


def contact_key(secret: bytes, address: str) -> str:
    return "who|" + recipient_hash(secret, address)


def contacts_lookup(store: KeyValueStore, secret: bytes | KeyRing) -> Callable[[str], str | None]:
    """Address -> recipient id, learnt from what Herald sent: an inbound STOP names only a phone number. Learnt
    under the current secret first, else under an older one of the ring (sent before a rotation)."""
    ring = KeyRing.of(secret)

    def lookup(address: str) -> str | None:
        raw = next((raw for key in ring.all if (raw := store.get(contact_key(key, address)))), None)
        return raw.decode() if raw else None

    return lookup


def remember_contact(store: KeyValueStore, secret: bytes | KeyRing) -> Callable[[Dispatch, str], Awaitable[None]]:
    current = KeyRing.of(secret).current  # learnt under the current secret only

    async def remember(d: Dispatch, provider: str) -> None:
        address = d.to.address_for(d.channel)
        if address and store.get(contact_key(current, address)) != d.to.id.encode():
            await store.put(contact_key(current, address), d.to.id.encode())

    return remember


def unsubscribe_headers(secret: bytes | KeyRing, public_url: str) -> Callable[[Dispatch], Mapping[str, str]]:
    """RFC 8058 one-click unsubscribe on promotional email: signed and keyed with the current secret."""
    current = KeyRing.of(secret).current

    def headers(d: Dispatch) -> Mapping[str, str]:
        if d.category != "promotional" or d.channel != "email":
            return {}
        # The link names the mailbox too (by its keyed hash), so the unsubscribe holds for every id that has it.
        email = d.to.address_for("email")
        key = address_key(current, "email", email) if email else None
        return list_unsubscribe_headers(unsubscribe_link(current, public_url, d.to.id, address_key=key))

    return headers


def track_email(links: TrackingLinks, catalog: Catalog, *,
                enabled: bool = True) -> Callable[[Dispatch, Rendered], Rendered]:
    """Open and click tracking on an email's HTML, as its type allows (`CatalogEntry.tracks`: never on a critical
    type) and unless `enabled` is false (HERALD_TRACKING): links wrapped in signed click links, the pixel added.
    Herald's own links (unsubscribe, documents) and the plain-text part are left alone."""

    def track(d: Dispatch, rendered: Rendered) -> Rendered:
        entry = catalog.get(d.event_type)
        if not enabled or d.channel != "email" or entry is None or "html" not in rendered.parts:
            return rendered
        wanted = entry.tracks()
        if not (wanted.opens or wanted.clicks):
            return rendered
        expires = links.expiry(d)

        def click(url: str) -> str | None:
            return None if links.is_own(url) else links.click_link(d.message_id, expires, url)

        html = track_html(rendered["html"], click=click if wanted.clicks else None,
                          pixel=links.open_link(d.message_id, expires) if wanted.opens else None)
        return replace(rendered, parts={**rendered.parts, "html": html})

    return track


def suppress_dead_addresses(ledger: PreferenceLedger, secret: bytes | KeyRing
                            ) -> Callable[[Dispatch, DeliveryError], Awaitable[None]]:
    """An address the provider says does not exist (unregistered push token, unknown mailbox) is suppressed."""
    current = KeyRing.of(secret).current

    async def on_failure(d: Dispatch, error: DeliveryError) -> None:
        address = d.to.address_for(d.channel)
        if isinstance(error, InvalidRecipient) and address:
            await ledger.suppress(d.to.id, recipient_hash(current, address), error.code or error.reason,
                                  source="send")

    return on_failure


def receipt_outcomes(sends: SendLedger, outlets: Outlets) -> Callable[[str, Status], Awaitable[None]]:
    """Receipts update the send ledger; a failed one sends the message on the next channel (once)."""

    async def on_receipt(message_id: str, status: Status) -> None:
        record = sends.get(message_id)
        if record is None:
            return
        if status in DELIVERED_RECEIPTS and record.state != "delivered":
            await sends.outcome(message_id, "delivered")
        elif status in FAILED_RECEIPTS and not record.fell_back:
            await sends.outcome(message_id, "failed", fell_back=True)
            await fall_back(outlets, record.dispatch, f"{record.dispatch.channel} {status.value}")

    return on_receipt


def route_receipts(publisher: Publisher) -> Callable[[Receipt], Awaitable[None]]:
    """A receipt heard on any worker goes to `receipts` (its JSON, `Receipt`), keyed by message id: the worker
    that owns the message's partition (and so its send record) applies it (`apply_receipts`). Durable: the
    webhook's id is remembered right after, and a remembered webhook is never applied again."""

    async def on_receipt(receipt: Receipt) -> None:
        value = receipt.model_dump_json(exclude_none=True).encode()
        await publisher.send("receipts", receipt.message_id.encode(), value, durable=True)

    return on_receipt


# Parts never kept: markup duplicates the text part and may carry tracking; the PDF is a document of its own.
UNSHOWN_PARTS = frozenset({"html", "pdf"})


def keep_content(publisher: Publisher, catalog: Catalog, clock: Callable[[], datetime], *, enabled: bool
                 ) -> Callable[[Dispatch, Rendered], Awaitable[None]]:
    """What a sent message said goes to `content` (its JSON, `MessageContent`), keyed by message id, for the
    console: only with `enabled` (HERALD_CONSOLE_PERSONAL_DATA) and only for types whose catalog entry sets
    `show_content` (never a critical type: the catalog refuses it). Not durable: a lost copy costs the console a
    view, never a message."""

    async def keep(d: Dispatch, rendered: Rendered) -> None:
        entry = catalog.get(d.event_type)
        if not enabled or entry is None or not entry.show_content:
            return
        parts = {name: text[:MAX_PART_CHARS] for name, text in rendered.parts.items() if name not in UNSHOWN_PARTS}
        content = MessageContent(message_id=d.message_id, recipient_id=d.to.id, event_type=d.event_type,
                                 channel=d.channel, locale=rendered.locale, template=rendered.template, parts=parts,
                                 at=clock(),
                                 truncated=any(len(text) > MAX_PART_CHARS for text in rendered.parts.values()))
        await publisher.send("content", d.message_id.encode(), content.model_dump_json().encode())

    return keep


def apply_receipts(sends: SendLedger, outlets: Outlets) -> Callable[[Record], Awaitable[None]]:
    """The handler of `receipts` (on the critical lane's consumer, so a code's receipt never waits behind a
    backlog): the receipt's status, described from the message's send record (type, tenant, recipient, provider
    id…; as the receipt says it when the ledger does not know the message), then what `receipt_outcomes` makes of
    it. The status goes first, so a failed receipt's status precedes the fallback's `accepted`."""
    outcome = receipt_outcomes(sends, outlets)

    async def handle(record: Record) -> None:
        receipt = Receipt.model_validate_json(record.value or b"")
        await outlets.statuses.for_receipt(receipt, sends.get(receipt.message_id))
        await outcome(receipt.message_id, receipt.status)

    return handle


def receipt_check(sends: SendLedger, outlets: Outlets) -> Callable[[Dispatch], Awaitable[None]]:
    """When a message's receipt wait is over: no receipt of delivery yet means the next channel gets it."""

    async def check(d: Dispatch) -> None:
        record = sends.get(d.message_id)
        if record is None or record.state == "delivered" or record.fell_back:
            return
        await sends.outcome(d.message_id, record.state, fell_back=True)
        await fall_back(outlets, d, f"{d.channel} no receipt")

    return check


def remember_after_send(contacts: KeyValueStore, conversations: Conversations, catalog: Catalog,
                        secret: bytes | KeyRing, clock: Callable[[], datetime],
                        goals: Attribution | None = None) -> Callable[[Dispatch, str], Awaitable[None]]:
    """After a send: who has this address, for a type that asks something the open question, and for a type with
    a conversion goal the message that may convert (`goals`)."""
    remember = remember_contact(contacts, secret)

    async def after_send(d: Dispatch, provider: str) -> None:
        await remember(d, provider)
        if goals is not None:
            await goals.after_send(d, provider)
        entry = catalog.get(d.event_type)
        address = d.to.address_for(d.channel)
        if entry and address and asks_question(entry, d.channel):
            await conversations.remember(Question.for_dispatch(d, entry, clock()), address)

    return after_send


def answer_replies(conversations: Conversations, catalog: Catalog, publisher: Publisher, statuses: StatusEmitter,
                   clock: Callable[[], datetime]) -> Callable[[InboundMessage], Awaitable[None]]:
    """A reply to an open question: tell upstream what it means (`appointment.reminder.confirmed`, or a survey's
    `service.survey.rated`), thank the person, and help them when the answer cannot be read."""
    route = route_receipts(publisher)

    async def on_reply(reply: InboundMessage) -> None:
        now = clock()
        question = conversations.last_question(reply.channel, reply.sender, now)
        meaning = interpret(reply.text, reply.digits, question, catalog)
        entry = catalog.get(question.event_type) if question is not None else None
        survey = entry.survey if entry is not None else None
        if meaning.kind in (ReplyKind.ANSWER, ReplyKind.RATING) and meaning.question is not None:
            q = meaning.question
            if meaning.kind is ReplyKind.RATING and survey is not None:
                # Durable: upstream and the console count every rating (the webhook is remembered right after).
                rating = rating_cloudevent(meaning, scale=survey.scale, at=reply.received_at or now,
                                           recipient=statuses.recipient(reply.channel, reply.sender),
                                           reply_id=reply.provider_message_id)
                await publisher.send("replies", q.recipient_id.encode(), orjson.dumps(rating), durable=True)
                statuses.metrics.ratings.labels(q.event_type, q.channel, str(meaning.score)).inc()
            else:
                await publisher.send("replies", q.recipient_id.encode(),
                                     orjson.dumps(reply_cloudevent(meaning, reply.received_at or now)))
            # The call already said thank you itself; a survey may ask for no thanks by text.
            if reply.channel != "voice" and (survey is None or survey.thanks):
                to = reply_recipient(reply.channel, reply.sender, recipient_id=q.recipient_id, locale=q.locale)
                await publisher.send("events", to["id"].encode(),
                                     orjson.dumps(acknowledgement_event(meaning, to, now=now)))
            if not reply.message_id:  # correlated by the open question: its message's owner describes it
                # No provider here: the owner's send record names the one that carried the message.
                await route(Receipt(message_id=q.message_id, status=Status.REPLIED, channel=reply.channel,
                                    detail="text", heard_at=now,
                                    recipient=statuses.recipient(reply.channel, reply.sender)))
            await conversations.mark_answered(q, reply.sender, meaning.meaning or "")
        elif meaning.kind is ReplyKind.NOT_UNDERSTOOD and meaning.question is not None and reply.channel != "voice":
            q = meaning.question
            to = reply_recipient(reply.channel, reply.sender, recipient_id=q.recipient_id, locale=q.locale)
            await publisher.send("events", to["id"].encode(),
                                 orjson.dumps(help_event(q, to, "not_understood", now=now,
                                                         scale=survey.scale if survey else None)))

    return on_reply
