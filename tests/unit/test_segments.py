"""SMS segment arithmetic (GSM 03.38)."""

from __future__ import annotations

import pytest

from channels.segments import GSM7_BASIC, GSM7_EXTENDED, sms_segments

pytestmark = pytest.mark.unit

EMOJI = "\U0001f600"  # outside the BMP: two UTF-16 code units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 1)),
        ("a", ("GSM-7", 1)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),   # 2 x 153
        ("a" * 307, ("GSM-7", 3)),
        ("€", ("GSM-7", 1)),
        ("€" * 80, ("GSM-7", 1)),    # 160 units
        ("€" * 81, ("GSM-7", 2)),    # 162 units: the euro sign counts 2
        ("a" * 158 + "€", ("GSM-7", 1)),
        ("a" * 159 + "€", ("GSM-7", 2)),
        ("a" * 160 + "{", ("GSM-7", 2)),
        ("Pedido 1001: 59,90 € ¡gracias!", ("GSM-7", 1)),
        ("á", ("UCS-2", 1)),
        ("á" * 70, ("UCS-2", 1)),
        ("á" * 71, ("UCS-2", 2)),
        ("á" * 134, ("UCS-2", 2)),   # 2 x 67
        ("á" * 135, ("UCS-2", 3)),
        ("a" * 69 + "á", ("UCS-2", 1)),
        ("a" * 70 + "á", ("UCS-2", 2)),  # one non-GSM char turns the whole text into UCS-2
        (EMOJI, ("UCS-2", 1)),
        (EMOJI * 35, ("UCS-2", 1)),  # 70 units
        (EMOJI * 36, ("UCS-2", 2)),  # 72 units: an emoji counts 2
        ("a" * 69 + EMOJI, ("UCS-2", 2)),
        ("a\u00a0b", ("UCS-2", 1)),  # no-break space is not GSM-7
    ],
    ids=["empty", "one-char", "160-gsm", "161-gsm", "306-gsm", "307-gsm", "euro", "80-euros", "81-euros",
         "158-plus-euro", "159-plus-euro", "160-plus-brace", "spanish-gsm", "a-acute", "70-ucs2", "71-ucs2",
         "134-ucs2", "135-ucs2", "69-plus-acute", "70-plus-acute", "emoji", "35-emoji", "36-emoji",
         "69-plus-emoji", "nbsp"],
)
def test_sms_segments__table(text: str, expected: tuple[str, int]) -> None:
    assert sms_segments(text) == expected


@pytest.mark.parametrize("char", sorted(GSM7_EXTENDED))
def test_sms_segments__every_extended_char_counts_two(char: str) -> None:
    assert sms_segments(char * 80) == ("GSM-7", 1)
    assert sms_segments(char * 81) == ("GSM-7", 2)


def test_sms_segments__every_basic_char_counts_one() -> None:
    for char in GSM7_BASIC:
        assert sms_segments(char * 160) == ("GSM-7", 1), repr(char)
        assert sms_segments(char * 161) == ("GSM-7", 2), repr(char)


@pytest.mark.parametrize("char", ["á", "ç", "ó", "中", "\u0301", "\t"], ids=repr)
def test_sms_segments__non_gsm_char_is_ucs2(char: str) -> None:
    assert sms_segments("Hola " + char)[0] == "UCS-2"
