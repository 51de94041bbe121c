"""One POST of a status to a tenant's endpoint, signed per Standard Webhooks, and what its answer means.

The webhook channel's provider (channels/providers/webhook.py) does the HTTP: its keep-alive clients per host,
its SSRF guard (public unicast addresses only, the host resolved once and the connection pinned to the checked
address, allowed ports; `HERALD_WEBHOOK_ALLOW_PRIVATE` lifts it for development), its redirect refusal and its
deadline over the whole send (`HERALD_WEBHOOK_TIMEOUT`). Only the body and the secrets differ: the body is the
status record's value byte for byte, and the secrets are the registration's (every live one signs, side by side in
`webhook-signature`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from channels.errors import DeliveryError
from channels.http import retry_after_seconds
from channels.providers.webhook import StandardWebhookProvider

# Reasons (bounded: metric labels and dead-letter headers) of attempts that may succeed later, and of the others.
RETRIABLE = frozenset({"timeout", "connection", "dns_error", "rate_limited", "server_error", "request_timeout"})
PERMANENT = frozenset({"rejected", "gone", "invalid_url", "forbidden_port", "forbidden_address", "too_large"})


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to: `ok`, else a bounded `reason` and whether trying again may help."""

    ok: bool
    reason: str = "delivered"
    detail: str = ""
    retry_after: float | None = None  # seconds the receiver asked for (Retry-After on 429 or 5xx)
    status_code: int | None = None

    @property
    def retriable(self) -> bool:
        return not self.ok and self.reason in RETRIABLE


def judge(response: httpx.Response) -> Attempt:
    """A receiver's answer: 2xx delivered; 408, 429 and 5xx later (Retry-After honoured); 410 gone; any other
    answer (3xx: redirects are never followed, 4xx) refused for good."""
    status = response.status_code
    if response.is_success:
        return Attempt(True, status_code=status, detail=f"HTTP {status}")
    wait = retry_after_seconds(response.headers.get("retry-after"))
    detail = f"HTTP {status}"
    if status == 429:
        return Attempt(False, "rate_limited", detail, wait, status)
    if status >= 500:
        return Attempt(False, "server_error", detail, wait, status)
    if status == 408:
        return Attempt(False, "request_timeout", detail, wait, status)
    if status == 410:
        return Attempt(False, "gone", detail, status_code=status)
    return Attempt(False, "rejected", detail, status_code=status)


class StatusPoster(StandardWebhookProvider):
    """The webhook provider's client and guard, posting a given body signed with given secrets."""

    name = "status_webhook"

    async def post(self, url: str, webhook_id: str, body: bytes, secrets: Sequence[str]) -> Attempt:
        """POST `body` to `url`; never raises but cancellation."""
        if len(body) > self.config.max_body_bytes:
            return Attempt(False, "too_large", f"body over {self.config.max_body_bytes} bytes")
        try:
            async with asyncio.timeout(self.config.timeout):
                return await self._signed_post(url, webhook_id, body, secrets)
        except TimeoutError:
            return Attempt(False, "timeout", f"no answer within {self.config.timeout:g} s")
        except DeliveryError as exc:  # the guard's verdicts: invalid_url, forbidden_*, dns_error
            code = exc.code or "invalid_url"
            if code == "dns_error":
                return Attempt(False, "dns_error", "host did not resolve")
            return Attempt(False, code if code in PERMANENT else "invalid_url", str(exc)[:200])
        except httpx.TimeoutException:
            return Attempt(False, "timeout", "timed out")
        except httpx.TransportError as exc:
            return Attempt(False, "connection", type(exc).__name__)

    async def _signed_post(self, url: str, webhook_id: str, body: bytes, secrets: Sequence[str]) -> Attempt:
        return judge(await self.signed_post(url, webhook_id, body, secrets))
