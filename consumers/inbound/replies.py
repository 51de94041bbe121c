"""Two-way replies: an answer is matched to the last message that asked the person a question on that channel.

Herald remembers each question it sends (`consumers.state.conversations`, keyed by channel and a keyed hash of the
address, never the address itself). When the person writes back, `interpret` reads the reply against the
catalog's `answers` (text) or `keypad` (voice digits) of the question's type, or, for a type with a `survey`, as a
rating (`consumers.inbound.ratings`). An answer becomes a CloudEvent for upstream
(`appointment.reminder.confirmed`, `service.survey.rated`) and an acknowledgement on the same channel
(`reply.acknowledged`); a reply Herald cannot read gets a short help text (`reply.help`). Pure logic: no I/O except
through the store.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from consumers.inbound.keywords import classify
from consumers.inbound.ratings import parse_rating, rating_of_digits
from consumers.state.conversations import Question
from schemas.catalog import Catalog, CatalogEntry, KeypadAction
from schemas.surveys import SURVEY_CHANNELS

log = logging.getLogger(__name__)

SOURCE = "herald/replies"
ACKNOWLEDGED_TYPE = "reply.acknowledged"
HELP_TYPE = "reply.help"
MEANINGS = (KeypadAction.CONFIRM.value, KeypadAction.CANCEL.value)
OUTCOMES = {KeypadAction.CONFIRM.value: "confirmed", KeypadAction.CANCEL.value: "cancelled"}
RATE = KeypadAction.RATE.value  # the meaning of a rating
RATED = "rated"  # `<type>.rated`

# Channels whose replies Herald can read: text answers on these, keypad digits on voice. Email has no inbound.
TEXT_CHANNELS = frozenset({"sms", "whatsapp"})
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


def asks_question(entry: CatalogEntry, channel: str) -> bool:
    """Whether a message of this type on this channel expects an answer Herald can read."""
    if entry.survey is not None:
        return channel in SURVEY_CHANNELS
    if channel == "voice":
        return any(action.value in MEANINGS for action in entry.keypad.values())
    return channel in TEXT_CHANNELS and bool(entry.answers)


class ReplyKind(StrEnum):
    ANSWER = "answer"  # confirm or cancel, for `question`
    RATING = "rating"  # a score for `question`, whose type has a `survey`
    NOT_UNDERSTOOD = "not_understood"  # a question is open, the reply matches none of its answers
    NO_QUESTION = "no_question"  # nothing is open: a spontaneous text, or chatter after an answer
    IGNORED = "ignored"  # handled elsewhere: STOP/START/HELP (consumers/inbound/keywords.py), keypad repeat / agent


@dataclass(frozen=True, slots=True)
class Interpretation:
    """What a reply means. `meaning`: confirm/cancel for an answer, rate for a rating (its `score`);
    stop/start/help/repeat/agent when ignored."""

    kind: ReplyKind
    question: Question | None = None
    meaning: str | None = None
    answer: str | None = None  # the raw text or digits
    score: int | None = None  # a rating's, from 1 to its survey's scale


def interpret(text: str | None, digits: str | None, question: Question | None, catalog: Catalog) -> Interpretation:
    """Read a reply against the question's catalog entry: digits through `keypad`, text through `answers`; for a
    survey, digits and text as a rating first."""
    answer = digits if digits else text
    entry = catalog.get(question.event_type) if question is not None else None
    if digits and (rating := _rating(question, entry, digits, None)) is not None:
        return rating
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
    if (rating := _rating(question, entry, None, text)) is not None:
        return rating
    words = normalize_answer(text) if text and len(text) <= MAX_ANSWER else ""
    if entry is not None and question is not None and (
            meaning := match_answer(words, entry.answers, language_of(question.locale))):
        return Interpretation(ReplyKind.ANSWER, question, meaning, answer)
    return _unmatched(question, entry, answer)


def _rating(question: Question | None, entry: CatalogEntry | None, digits: str | None,
            text: str | None) -> Interpretation | None:
    """A rating, when the question's type is a survey and the reply reads as a score on its scale."""
    if question is None or entry is None or entry.survey is None:
        return None
    scale = entry.survey.scale
    score = rating_of_digits(digits, scale) if digits else parse_rating(text, scale, language_of(question.locale))
    return None if score is None else Interpretation(ReplyKind.RATING, question, RATE, digits or text, score)


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


def _answered(interpretation: Interpretation, *, ratings: bool = False) -> tuple[Question, str]:
    question, meaning = interpretation.question, interpretation.meaning
    if ratings and interpretation.kind is ReplyKind.RATING and question is not None and meaning == RATE:
        return question, meaning
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


def rating_cloudevent(interpretation: Interpretation, *, scale: int, recipient: str | None, at: datetime,
                      reply_id: str | None = None) -> dict[str, Any]:
    """A rating for upstream on `herald.replies` (key: recipient id), e.g. `service.survey.rated`: the score, its
    scale, the message and event it rates, and `recipient`, the keyed hash of the address (as on herald.status),
    never the address. The id depends on the message, the provider's id of the reply (`reply_id`) and the score:
    a redelivered webhook publishes the same event, a person who rates again a new one (the latest counts)."""
    question = interpretation.question
    if interpretation.kind is not ReplyKind.RATING or question is None or interpretation.score is None:
        raise ValueError(f"not a rating: {interpretation.kind}")
    return {
        "specversion": "1.0", "id": _digest("rat", f"{question.message_id}|{reply_id or ''}|{interpretation.score}"),
        "source": SOURCE, "type": f"{question.event_type}.{RATED}", "time": at.isoformat(),
        "subject": question.recipient_id, "datacontenttype": "application/json",
        **({"tenant": question.tenant} if question.tenant else {}),
        "data": {**question.payload, "message_id": question.message_id, "event_id": question.event_id,
                 "recipient_id": question.recipient_id, "recipient": recipient, "channel": question.channel,
                 "score": interpretation.score, "scale": scale, "answer": interpretation.answer,
                 "at": at.isoformat()},
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
    """A `reply.acknowledged` event for `herald.events`, on the channel the person answered on (a rating's too)."""
    question, meaning = _answered(interpretation, ratings=True)
    return _herald_event(ACKNOWLEDGED_TYPE, _digest("ack", f"{question.message_id}|{meaning}"), question.channel,
                         question.tenant, to, {"meaning": meaning, "subject_type": question.event_type}, now)


def help_event(question: Question | None, to: dict[str, Any], reason: str, *, now: datetime,
               channel: str | None = None, scale: int | None = None) -> dict[str, Any]:
    """A `reply.help` event for `herald.events`. At most one per question (its id is the question's), and without
    a question at most one per address and day: an auto-responder on the other side cannot start a loop. `scale`:
    the question was a survey's, so the help asks for a number from 1 to it."""
    if question is not None:
        channel, tenant = question.channel, question.tenant
        basis = f"{question.message_id}|{reason}"
    elif channel is not None:
        tenant = None
        basis = f"{channel}|{to['id']}|{reason}|{now.date().isoformat()}"
    else:
        raise ValueError("help without a question needs the channel")
    payload = {"reason": reason, **({"subject_type": question.event_type} if question is not None else {}),
               **({"scale": scale} if scale is not None else {})}
    return _herald_event(HELP_TYPE, _digest("hlp", basis), channel, tenant, to, payload, now)
