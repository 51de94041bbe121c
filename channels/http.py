"""Shared HTTP plumbing for providers: one reused `httpx.AsyncClient` each, and one error mapping."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

import httpx

from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from schemas.settings import Settings

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_CONNECTIONS = 64
DEFAULT_LIMITS = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=32, keepalive_expiry=30)

# A vendor's own error codes, mapped to Herald's classes; the fallback is by HTTP status.
CodeTable = Mapping[str, type[DeliveryError]]


def build_client(base_url: str, *, auth: httpx.Auth | tuple[str, str] | None = None,
                 headers: Mapping[str, str] | None = None, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The one client a provider keeps for its lifetime (httpx costs ~1.5 ms of CPU per new client here)."""
    return httpx.AsyncClient(base_url=base_url, auth=auth, headers=dict(headers or {}), timeout=timeout,
                             limits=DEFAULT_LIMITS, transport=transport)


class HttpProvider:
    """What every HTTP provider shares: built from its own settings class, one client for its lifetime."""

    settings_class: ClassVar[Callable[[], Any]]
    client: httpx.AsyncClient

    if TYPE_CHECKING:
        # The constructor every subclass has (its own settings, Herald's, an optional transport): `from_settings`.
        def __init__(self, config: Any, settings: Settings, *,
                     transport: httpx.AsyncBaseTransport | None = None) -> None: ...

    @classmethod
    def from_settings(cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> Self:
        return cls(cls.settings_class(), settings, transport=transport)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.client.aclose()


def base_url_for(own: str | None, settings: Settings, vendor: str) -> str:
    """A provider's configured base URL, else (outside production) its path on the provider simulator."""
    if own:
        return own
    if settings.env == "production":
        raise ValueError(f"HERALD_{vendor.upper()}_BASE_URL must be set when HERALD_ENV=production")
    return f"{settings.sim_url.rstrip('/')}/{vendor}"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@contextlib.contextmanager
def http_errors(provider: str) -> Iterator[None]:
    """Map every `httpx` transport failure to a retriable `ProviderUnavailable`; nothing escapes unmapped."""
    try:
        yield
    except DeliveryError:
        raise
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable("timeout", code="timeout", provider=provider) from exc
    except httpx.TransportError as exc:  # connect errors, protocol errors, proxy errors…
        raise ProviderUnavailable(type(exc).__name__, code="transport", provider=provider) from exc


def raise_for_status(response: httpx.Response, provider: str, *, vendor_code: str | None = None,
                     codes: CodeTable | None = None, message: str = "") -> None:
    """Raise the right `DeliveryError` for a failed response: vendor code first, then the HTTP status."""
    if response.is_success:
        return
    status = response.status_code
    text = message or f"HTTP {status}"
    kwargs: dict[str, Any] = {"code": vendor_code or str(status), "provider": provider}
    if vendor_code and codes and vendor_code in codes:
        cls = codes[vendor_code]
        if cls is RateLimited:
            raise RateLimited(text, retry_after=retry_after_seconds(response.headers.get("retry-after")), **kwargs)
        raise cls(text, **kwargs)
    if status == 429:
        raise RateLimited(text, retry_after=retry_after_seconds(response.headers.get("retry-after")), **kwargs)
    if status >= 500 or status in (408, 425):
        raise ProviderUnavailable(text, **kwargs)
    if status == 404:
        raise InvalidRecipient(text, **kwargs)
    raise Rejected(text, **kwargs)


def response_json(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object, or `{}` when it is not one (vendors answer HTML on some errors)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def vendor_code(value: Any) -> str | None:
    """A vendor error code as text (Twilio sends numbers, Vonage strings)."""
    return None if value is None else str(value)
