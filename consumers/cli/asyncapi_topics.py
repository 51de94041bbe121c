"""What `herald asyncapi` says of each topic: its tag (public or internal), its key, the dead letter's headers, the
state stores' keys, and the shape of `herald.replies` records (consumers/cli/asyncapi.py builds the document)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from consumers.pipeline.sizes import KEY_LIMIT

if TYPE_CHECKING:
    from schemas.events import CloudEvent


TAGS = {
    "public": "A contract: other systems produce or consume it. Fields are added without notice; readers ignore what "
              "they do not know.",
    "internal": "Between Herald's own workers: not a contract, it may change in any release. Listed so that ACLs, "
                "quotas and monitoring can cover it.",
}

# herald.deadletter's headers (consumers/pipeline/deadletter.py, consumers/pipeline/sizes.py): name -> (meaning,
# on every dead letter). Values are UTF-8 text.
DEAD_LETTER_HEADERS: dict[str, tuple[str, bool]] = {
    "herald-error": ("Why, as a bounded reason word (`invalid_json`, `unknown_type`, `template_error`…).", True),
    "herald-error-class": ("The error's class, or the reason again.", True),
    "herald-error-detail": ("What went wrong, scrubbed of addresses and numbers, at most 500 characters.", True),
    "herald-source-topic": ("The topic the record was read from (where `herald dlq replay` republishes it).", True),
    "herald-source-partition": ("Its partition there.", True),
    "herald-source-offset": ("Its offset there.", True),
    "herald-stage": ("The stage that gave up: `router`, `delivery` or an agent's name.", True),
    "herald-attempts": ("Send attempts made (0 before any send).", True),
    "herald-first-failure": ("When the first attempt failed (ISO 8601), for a message that was tried.", False),
    "herald-message-id": ("Herald's message id, when known.", False),
    "herald-truncated": ("`true`: the value is only the first bytes of a record over the producer's limit "
                         "(`herald dlq replay` refuses it).", False),
    "herald-original-size": ("The original value's size in bytes, when truncated.", False),
    "herald-original-sha256": ("The original value's SHA-256 (hex), when truncated.", False),
    "herald-key-size": (f"The original key's size in bytes, when it was cut (over {KEY_LIMIT} bytes).", False),
    "herald-key-sha256": ("The original key's SHA-256 (hex), when it was cut.", False),
}

# The key of each state topic's records (consumers/state/stores.py `State`).
STATE_KEYS: dict[str, str] = {
    "state.contacts": "The keyed hash of an address: the recipient id it belongs to, and the open questions asked "
                      "to it (`channel|address hash`).",
    "state.dedupe": "SHA-256 of tenant and idempotency key: the events seen within HERALD_DEDUPE_WINDOW.",
    "state.caps": "`recipient id|category|window`: frequency-cap counters.",
    "state.schedules": "`kind|message id|attempt`: messages waiting for their time (quiet hours, `sendat`, "
                       "retries, receipt checks).",
    "state.sends": "Message id: the send ledger (pending, sent, delivered, failed).",
    "state.documents": "Message id: the dispatch whose document a signed link serves.",
    "state.webhooks": "A hash of a vendor's webhook delivery id: deliveries already applied (replays).",
    "state.consent": "The keyed hash of an address: what the address itself said (STOP, unsubscribe); "
                     "`optin|recipient id`: promotional opt-in times.",
    "state.api_requests": "A hash of tenant and `Idempotency-Key`: the HTTP API's answers.",
    "state.status_webhooks": "The tenant: its outbound status webhook registration (URL, filter, signing secrets "
                             "sealed with HERALD_SECRET).",
    "state.status_outbox": "A status's `webhook-id`: the status waiting for its tenant's endpoint, in the status "
                           "record's partition (deleted once delivered or dead-lettered).",
    "state.digests": "A hash of tenant, recipient id, type and `digest.key` value: the open digest collecting "
                     "those events, in the partition of the events (deleted once its message is published).",
    "state.conversions": "`recipient id|goal|goal type` (the messages of the types with that goal) and `recipient "
                         "id|sent|message id` (a sent one that may convert): in the partition of the recipient's "
                         "events, deleted when the conversion window is over.",
}

# herald.webhooks.deadletter's headers (consumers/pipeline/status_outbox.py `Outbox.dead_letter`): name ->
# (meaning, on every dead letter). Values are UTF-8 text.
STATUS_WEBHOOK_DEAD_LETTER_HEADERS: dict[str, tuple[str, bool]] = {
    "herald-tenant": ("The tenant whose endpoint did not take the status.", True),
    "herald-url-host": ("The endpoint's host name (never its path or query).", True),
    "herald-error": ("Why: `rejected` (a 4xx), `gone` (410), `retries_exhausted`, `backlog_full`, `invalid_url`, "
                     "`forbidden_address`, `forbidden_port`, `too_large`.", True),
    "herald-error-detail": ("The last answer or error (`HTTP 400`, `timeout`…), at most 500 characters.", True),
    "herald-attempts": ("Failed attempts made.", True),
    "herald-webhook-id": ("The `webhook-id` every attempt carried (a receiver dedupes on it).", True),
    "herald-source-topic": ("herald.status, where the status record is.", True),
    "herald-source-partition": ("Its partition there.", True),
    "herald-source-offset": ("Its offset there.", True),
    "herald-first-failure": ("When the first attempt failed (ISO 8601), when one did.", False),
}


class ReplyReceivedData(BaseModel):
    """`data` of a `herald.reply.received` event: what a person wrote or keyed, as a provider relayed it
    (consumers/inbound/hearback.py `reply_event`). Every field is present; unknown ones are null."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description="Channel the reply came on.", examples=["sms"])
    provider: str = Field(description="Provider that relayed it.", examples=["twilio"])
    message_id: str | None = Field(description="Herald's message it answers, when the provider says.")
    recipient_id: str | None = Field(description="The person, when Herald knows whose address it is.",
                                     examples=["user-42"])
    from_hash: str | None = Field(description="Keyed hash of the sender's address: `recipient` on herald.status.",
                                  examples=["sha256:9f86d0…"])
    text: str | None = Field(description="The text (SMS, WhatsApp).", examples=["YES"])
    digits: str | None = Field(description="Keypad digits (voice).", examples=["1"])
    keyword: Literal["stop", "start", "help"] | None = Field(
        description="STOP, START or HELP, already applied to the preferences.")


