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


def verify_standard_webhook(secret: str, headers: Mapping[str, str], body: bytes, *, now: int,
                            tolerance: int = 300) -> bool:
    """Check `webhook-id`, `webhook-timestamp` (within tolerance) and any `v1,` signature in the list."""
    msg_id, ts = headers.get("webhook-id"), headers.get("webhook-timestamp")
    if not msg_id or not ts or not ts.isdigit() or abs(now - int(ts)) > tolerance:
        return False
    expected = standard_webhook_signature(secret, msg_id, int(ts), body)
    return any(hmac.compare_digest(expected, sig) for sig in headers.get("webhook-signature", "").split())


def safe_equal(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def link_signature(secret: bytes, *parts: str) -> str:
    """A short URL-safe HMAC-SHA256 (128 bits) over `parts`, for Herald's own signed, expiring links."""
    digest = hmac.new(secret, "|".join(parts).encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
