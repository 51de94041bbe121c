"""Record sizes against the producer's limit: a record that fits is kept whole, one that does not is cut to fit
with the size and digest of what was cut, and the result always fits, by our count and by aiokafka's."""

from __future__ import annotations

import hashlib

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumers.pipeline.sizes import KEY_LIMIT, RECORD_OVERHEAD, Fitted, fit, fits, record_size

pytestmark = pytest.mark.unit

LIMIT = 65_536  # the smallest HERALD_MAX_RECORD_BYTES settings accept
# What `DeadLetters` adds to every dead letter, at its largest: the record's own headers count against the limit.
DEAD_LETTER_HEADERS = {
    "herald-error": b"dispatch_too_large", "herald-error-class": b"MessageSizeTooLargeError",
    "herald-error-detail": b"x" * 300, "herald-source-topic": b"herald.events" + b"x" * 200,
    "herald-source-partition": b"11", "herald-source-offset": b"12345678901", "herald-stage": b"router",
    "herald-attempts": b"9", "herald-first-failure": b"2026-11-24T10:00:00+00:00",
    "herald-message-id": b"msg-" + b"a" * 24,
}


def whole(fitted: Fitted, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    return {**(extra or {}), **fitted.headers}


def producer_size(fitted: Fitted, extra: dict[str, bytes] | None = None) -> int:
    """What aiokafka checks against `max_request_size` before it sends (`AIOKafkaProducer._serialize`)."""
    headers = list(whole(fitted, extra).items())
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(fitted.key, fitted.value, headers)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


def test_sizes__record_size_counts_key_value_headers_and_the_overhead() -> None:
    assert record_size(None, None) == RECORD_OVERHEAD
    assert record_size(b"k" * 3, b"v" * 10, {"h1": b"abc", "h2": b""}) == 3 + 10 + (2 + 3) + 2 + RECORD_OVERHEAD


def test_sizes__a_header_name_counts_its_utf8_bytes_as_the_producer_does() -> None:
    # aiokafka encodes header names as UTF-8: "é" is two bytes on the wire.
    assert record_size(None, None, {"é": b""}) == 2 + RECORD_OVERHEAD


@pytest.mark.parametrize(("size", "expected"), [(LIMIT - RECORD_OVERHEAD, True), (LIMIT - RECORD_OVERHEAD + 1, False)],
                         ids=["at_the_limit", "one_byte_over"])
def test_sizes__fits_is_exact_at_the_limit(size: int, expected: bool) -> None:
    assert fits(None, b"v" * size, LIMIT) is expected


@pytest.mark.parametrize(("key", "value"), [(b"msg-1", b'{"a": 1}'), (None, None), (b"k" * KEY_LIMIT, b"v" * 1000),
                                            (b"k", b"v" * (LIMIT - RECORD_OVERHEAD - 256 - 1))],
                         ids=["small", "empty", "key_at_the_key_limit", "value_just_inside"])
def test_sizes__a_record_that_fits_is_kept_whole_with_no_headers(key: bytes | None, value: bytes | None) -> None:
    fitted = fit(key, value, LIMIT)
    assert fitted == Fitted(key, value or b"", {})


def test_sizes__value_over_the_limit_is_cut_with_size_and_digest() -> None:
    value = bytes(range(256)) * 1000  # 256,000 bytes, not one repeated byte: the prefix must be the original's
    fitted = fit(b"msg-1", value, LIMIT)
    assert fitted.key == b"msg-1"
    assert fitted.headers == {"herald-truncated": b"true", "herald-original-size": b"256000",
                              "herald-original-sha256": sha256(value)}
    assert 0 < len(fitted.value) < len(value)
    assert value.startswith(fitted.value)
    assert record_size(fitted.key, fitted.value, fitted.headers) <= LIMIT
    assert producer_size(fitted) <= LIMIT
    # Not cut more than it must be: the room kept for the added headers is a few hundred bytes.
    assert len(fitted.value) >= LIMIT - RECORD_OVERHEAD - 256 - len(b"msg-1")


def test_sizes__the_extra_headers_count_against_the_limit() -> None:
    value = b"v" * (2 * LIMIT)
    bare, with_headers = fit(None, value, LIMIT), fit(None, value, LIMIT, DEAD_LETTER_HEADERS)
    assert len(bare.value) - len(with_headers.value) == sum(len(k) + len(v) for k, v in DEAD_LETTER_HEADERS.items())
    assert record_size(None, with_headers.value, whole(with_headers, DEAD_LETTER_HEADERS)) <= LIMIT
    assert producer_size(with_headers, DEAD_LETTER_HEADERS) <= LIMIT


def test_sizes__an_oversized_key_is_cut_with_its_own_headers() -> None:
    key = b"K" + b"k" * KEY_LIMIT  # one byte over
    fitted = fit(key, b"small", LIMIT)
    assert fitted.key == key[:KEY_LIMIT]
    assert fitted.value == b"small"
    assert fitted.headers == {"herald-key-size": str(KEY_LIMIT + 1).encode(), "herald-key-sha256": sha256(key)}


def test_sizes__an_oversized_key_and_value_are_both_cut() -> None:
    key, value = b"k" * 200_000, b"v" * 200_000
    fitted = fit(key, value, LIMIT, DEAD_LETTER_HEADERS)
    assert fitted.key == key[:KEY_LIMIT]
    assert set(fitted.headers) == {"herald-key-size", "herald-key-sha256", "herald-truncated",
                                   "herald-original-size", "herald-original-sha256"}
    assert (fitted.headers["herald-key-size"], fitted.headers["herald-original-size"]) == (b"200000", b"200000")
    assert record_size(fitted.key, fitted.value, whole(fitted, DEAD_LETTER_HEADERS)) <= LIMIT


HEADER_NAMES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
EXTRA_HEADERS = st.dictionaries(HEADER_NAMES, st.binary(max_size=300), max_size=16)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key_size=st.one_of(st.none(), st.integers(0, 3 * KEY_LIMIT)), value_size=st.integers(0, 3_000_000),
       limit=st.integers(LIMIT, 2_097_152), extra=st.one_of(st.none(), EXTRA_HEADERS))
@example(key_size=None, value_size=LIMIT, limit=LIMIT, extra=DEAD_LETTER_HEADERS)
@example(key_size=KEY_LIMIT + 1, value_size=3_000_000, limit=LIMIT, extra={"é" * 40: b"x" * 300})
@example(key_size=None, value_size=LIMIT, limit=LIMIT, extra={f"{i}" + "\U0001f600" * 39: b"" for i in range(16)})
def test_sizes__whatever_the_record_the_fitted_one_fits_the_limit(key_size: int | None, value_size: int,
                                                                 limit: int, extra: dict[str, bytes] | None) -> None:
    key = None if key_size is None else bytes(i % 251 for i in range(key_size))
    value = (bytes(range(256)) * (value_size // 256 + 1))[:value_size]
    fitted = fit(key, value, limit, extra)
    assert record_size(fitted.key, fitted.value, whole(fitted, extra)) <= limit
    assert producer_size(fitted, extra) <= limit
    assert value.startswith(fitted.value)
    assert (fitted.value == value) is ("herald-truncated" not in fitted.headers)
    if fitted.value != value:
        assert fitted.headers["herald-original-size"] == str(value_size).encode()
        assert fitted.headers["herald-original-sha256"] == sha256(value)
    if key is not None and len(key) > KEY_LIMIT:
        assert fitted.key == key[:KEY_LIMIT] and fitted.headers["herald-key-sha256"] == sha256(key)
    else:
        assert fitted.key == key and "herald-key-size" not in fitted.headers
