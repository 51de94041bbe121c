"""Two-way replies: an answer is matched to the last message that asked the person a question on that channel.

Herald remembers each question it sends (`Conversations.remember`, keyed by channel and a keyed hash of the
address, never the address itself). When the person writes back, `interpret` reads the reply against the
catalog's `answers` (text) or `keypad` (voice digits) of the question's type. An answer becomes a CloudEvent for
upstream (`appointment.reminder.confirmed`) and an acknowledgement on the same channel (`reply.acknowledged`);
a reply Herald cannot read gets a short help text (`reply.help`). Pure logic: no I/O except through the store.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from channels.errors import InvalidRecipient
from channels.phone import to_e164
from consumers.inbound.keywords import classify
from consumers.pipeline.identity import KeyRing, recipient_hash
from consumers.state.kvstore import KeyValueStore
from schemas.catalog import Catalog, CatalogEntry, KeypadAction
from schemas.dispatch import Dispatch

log = logging.getLogger(__name__)

SOURCE = "herald/replies"
ACKNOWLEDGED_TYPE = "reply.acknowledged"
HELP_TYPE = "reply.help"
MEANINGS = (KeypadAction.CONFIRM.value, KeypadAction.CANCEL.value)
OUTCOMES = {KeypadAction.CONFIRM.value: "confirmed", KeypadAction.CANCEL.value: "cancelled"}

# Channels whose replies Herald can read: text answers on these, keypad digits on voice. Email has no inbound.
TEXT_CHANNELS = frozenset({"sms", "whatsapp"})
PHONE_CHANNELS = frozenset({"sms", "whatsapp", "voice"})
MAX_ANSWER = 64  # characters; a longer message is a sentence, never an answer word (bounds the work too)

_PUNCTUATION = re.compile(r"[^\w\s]|_")


def normalize_answer(text: str) -> str:
    """`"¡Sí!"` -> `"si"`: case, accents, punctuation and extra spaces do not matter."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_PUNCTUATION.sub("", bare.casefold()).split())


def language_of(locale: str) -> str:
    """`es-ES` -> `es`."""
    return locale.replace("_", "-").split("-")[0].lower()


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

    @classmethod
    def for_dispatch(cls, dispatch: Dispatch, entry: CatalogEntry, asked_at: datetime) -> Question:
        """The question a sent dispatch asks (see `asks_question`)."""
        key = entry.cancel_key
        payload = {key: dispatch.payload[key]} if key and key in dispatch.payload else {}
        return cls(message_id=dispatch.message_id, recipient_id=dispatch.to.id, event_type=dispatch.event_type,
                   channel=dispatch.channel, locale=dispatch.to.locale, asked_at=asked_at, tenant=dispatch.tenant,
                   payload=payload)


def asks_question(entry: CatalogEntry, channel: str) -> bool:
    """Whether a message of this type on this channel expects an answer Herald can read."""
    if channel == "voice":
        return any(action.value in MEANINGS for action in entry.keypad.values())
    return channel in TEXT_CHANNELS and bool(entry.answers)


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
        """The last question asked on this channel and address; None if none, or older than `max_age` at `now`."""
        question = self._find(channel, address)
        if question is None or (now is not None and now - question.asked_at > self.max_age):
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


class ReplyKind(StrEnum):
    ANSWER = "answer"  # confirm or cancel, for `question`
    NOT_UNDERSTOOD = "not_understood"  # a question is open, the reply matches none of its answers
    NO_QUESTION = "no_question"  # nothing is open: a spontaneous text, or chatter after an answer
    IGNORED = "ignored"  # handled elsewhere: STOP/START/HELP (consumers/inbound/keywords.py), keypad repeat / agent


@dataclass(frozen=True, slots=True)
class Interpretation:
    """What a reply means. `meaning`: confirm/cancel for an answer; stop/start/help/repeat/agent when ignored."""

    kind: ReplyKind
    question: Question | None = None
    meaning: str | None = None
    answer: str | None = None  # the raw text or digits


def interpret(text: str | None, digits: str | None, question: Question | None, catalog: Catalog) -> Interpretation:
    """Read a reply against the question's catalog entry: digits through `keypad`, text through `answers`."""
    answer = digits if digits else text
    entry = catalog.get(question.event_type) if question is not None else None
    if digits:
        action = entry.keypad.get(digits) if entry is not None else None
        if action is not None and action.value in MEANINGS:
            return Interpretation(ReplyKind.ANSWER, question, action.value, answer)
        if action is not None:  # repeat and agent: the voice provider has already done it
            return Interpretation(ReplyKind.IGNORED, question, action.value, answer)
        return _unmatched(question, entry, answer)
    # STOP, START and HELP first, as `HearBack` applies them: an opt-out must never count as an answer (CANCEL is
    # an opt-out word for Twilio too; that is why the catalog's cancel words are N/NO).
    if (keyword := classify(text)) is not None:
        return Interpretation(ReplyKind.IGNORED, question, keyword.value, answer)
    words = normalize_answer(text) if text and len(text) <= MAX_ANSWER else ""
    if entry is not None and question is not None and (
            meaning := match_answer(words, entry.answers, language_of(question.locale))):
        return Interpretation(ReplyKind.ANSWER, question, meaning, answer)
    return _unmatched(question, entry, answer)


