"""The vendors' webhook signature schemes, for verifying (Herald) and signing (the simulator)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """`X-Twilio-Signature`: base64 HMAC-SHA1 of the full URL followed by the sorted POST fields."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def meta_signature(app_secret: str, body: bytes) -> str:
    """`X-Hub-Signature-256`: `sha256=` + hex HMAC-SHA256 of the raw body with the app secret."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def _webhook_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def standard_webhook_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks `webhook-signature`: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_webhook_key(secret), signed, hashlib.sha256).digest()).decode()


def verify_standard_webhook(secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
                            tolerance: float = 300) -> bool:
    """Check `webhook-id`, `webhook-timestamp` (within tolerance) and any `v1,` signature in the list."""
    msg_id, ts = headers.get("webhook-id"), headers.get("webhook-timestamp")
    seconds = unix_seconds(ts)
    if not msg_id or seconds is None or not fresh(seconds, now, tolerance):
        return False
    try:
        expected = standard_webhook_signature(secret, msg_id, seconds, body)
    except UnicodeEncodeError:  # an id that is not text (a lone surrogate) was never signed
        return False
    return any(safe_equal(sig, expected) for sig in headers.get("webhook-signature", "").split())


# A Unix time in seconds has 10 digits until the year 2286; more is not a time a vendor signed.
_MAX_SECONDS_DIGITS = 12


def unix_seconds(value: str | None) -> int | None:
    """A signed timestamp header or parameter as Unix seconds, or None when it is not plain ASCII digits.

    `str.isdigit()` alone is not enough: it is true for `²` or `٣`, which `int()` then refuses (or, for Arabic-Indic
    digits, reads), so a vendor's timestamp is checked to be `[0-9]+` before it is read."""
    if not value or len(value) > _MAX_SECONDS_DIGITS or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def fresh(seconds: int, now: float, tolerance: float) -> bool:
    """Whether a signed timestamp is within `tolerance` seconds of `now`, either way (clocks drift both ways)."""
    return abs(now - seconds) <= tolerance


def safe_equal(a: str | None, b: str) -> bool:
    """Constant-time comparison of a received value with the expected one. Received text may hold anything a
    request can carry (a header byte that is not UTF-8 arrives as a lone surrogate): it never raises."""
    if a is None:
        return False
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def link_signature(secret: bytes, *parts: str) -> str:
    """A short URL-safe HMAC-SHA256 (128 bits) over `parts`, for Herald's own signed, expiring links. Parts that are
    not valid text (lone surrogates from a hostile URL) are signed as their escaped bytes, so this never raises."""
    digest = hmac.new(secret, "|".join(parts).encode("utf-8", "surrogatepass"), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
