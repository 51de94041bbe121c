"""Survey ratings: the score a reply gives, if it gives one (catalog `survey`; consumers/inbound/replies.py asks).

A reply is a rating only when the whole message is one, ignoring case, accents, punctuation and spaces:

- a number from 1 to the scale: `4`, `4.`, `4` in full width, `4️⃣` (keycap);
- the number with its unit or with the scale: `4 stars`, `4 estrellas`, `4 Sterne`, `4/5`, `4 de 5`, `4 von 5`,
  `4 out of 5`, `4/5 stars` (units and "of" words of every language in `UNITS` and `OF`);
- a number word in the person's language or in English: `four`, `cuatro`, `vier`, `cinq` (`NUMBER_WORDS`);
- stars: `⭐⭐⭐⭐`, `★★★★☆` (filled stars count; with empty ones, filled and empty make the scale).

Anything else is not a rating and stays an ordinary reply: `0` or `6` on a 1-5 scale, `4.5`, `4-5`, `10/10`, `4/10`,
`yes`, `4 please`, and a number word of a language other than the person's and English (`cinco` from a German
speaker): `due`, `sei` and `um` are numbers in Italian and Portuguese but words in English and German.
Pure functions.
"""

from __future__ import annotations

import re
import unicodedata

MAX_RATING_TEXT = 64  # characters: a longer message is a sentence, never a rating (bounds the work too)

# Number words by language, casefolded without accents (`fünf` -> `funf`). Ratings go to 9 at most.
NUMBER_WORDS: dict[str, dict[str, int]] = {
    "en": {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9},
    "es": {"uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7, "ocho": 8,
           "nueve": 9},
    "de": {"eins": 1, "zwei": 2, "drei": 3, "vier": 4, "funf": 5, "fuenf": 5, "sechs": 6, "sieben": 7, "acht": 8,
           "neun": 9},
    "fr": {"un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "six": 6, "sept": 7, "huit": 8,
           "neuf": 9},
    "it": {"uno": 1, "una": 1, "due": 2, "tre": 3, "quattro": 4, "cinque": 5, "sei": 6, "sette": 7, "otto": 8,
           "nove": 9},
    "pt": {"um": 1, "uma": 1, "dois": 2, "duas": 2, "tres": 3, "quatro": 4, "cinco": 5, "seis": 6, "sete": 7,
           "oito": 8, "nove": 9},
    "nl": {"een": 1, "twee": 2, "drie": 3, "vier": 4, "vijf": 5, "zes": 6, "zeven": 7, "acht": 8, "negen": 9},
}
LINGUA_FRANCA = "en"  # its words count whatever the person's language
# What may follow the number: a unit (`4 stars`), in any of these languages (only ever after a number).
UNITS = frozenset({"star", "stars", "point", "points", "pt", "pts", "estrella", "estrellas", "punto", "puntos",
                   "stern", "sterne", "sternen", "punkt", "punkte", "punkten", "pkt", "etoile", "etoiles", "stella",
                   "stelle", "punti", "estrela", "estrelas", "ponto", "pontos", "ster", "sterren", "punt", "punten"})
# What may stand between the number and the scale: `4/5`, `4 of 5`, `4 out of 5`, `4 de 5`, `4 von 5`, `4 sur 5`…
OF = frozenset({"/", "of", "out of", "de", "sobre", "von", "sur", "su", "van", "uit"})
FILLED_STARS = frozenset("⭐★🌟")
EMPTY_STARS = frozenset("☆")
# Dropped before reading: emoji presentation selectors and the keycap mark of `4️⃣`.
_INVISIBLE = dict.fromkeys(map(ord, "\ufe0f\ufe0e\u20e3"))
_PUNCTUATION = re.compile(r"[^\w\s/]|_")


def rating_of_digits(digits: str | None, scale: int) -> int | None:
    """A keypad answer: one key from 1 to `scale`."""
    if digits and len(digits) == 1 and digits in "123456789" and int(digits) <= scale:
        return int(digits)
    return None


def parse_rating(text: str | None, scale: int, language: str = LINGUA_FRANCA) -> int | None:
    """The rating a text reply gives on a 1..`scale` survey, in the person's `language` (`es`), or None when the
    reply is not a rating (see the module docstring)."""
    if not text or len(text) > MAX_RATING_TEXT:
        return None
    bare = text.translate(_INVISIBLE).strip()
    if bare and set(bare.replace(" ", "")) <= FILLED_STARS | EMPTY_STARS:
        return _stars(bare, scale)
    tokens = _tokens(bare)
    if not tokens:
        return None
    words = {**NUMBER_WORDS.get(language, {}), **NUMBER_WORDS[LINGUA_FRANCA]}
    score, rest = _number(tokens[0], words), tokens[1:]
    if rest and rest[-1] in UNITS:
        rest = rest[:-1]
    if rest and (" ".join(rest[:-1]) not in OF or _number(rest[-1], words) != scale):
        return None  # a scale that is not the survey's (`4/10`), or words that are not one
    return score if score is not None and 1 <= score <= scale else None


def _stars(text: str, scale: int) -> int | None:
    filled = sum(c in FILLED_STARS for c in text)
    empty = sum(c in EMPTY_STARS for c in text)
    if empty and filled + empty != scale:
        return None
    return filled if 1 <= filled <= scale else None


def _tokens(text: str) -> list[str]:
    """`"¡Cuatro estrellas!"` -> `["cuatro", "estrellas"]`, `"4/5"` -> `["4", "/", "5"]` (full width and other
    compatibility forms read as their plain letters and digits)."""
    plain = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    plain = "".join(c for c in plain if not unicodedata.combining(c)).casefold()
    return _PUNCTUATION.sub(" ", plain).replace("/", " / ").split()


def _number(token: str, words: dict[str, int]) -> int | None:
    if token.isascii() and token.isdigit():
        return int(token)
    return words.get(token)