class ReplyAnswerData(BaseModel):
    """`data` of an answer to a message that asked (consumers/inbound/replies.py `reply_cloudevent`), e.g.
    `appointment.reminder.confirmed`: besides these, the fields of the message's payload its type's `cancel_key`
    names (`appointment_id`)."""

    model_config = ConfigDict(extra="allow")

    message_id: str = Field(description="Herald's message that asked.", examples=["msg-3f2a9c"])
    recipient_id: str = Field(description="The person who answered.", examples=["user-42"])
    channel: str = Field(description="Channel of the answer.", examples=["sms"])
    answer: str | None = Field(description="The text or digits as received.", examples=["1"])
    meaning: Literal["confirm", "cancel"] = Field(description="What the answer means.")


class ReplyRatingData(BaseModel):
    """`data` of a survey rating (consumers/inbound/replies.py `rating_cloudevent`), e.g. `service.survey.rated`:
    besides these, the fields of the message's payload its type's `survey.question.keep` names (`ticket_id`)."""

    model_config = ConfigDict(extra="allow")

    message_id: str = Field(description="Herald's message that asked for the rating.", examples=["msg-3f2a9c"])
    event_id: str | None = Field(description="The event of that message.", examples=["evt-81ac"])
    recipient_id: str = Field(description="The person who rated.", examples=["user-42"])
    recipient: str | None = Field(description="Keyed hash of the address that answered: `recipient` on "
                                  "herald.status (never the address).", examples=["sha256:9f86d0…"])
    channel: Literal["voice", "sms", "whatsapp"] = Field(description="Channel of the rating.", examples=["voice"])
    score: int = Field(ge=1, le=9, description="The rating, from 1 to `scale`.", examples=[4])
    scale: int = Field(ge=2, le=9, description="The survey's scale (the catalog's `survey.scale`).", examples=[5])
    answer: str | None = Field(description="The digit or text as received.", examples=["4 stars"])
    at: datetime = Field(description="When the person answered.")


@functools.cache
def rating_model() -> type[CloudEvent]:
    """The survey ratings on `herald.replies` (type `<event type>.rated`)."""
    from schemas.events import CloudEvent

    return create_model("ReplyRating", __base__=CloudEvent, __doc__=(
        "A rating of a survey type (type `<event type>.rated`); key: the recipient id. A person may rate again: "
        "the latest `at` per `message_id` counts."), data=(ReplyRatingData, Field(description="The rating.")))


@functools.cache
def reply_models() -> tuple[type[CloudEvent], type[CloudEvent]]:
    """The CloudEvents on `herald.replies`: the envelope of `schemas.events.CloudEvent` with each kind's `data`."""
    from schemas.events import CloudEvent

    received = create_model("ReplyReceived", __base__=CloudEvent, __doc__=(
        "A person wrote or keyed something (type `herald.reply.received`); key: the recipient id, else the "
        "sender's address hash."), data=(ReplyReceivedData, Field(description="The reply.")))
    answer = create_model("ReplyAnswer", __base__=CloudEvent, __doc__=(
        "An answer to a question Herald asked (type `<event type>.confirmed` or `.cancelled`); key: the "
        "recipient id."), data=(ReplyAnswerData, Field(description="The answer and what it means.")))
    return received, answer


