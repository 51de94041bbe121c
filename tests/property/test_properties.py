"""Properties that must hold for any input, checked with hypothesis."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from channels.providers.email_headers import clean_header
from channels.rendering.render import locale_chain
from channels.segments import GSM7_BASIC, GSM7_EXTENDED, sms_segments
from schemas.events import CloudEvent

pytestmark = pytest.mark.unit

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- clean_header ---------------------------------------------------------------------------------------------

LINE_BREAKY = st.text(alphabet=st.sampled_from(["\r", "\n", "\0", "\x85", "\u2028", "\u2029", "\x0b", "\x0c",
                                                "\t", " ", "a", "B", ":", "é", "\x7f"]), max_size=60)


@FAST
@given(st.one_of(st.text(), LINE_BREAKY))
@example("Hi\r\nBcc: evil@x.com")
@example("\r\n\r\n")
def test_clean_header__never_contains_cr_lf_or_nul(value: str) -> None:
    cleaned = clean_header(value)

    assert "\r" not in cleaned
    assert "\n" not in cleaned
    assert "\0" not in cleaned
    assert len(cleaned) <= 998
    assert cleaned == cleaned.strip()


@FAST
@given(st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=200))
def test_clean_header__printable_single_spaced_text_is_unchanged(value: str) -> None:
    value = " ".join(value.split())

    assert clean_header(value) == value


# --- CloudEvent.from_record -----------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
ENVELOPE_KEYS = ["specversion", "id", "source", "type", "time", "data", "to", "payload", "email", "timezone",
                 "locale", "name", "idempotencykey", "priority", "sendat", "channels"]
ENVELOPE_ISH = st.dictionaries(st.sampled_from(ENVELOPE_KEYS), JSON | st.dictionaries(
    st.sampled_from(ENVELOPE_KEYS), JSON, max_size=5), max_size=8)
RECORD_VALUE = st.one_of(
    st.none(),
    st.binary(max_size=200),
    JSON.map(orjson.dumps),
    ENVELOPE_ISH.map(orjson.dumps),
)
CE_HEADER_NAMES = st.sampled_from(["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_priority",
                                   "ce_sendat", "ce_channels", "ce_data", "content-type"])
HEADERS = st.one_of(
    st.none(),
    st.dictionaries(CE_HEADER_NAMES, st.one_of(st.binary(max_size=20), st.sampled_from([b"1.0", b"x", b""])),
                    max_size=6),
)


def _parse(value: Any, headers: Any) -> None:
    """Parse, tolerating only the documented failures; anything else propagates and fails the property."""
    # pydantic.ValidationError, orjson.JSONDecodeError and UnicodeDecodeError are all ValueError subclasses.
    with contextlib.suppress(ValueError, orjson.JSONDecodeError, UnicodeDecodeError):
        CloudEvent.from_record(value, headers)


@FAST
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xff\xfe")
@example(b"null")
@example(b"[]")
@example(b'{"specversion": "1.0"}')
def test_cloudevent__from_record_of_arbitrary_bytes_raises_only_value_errors(value: bytes) -> None:
    _parse(value, None)


@FAST
@given(RECORD_VALUE, HEADERS)
@example(b"\xff", {"ce_specversion": b"1.0"})
@example(b"{}", {"ce_specversion": b"\xff"})
@example(None, {"ce_specversion": b"1.0"})
def test_cloudevent__from_record_of_arbitrary_records_raises_only_value_errors(value: bytes | None,
                                                                               headers: dict[str, bytes] | None
                                                                               ) -> None:
    _parse(value, headers)


# --- locale_chain ---------------------------------------------------------------------------------------------

TAGS = st.from_regex(r"[a-z]{2}(-[A-Z]{2})?", fullmatch=True)


@FAST
@given(TAGS)
def test_locale_chain__ends_with_en_and_has_no_duplicates(tag: str) -> None:
    chain = locale_chain(tag)

    assert chain[-1] == "en"
    assert len(chain) == len(set(chain))
    assert chain[0] == tag


@FAST
@given(TAGS, st.sampled_from(["en", "es", "de"]))
def test_locale_chain__ends_with_any_default(tag: str, default: str) -> None:
    chain = locale_chain(tag, default=default)

    assert chain[-1] == default
    assert len(chain) == len(set(chain))


@FAST
@given(TAGS)
def test_locale_chain__underscore_and_case_are_normalised(tag: str) -> None:
    assert locale_chain(tag.replace("-", "_").lower()) == locale_chain(tag)


# --- sms_segments ---------------------------------------------------------------------------------------------

GSM_HEAVY = st.text(
    alphabet=st.sampled_from([*sorted(GSM7_BASIC | GSM7_EXTENDED), "á", "中", "\U0001f600", "\u00a0"]),
    max_size=400,
)
SMS_TEXT = st.one_of(st.text(max_size=400), GSM_HEAVY)
ONE_CHAR = st.one_of(st.characters(), st.sampled_from([*sorted(GSM7_EXTENDED), "a", "á", "\U0001f600"]))


@FAST
@given(SMS_TEXT, ONE_CHAR)
@example("a" * 160, "á")
@example("€" * 80, "a")
@example("a" * 70, "\U0001f600")
def test_sms_segments__appending_a_character_never_lowers_the_count(text: str, char: str) -> None:
    _, before = sms_segments(text)
    _, after = sms_segments(text + char)

    assert after >= before


@FAST
@given(SMS_TEXT)
def test_sms_segments__at_least_one_segment_and_a_known_encoding(text: str) -> None:
    encoding, segments = sms_segments(text)

    assert encoding in {"GSM-7", "UCS-2"}
    assert segments >= 1
    assert (encoding == "GSM-7") == all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)
