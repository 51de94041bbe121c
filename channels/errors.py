"""Errors a channel raises. Retry code reads only `.retriable`, never vendor codes."""

from __future__ import annotations


class DeliveryError(Exception):
    """A send did not succeed. `reason` is a short machine word; `code` the provider's own code."""

    retriable: bool = False
    reason: str = "delivery_error"
    # Seconds the provider (or an open circuit breaker) asked to wait before the next try; None when unsaid.
    retry_after: float | None = None

    def __init__(self, message: str, *, code: str | None = None, retriable: bool | None = None,
                 provider: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.provider = provider
        if retriable is not None:
            self.retriable = retriable

    @property
    def detail(self) -> str:
        """What goes into a status `detail`: the provider's code when known, else the reason."""
        return self.code or self.reason


class ProviderUnavailable(DeliveryError):
    """Connection refused, timeout, 5xx: try again later."""

    retriable = True
    reason = "provider_unavailable"


class RateLimited(DeliveryError):
    """The provider asked us to slow down."""

    retriable = True
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None,
                 retriable: bool | None = None, provider: str | None = None) -> None:
        super().__init__(message, code=code, retriable=retriable, provider=provider)
        self.retry_after = retry_after


class InvalidRecipient(DeliveryError):
    """The address does not exist or cannot receive this channel."""

    reason = "invalid_recipient"


class Rejected(DeliveryError):
    """The provider refused the message for good (content, policy, auth)."""

    reason = "rejected"


class RenderError(DeliveryError):
    """A template is missing, or the payload lacks what it needs. Permanent: the input is wrong."""

    reason = "template_error"

    def __init__(self, message: str, *, reason: str = "template_error") -> None:
        super().__init__(message)
        self.reason = reason
