"""Open questions: the last message per channel and address that asked the person something Herald can read an
answer to (`consumers/inbound/replies.py` reads the answers). Keyed by channel and a keyed hash of the address,
never the address itself."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from channels.errors import InvalidRecipient
from channels.phone import to_e164
from consumers.identity import KeyRing, recipient_hash
from consumers.state.kvstore import KeyValueStore
from schemas.catalog import CatalogEntry
from schemas.dispatch import Dispatch

log = logging.getLogger(__name__)

PHONE_CHANNELS = frozenset({"sms", "whatsapp", "voice"})


class Question(BaseModel):
    """A message Herald sent that the person may answer; what a reply needs to be understood and reported."""

    # Stored state: a newer worker may add fields an older one must still read.
    model_config = ConfigDict(extra="ignore")

    message_id: str = Field(description="Herald's message that asked.", examples=["msg-3f2a9c"])
    recipient_id: str = Field(description="The person's id.", examples=["user-42"])
    event_type: str = Field(description="Catalog type of the message.", examples=["appointment.reminder"])
    channel: str = Field(description="Channel it was sent on.", examples=["sms"])
    locale: str = Field(default="en", description="The person's locale.", examples=["es-ES"])
    asked_at: datetime = Field(description="When it was sent.")
    tenant: str | None = Field(default=None, description="Tenant of the event.")
    payload: dict[str, Any] = Field(default_factory=dict, description="What upstream needs to act on an answer: "
                                    "the type's `cancel_key` field.", examples=[{"appointment_id": "APT-5521"}])
    answered: str | None = Field(default=None, description="The meaning of the last answer, once answered.")
    event_id: str | None = Field(default=None, description="The event of the message that asked.",
                                 examples=["evt-81ac"])
    expires_at: datetime | None = Field(default=None, description="No answer is taken after this (a survey's "
                                        "window); `Conversations.max_age` after `asked_at` in any case.")

    @classmethod
    def for_dispatch(cls, dispatch: Dispatch, entry: CatalogEntry, asked_at: datetime) -> Question:
        """The question a sent dispatch asks (see `asks_question`), with the payload fields its answer carries:
        the `cancel_key`, and a survey's `question.keep`."""
        survey = entry.survey
        keys = [entry.cancel_key, *(survey.question.keep if survey else ())]
        payload = {key: dispatch.payload[key] for key in keys if key and key in dispatch.payload}
        return cls(message_id=dispatch.message_id, recipient_id=dispatch.to.id, event_type=dispatch.event_type,
                   channel=dispatch.channel, locale=dispatch.to.locale, asked_at=asked_at, tenant=dispatch.tenant,
                   payload=payload, event_id=dispatch.event_id,
                   expires_at=asked_at + survey.window(entry.ttl) if survey else None)


def address_key(channel: str, address: str) -> str:
    """The address as both directions spell it: E.164 for phones (`+34 600 11 12 22` == `+34600111222`)."""
    if channel in PHONE_CHANNELS:
        number = address.strip().removeprefix("whatsapp:")
        try:
            return to_e164(number)[0]
        except InvalidRecipient:
            return re.sub(r"[^\d+]", "", number)
    return address.strip().lower()


class Conversations:
    """The last question asked per channel and address, in a `KeyValueStore` keyed `channel|sha256:…`.

    Keyed with `HERALD_SECRET`; a question asked before a rotation is still found under a secret of
    `HERALD_SECRET_PREVIOUS` (questions live `max_age` at most, so a week in the ring is enough for them)."""

    def __init__(self, store: KeyValueStore, secret: bytes | KeyRing, *,
                 max_age: timedelta = timedelta(days=7)) -> None:
        self.store = store
        self.ring = KeyRing.of(secret)
        self.secret = self.ring.current
        self.max_age = max_age

    def key(self, channel: str, address: str, secret: bytes | None = None) -> str:
        return f"{channel}|{recipient_hash(secret or self.secret, address_key(channel, address))}"

    def keys(self, channel: str, address: str) -> list[str]:
        """The keys a question at this address may be under: the current secret's first."""
        return list(dict.fromkeys(self.key(channel, address, secret) for secret in self.ring.all))

    def anonymous_id(self, channel: str, address: str) -> str:
        """A recipient id for someone Herald knows only by address (a reply when no question is open)."""
        return recipient_hash(self.secret, address_key(channel, address))

    def recipient_for(self, address: str) -> str | None:
        """The recipient id of the last question asked at this address on any channel (for `HearBack`'s
        `contacts`, when the vendor does not say who wrote)."""
        channels = ("email",) if "@" in address else tuple(sorted(PHONE_CHANNELS))
        asked = [q for c in channels if (q := self._find(c, address)) is not None]
        return max(asked, key=lambda q: q.asked_at).recipient_id if asked else None

    async def remember(self, question: Question, address: str) -> None:
        """Record a sent question; an older one (a redelivered dispatch) never replaces a newer one."""
        key = self.key(question.channel, address)
        current = self._load(key)
        if current is not None and (current.message_id == question.message_id
                                    or current.asked_at > question.asked_at):
            return
        await self.store.put(key, question.model_dump_json().encode())

    def last_question(self, channel: str, address: str, now: datetime | None = None) -> Question | None:
        """The last question asked on this channel and address; None if none, or older than `max_age` (or past
        its own `expires_at`) at `now`."""
        question = self._find(channel, address)
        if question is None or (now is not None and (now - question.asked_at > self.max_age
                                                     or (question.expires_at is not None
                                                         and now >= question.expires_at))):
            return None
        return question

    async def mark_answered(self, question: Question, address: str, meaning: str) -> None:
        """Keep the question (the person may change their mind) but stop sending help for later chatter."""
        if question.answered != meaning:
            answered = question.model_copy(update={"answered": meaning})
            await self.store.put(self.key(question.channel, address), answered.model_dump_json().encode())

    async def forget(self, channel: str, address: str) -> None:
        current, *older = self.keys(channel, address)
        await self.store.delete(current)
        for key in older:  # no tombstone for an older key that never held a question
            if self.store.get(key) is not None:
                await self.store.delete(key)

    def _find(self, channel: str, address: str) -> Question | None:
        """The newest question under any key of the ring (one asked after the rotation outranks an older one)."""
        found = [q for key in self.keys(channel, address) if (q := self._load(key)) is not None]
        return max(found, key=lambda q: q.asked_at) if found else None

    def _load(self, key: str) -> Question | None:
        raw = self.store.get(key)
        if raw is None:
            return None
        try:
            return Question.model_validate_json(raw)
        except ValidationError:  # unreadable state is no question, not a crash of the webhook
            log.warning("unreadable conversation state", extra={"channel": key.split("|", 1)[0]})
            return None