def _unmatched(question: Question | None, entry: CatalogEntry | None, answer: str | None) -> Interpretation:
    if question is None or entry is None or question.answered:
        return Interpretation(ReplyKind.NO_QUESTION, question, None, answer)
    return Interpretation(ReplyKind.NOT_UNDERSTOOD, question, None, answer)


def match_answer(words: str, answers: dict[str, dict[str, list[str]]], language: str) -> str | None:
    """The meaning of normalised `words`: the question's language first, then any language's words (people
    answer in their own); None when nothing or more than one meaning matches."""
    if not words:
        return None
    local = {m for m, by_language in answers.items()
             for w in by_language.get(language, ()) if normalize_answer(w) == words}
    if local:
        return local.pop() if len(local) == 1 else None
    anywhere = {m for m, by_language in answers.items()
                for ws in by_language.values() for w in ws if normalize_answer(w) == words}
    return anywhere.pop() if len(anywhere) == 1 else None


def _digest(prefix: str, basis: str) -> str:
    return f"{prefix}-" + hashlib.sha256(basis.encode()).hexdigest()[:24]


def _answered(interpretation: Interpretation) -> tuple[Question, str]:
    question, meaning = interpretation.question, interpretation.meaning
    if interpretation.kind is not ReplyKind.ANSWER or question is None or meaning not in MEANINGS:
        raise ValueError(f"not an answer: {interpretation.kind}")
    return question, meaning


def reply_cloudevent(interpretation: Interpretation, now: datetime) -> dict[str, Any]:
    """The answer for upstream on `herald.replies` (key: recipient id), e.g. `appointment.reminder.confirmed`.
    The id depends only on the message and the meaning, so a redelivered webhook publishes the same event."""
    question, meaning = _answered(interpretation)
    return {
        "specversion": "1.0", "id": _digest("ans", f"{question.message_id}|{meaning}"), "source": SOURCE,
        "type": f"{question.event_type}.{OUTCOMES[meaning]}", "time": now.isoformat(),
        "subject": question.recipient_id, "datacontenttype": "application/json",
        **({"tenant": question.tenant} if question.tenant else {}),
        "data": {**question.payload, "message_id": question.message_id, "recipient_id": question.recipient_id,
                 "channel": question.channel, "answer": interpretation.answer, "meaning": meaning},
    }


def reply_recipient(channel: str, address: str, *, recipient_id: str, locale: str = "en") -> dict[str, Any]:
    """`data.to` for Herald's own answer: the person, at the address they wrote from, in their language."""
    return {"id": recipient_id, "email" if channel == "email" else "phone": address, "locale": locale}


def _herald_event(event_type: str, event_id: str, channel: str, tenant: str | None, to: dict[str, Any],
                  payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    # `idempotencykey` = the id: the router sends each acknowledgement or help text at most once.
    return {
        "specversion": "1.0", "id": event_id, "source": SOURCE, "type": event_type, "time": now.isoformat(),
        "subject": to["id"], "idempotencykey": event_id, "channels": [channel],
        **({"tenant": tenant} if tenant else {}), "data": {"to": to, "payload": payload},
    }


def acknowledgement_event(interpretation: Interpretation, to: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """A `reply.acknowledged` event for `herald.events`, on the channel the person answered on."""
    question, meaning = _answered(interpretation)
    return _herald_event(ACKNOWLEDGED_TYPE, _digest("ack", f"{question.message_id}|{meaning}"), question.channel,
                         question.tenant, to, {"meaning": meaning, "subject_type": question.event_type}, now)


def help_event(question: Question | None, to: dict[str, Any], reason: str, *, now: datetime,
               channel: str | None = None) -> dict[str, Any]:
    """A `reply.help` event for `herald.events`. At most one per question (its id is the question's), and without
    a question at most one per address and day: an auto-responder on the other side cannot start a loop."""
    if question is not None:
        channel, tenant = question.channel, question.tenant
        basis = f"{question.message_id}|{reason}"
    elif channel is not None:
        tenant = None
        basis = f"{channel}|{to['id']}|{reason}|{now.date().isoformat()}"
    else:
        raise ValueError("help without a question needs the channel")
    payload = {"reason": reason, **({"subject_type": question.event_type} if question is not None else {})}
    return _herald_event(HELP_TYPE, _digest("hlp", basis), channel, tenant, to, payload, now)
