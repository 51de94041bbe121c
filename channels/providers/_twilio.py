"""What Twilio's SMS and voice providers share: settings, the API client, account-level error codes, and how a
Twilio webhook is verified and named (signature, idempotency token)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.errors import DeliveryError, ProviderUnavailable, RateLimited, Rejected
from channels.http import base_url_for, build_client
from channels.phone import EnvMap, parse_env_map
from channels.signatures import safe_equal, twilio_signature
from channels.webhooks import WebhookRequest
from schemas.settings import Settings


class TwilioSettings(BaseSettings):
    """`HERALD_TWILIO_*`. Without a base URL, the provider simulator (`HERALD_SIM_URL/twilio`) is used."""

    model_config = SettingsConfigDict(env_prefix="HERALD_TWILIO_", extra="ignore")
    # Credentials whose defaults are the simulator's development values; production refuses them
    # (channels/production.py). Field -> what to set instead.
    DEV_DEFAULTS: ClassVar[dict[str, str]] = {"account_sid": "your account's SID",
                                              "auth_token": "your account's auth token"}

    base_url: str | None = Field(default=None, description="https://api.twilio.com in production.")
    account_sid: str = "ACdev00000000000000000000000000000"
    auth_token: SecretStr = SecretStr("dev-twilio-auth-token")
    sms_from: EnvMap = Field(default_factory=lambda: {"default": "+15005550006"},
                             description="Sender per country: `default=+1…,ES=+34…`.")
    voice_from: str = "+15005550006"

    @field_validator("sms_from", mode="before")
    @classmethod
    def _senders(cls, value: Any) -> Any:
        return parse_env_map(value)


# Account-level Twilio codes, the same for every Twilio API (messages and calls).
TWILIO_ACCOUNT_CODES: dict[str, type[DeliveryError]] = {
    "20003": Rejected,  # authentication failed
    "20404": Rejected,  # account or resource not found: configuration, never the recipient's address
    "20429": RateLimited,
    "20500": ProviderUnavailable,
    "20503": ProviderUnavailable,
}


def twilio_client(config: TwilioSettings, settings: Settings,
                  transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    """The one client of a Twilio provider: basic auth with the account SID and token."""
    return build_client(base_url_for(config.base_url, settings, "twilio"),
                        auth=(config.account_sid, config.auth_token.get_secret_value()), transport=transport)


def verify_twilio_request(auth_token: str, request: WebhookRequest) -> bool:
    """`X-Twilio-Signature` over the full URL and, for a POST, its form fields, keyed by the account's auth token."""
    params = request.form() if request.method == "POST" else {}
    expected = twilio_signature(auth_token, request.url, params)
    return safe_equal(request.header("x-twilio-signature"), expected)


TWILIO_IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
TWILIO_IDEMPOTENCY_MAX = 200  # Twilio's tokens are short; a longer value is not one, and is not remembered


def twilio_idempotency_token(request: WebhookRequest) -> str | None:
    """`I-Twilio-Idempotency-Token`: the same on every retry of one webhook, so a second delivery is a replay.

    https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides (Twilio retries a webhook it got no
    answer to, with this header unchanged)."""
    token = (request.header(TWILIO_IDEMPOTENCY_HEADER) or "").strip()
    return token if 0 < len(token) <= TWILIO_IDEMPOTENCY_MAX else None
