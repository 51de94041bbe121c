"""Record sizes against the producer's limit: what fits, and how a value that does not is cut to fit.

A record over the limit makes the producer raise before anything is sent, so every writer that copies outside
bytes (dead letters) or grows them (dispatches carry the payload) checks here first instead of finding out from
an exception in its error path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

# Room kept under the limit for the batch header (61 bytes) and the record's framing (varints, a few dozen bytes),
# which aiokafka counts against `max_request_size` with the key, value and headers.
RECORD_OVERHEAD = 512
KEY_LIMIT = 1024  # a key is an id; a longer one is not one


def record_size(key: bytes | None, value: bytes | None, headers: Mapping[str, bytes] | None = None) -> int:
    """Bytes a record takes against the producer's limit, overhead included."""
    head = sum(len(k.encode()) + len(v) for k, v in (headers or {}).items())  # names go out as UTF-8
    return len(key or b"") + len(value or b"") + head + RECORD_OVERHEAD


def fits(key: bytes | None, value: bytes | None, limit: int) -> bool:
    return record_size(key, value) <= limit


@dataclass(frozen=True, slots=True)
class Fitted:
    """A key and value cut to fit, with headers that say what was cut (empty when nothing was)."""

    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def fit(key: bytes | None, value: bytes | None, limit: int, extra_headers: Mapping[str, bytes] | None = None
        ) -> Fitted:
    """Truncate `value` (and an oversized `key`) so the record fits `limit`; the headers keep the original size
    and a SHA-256 digest of each part that was cut, so the original can be matched to its source."""
    value = value or b""
    headers: dict[str, bytes] = {}
    if key is not None and len(key) > KEY_LIMIT:
        headers["herald-key-size"] = str(len(key)).encode()
        headers["herald-key-sha256"] = hashlib.sha256(key).hexdigest().encode()
        key = key[:KEY_LIMIT]
    room = limit - record_size(key, b"", {**(extra_headers or {}), **headers}) - 256  # the headers added below
    if len(value) > room:
        headers["herald-truncated"] = b"true"
        headers["herald-original-size"] = str(len(value)).encode()
        headers["herald-original-sha256"] = hashlib.sha256(value).hexdigest().encode()
        value = value[:max(0, room)]
    return Fitted(key, value, headers)