@dataclass(frozen=True, slots=True)
class TopicDoc:
    """What the document says of one topic: its messages, who writes it (`send`) and reads it (`receive`)."""

    summary: str
    messages: tuple[str, ...]
    send: str | None
    receive: str | None
    internal: bool = False


def describe_topic(short: str) -> TopicDoc:
    """The description of a topic of `topic_specs()`; a `KeyError` for one nobody described yet."""
    if short in ("events", "events.critical"):
        critical = short.endswith(".critical")
        return TopicDoc(
            ("The critical lane: events of the catalog's critical types (codes, password resets, verifications), "
             "consumed apart so they never wait behind a backlog." if critical else
             "Events in: one CloudEvent per event, for every type that is not critical."),
            ("CloudEvent", "CloudEventBinary"),
            send=("`POST /v1/events`, `herald publish` and `herald dlq replay`"
                  + ("" if critical else "; Herald's own acknowledgement and help texts for replies") + "."),
            receive=("The critical lane's consumer (group `herald-critical`)." if critical else
                     "The router, Faust agent `route_events` (group `herald`)."))
    if short.startswith("dispatch."):
        channel, _, lane = short.removeprefix("dispatch.").partition(".")
        return TopicDoc(
            f"Messages to send on {channel}{' (critical lane)' if lane else ''}: one `Dispatch` each.",
            ("Dispatch",), internal=True,
            send="The router, the scheduler (when a message's time comes), retries, fallbacks and "
                 "`herald dlq replay`.",
            receive=("The critical lane's consumer." if lane else f"The delivery agent `send_{channel}`."))
    if short.startswith("state."):
        return TopicDoc(f"Durable state of the workers, compacted. Key: {STATE_KEYS[short]}", ("StateRecord",),
                        internal=True, send="The store's writes.", receive="The store, on start-up and as it runs.")
    topics = {
        "status": TopicDoc(
            "Every state change of every message (contract v1): what analytics and support read.",
            ("DeliveryStatus",), send="Every stage (router, scheduler, delivery, receipts, dead letters) and "
                                      "`herald forget` (`cancelled`).",
            receive="The message timeline's index (`GET /messages` on the admin port), `herald status`, "
                    "`herald trace`, and, with HERALD_API_KEYS, Faust agent `status_webhooks` (group `herald`), "
                    "which POSTs each tenant's statuses to the endpoint it registered."),
        "replies": TopicDoc(
            "What people answered: raw replies and keywords, answers to questions Herald asked, and survey ratings.",
            ("ReplyReceived", "ReplyAnswer", "ReplyRating"), send="Provider webhooks (replies) and the answer reader.",
            receive="Every worker's ratings index (the rates page of `/console`; `<type>.rated` only), while "
                    "HERALD_ADMIN_TOKEN is set."),
        "preferences": TopicDoc(
            "The consent and preference ledger (compacted): the latest `Preferences` per recipient id, and per "
            "`@<tenant>/<recipient id>` a tenant's own preference-topic choices for the person.",
            ("Preferences",), send="`herald prefs`, STOP/START replies, unsubscribe links, bounces and complaints, "
            "`herald forget`, the preferences API and the preference page.",
            receive="Every worker (the consent check before each send)."),
        "deadletter": TopicDoc(
            "Records Herald could not process: the original bytes and key, the reason in headers.",
            ("DeadLetter",), send="Every stage that gives up on a record.",
            receive="`herald dlq list` and `herald dlq replay`."),
        "receipts": TopicDoc(
            "Provider receipts heard on any worker, for the worker that owns the message's partition (and so its "
            "send record).", ("Receipt",), internal=True, send="The webhook handlers (any worker).",
            receive="The critical lane's consumer, which publishes the status."),
        "webhooks.deadletter": TopicDoc(
            "Statuses a tenant's registered endpoint (outbound status webhooks) did not take: the status record's "
            "value byte for byte, why in headers. (A status record the agent itself failed on, a bug, comes with "
            "herald.deadletter's headers instead.)", ("StatusWebhookDeadLetter",),
            send="The status webhook outbox, when it gives up on a status.", receive=None, internal=True),
        "content": TopicDoc(
            "What sent messages said (text parts, never HTML or attachments), for the console: only types whose "
            "catalog entry sets `show_content`, only while HERALD_CONSOLE_PERSONAL_DATA is on; records expire "
            "after HERALD_TIMELINE_RETENTION, and `herald forget` replaces a person's with `ContentErased` records "
            "(compact,delete).", ("MessageContent", "ContentErased"), internal=True,
            send="The delivery stage, once a message is sent; `herald forget`.",
            receive="Every worker's console index (the message page of `/console`)."),
    }
    return topics[short]
