"""STOP/START/HELP keywords: whole message only, any case or accent, in English, Spanish and German."""

from __future__ import annotations

import pytest

from consumers.inbound.keywords import Keyword, classify

pytestmark = pytest.mark.unit

CASES = [
    # English (Twilio / CTIA)
    ("STOP", Keyword.STOP), ("stop", Keyword.STOP), ("  Stop  ", Keyword.STOP), ("STOP.", Keyword.STOP),
    ("stop!", Keyword.STOP), ("STOPALL", Keyword.STOP), ("stop all", Keyword.STOP),
    ("UNSUBSCRIBE", Keyword.STOP), ("Cancel", Keyword.STOP), ("END", Keyword.STOP), ("quit", Keyword.STOP),
    ("OPTOUT", Keyword.STOP), ("opt-out", Keyword.STOP), ("REVOKE", Keyword.STOP),
    ("START", Keyword.START), ("unstop", Keyword.START), ("SUBSCRIBE", Keyword.START),
    ("Resume", Keyword.START),
    ("HELP", Keyword.HELP), ("info", Keyword.HELP), ("Help?", Keyword.HELP),
    # Spanish
    ("BAJA", Keyword.STOP), ("báJa ", Keyword.STOP), ("Alto", Keyword.STOP), ("PARAR", Keyword.STOP),
    ("detener", Keyword.STOP), ("ALTA", Keyword.START), ("Ayuda", Keyword.HELP), ("¡AYUDA!", Keyword.HELP),
    # German
    ("STOPP", Keyword.STOP), ("abmelden", Keyword.STOP), ("Ende", Keyword.STOP),
    ("ANMELDEN", Keyword.START), ("Start", Keyword.START), ("hilfe", Keyword.HELP),
    # appointment answers and other text are not keywords
    ("YES", None), ("SI", None), ("Sí", None), ("JA", None), ("NO", None), ("NEIN", None), ("CANCELAR", None),
    ("1", None), ("stop the delivery please", None), ("please stop", None), ("STOP STOP", None),
    ("helpful", None), ("stopped", None), ("", None), ("   ", None), ("🛑", None), ("S" * 500, None),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[repr(text)[:30] for text, _ in CASES])
def test_classify__keyword_table(text: str, expected: Keyword | None) -> None:
    assert classify(text) is expected


def test_classify__no_text_is_no_keyword() -> None:
    assert classify(None) is None
