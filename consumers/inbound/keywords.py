"""Opt-out, opt-in and help keywords in inbound texts (SMS, WhatsApp).

Only a message that is the keyword and nothing else counts ("STOP", " stop. ", "Bája"), never a keyword inside a
sentence ("stop the delivery please"), as carriers and Twilio do. Words that also answer appointment reminders
("YES", "SI", "JA", "CANCELAR") are deliberately absent: "SI" must confirm the appointment, not subscribe anyone.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum


class Keyword(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


# English: Twilio's default opt-out, opt-in and help words for long codes (CTIA), minus YES:
# https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out and
# https://help.twilio.com/articles/223134027 (single-word messages only; Twilio also passes them to the webhook)
# ("STOP ALL" and "OPT-OUT" normalise to STOPALL and OPTOUT.)
_WORDS: dict[Keyword, tuple[str, ...]] = {
    Keyword.STOP: ("stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke",
                   "baja", "alto", "parar", "detener",  # Spanish
                   "stopp", "abmelden", "ende"),  # German
    Keyword.START: ("start", "unstop", "subscribe", "resume",
                    "alta",  # Spanish
                    "anmelden"),  # German ("start" is the same word)
    Keyword.HELP: ("help", "info",
                   "ayuda",  # Spanish
                   "hilfe"),  # German
}
KEYWORDS: dict[str, Keyword] = {word: kind for kind, words in _WORDS.items() for word in words}
_MAX_INPUT = 64  # longer messages are sentences, never a keyword; bounds the normalisation work


def normalise(text: str) -> str:
    """Accents off, case folded, and everything but letters and digits dropped ("Bája." -> "baja")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c)).casefold()


def classify(text: str | None) -> Keyword | None:
    """The keyword an inbound text is, or None when it is anything else."""
    if not text or len(text) > _MAX_INPUT:
        return None
    return KEYWORDS.get(normalise(text))
