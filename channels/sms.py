"""SMS: a Twilio-compatible provider (Messages API) and a Vonage-compatible one (SMS API), one contract."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.base import OutboundMessage, SendResult
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.http import base_url_for, build_client, http_errors, raise_for_status
from channels.phone import parse_sender_map, sender_for, to_e164
from channels.segments import sms_segments
from channels.signatures import safe_equal, twilio_signature
from channels.webhooks import InboundMessage, StatusUpdate, WebhookRequest, WebhookResult, callback_url
from schemas.settings import Settings
from schemas.status import Status


class TwilioSettings(BaseSettings):
    """`HERALD_TWILIO_*`. Without a base URL, the provider simulator (`HERALD_SIM_URL/twilio`) is used."""

    model_config = SettingsConfigDict(env_prefix="HERALD_TWILIO_", extra="ignore")

    base_url: str | None = Field(default=None, description="https://api.twilio.com in production.")
    account_sid: str = "ACdev00000000000000000000000000000"
    auth_token: SecretStr = SecretStr("dev-twilio-auth-token")
    sms_from: dict[str, str] = Field(default_factory=lambda: {"default": "+15005550006"},
                                     description="Sender per country: `default=+1…,ES=+34…`.")
    voice_from: str = "+15005550006"

    @field_validator("sms_from", mode="before")
    @classmethod
    def _senders(cls, value: Any) -> Any:
        return parse_sender_map(value)


class TwilioSmsProvider:
    """Twilio Messages API: form-encoded POST with basic auth; receipts to `StatusCallback`."""

    name = "twilio"
    channel = "sms"

    STATUS_MAP: ClassVar[dict[str, Status | None]] = {
        "accepted": None, "scheduled": None, "queued": None, "sending": None,  # not yet a state change
        "sent": Status.SENT, "delivered": Status.DELIVERED, "read": Status.READ,
        "undelivered": Status.FAILED, "failed": Status.FAILED, "canceled": Status.CANCELLED,
    }
    IN_FLIGHT: ClassVar[frozenset[str]] = frozenset({"accepted", "scheduled", "queued", "sending"})
    # https://www.twilio.com/docs/api/errors
    CODES: ClassVar[dict[str, type[DeliveryError]]] = {
        "21211": InvalidRecipient,  # invalid 'To' number
        "21614": InvalidRecipient,  # not a mobile number
        "21610": InvalidRecipient,  # recipient replied STOP
        "21408": Rejected,  # region not enabled
        "21606": Rejected,  # 'From' is not a valid SMS-capable number
        "20003": Rejected,  # authentication failed
        "30007": Rejected,  # carrier filtering
        "20429": RateLimited,
        "20500": ProviderUnavailable,
        "20503": ProviderUnavailable,
    }

    def __init__(self, config: TwilioSettings, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.settings = settings
        self.client = build_client(base_url_for(config.base_url, settings, "twilio"),
                                   auth=(config.account_sid, config.auth_token.get_secret_value()),
                                   transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
                      ) -> TwilioSmsProvider:
        return cls(TwilioSettings(), settings, transport=transport)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.client.aclose()

    async def send(self, message: OutboundMessage) -> SendResult:
        to, region = to_e164(message.address, provider=self.name)
        body = message.rendered["text"]
        encoding, segments = sms_segments(body)
        form = {"To": to, "From": sender_for(region, self.config.sms_from), "Body": body,
                "StatusCallback": callback_url(self.settings, "sms", "twilio", message)}
        with http_errors(self.name):
            response = await self.client.post(
                f"/2010-04-01/Accounts/{self.config.account_sid}/Messages.json", data=form,
                headers={"Idempotency-Key": message.idempotency_key})
        data = _json(response)
        raise_for_status(response, self.name, vendor_code=_code(data.get("code")), codes=self.CODES,
                         message=str(data.get("message") or ""))
        return SendResult(provider=self.name, provider_message_id=data.get("sid"),
                          detail=f"{encoding}, {segments} segment{'s' if segments > 1 else ''}")

    def verify_webhook(self, request: WebhookRequest) -> bool:
        params = request.form() if request.method == "POST" else {}
        expected = twilio_signature(self.config.auth_token.get_secret_value(), request.url, params)
        return safe_equal(request.header("x-twilio-signature"), expected)

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult:
        form = request.form()
        if "MessageStatus" in form:
            vendor = form["MessageStatus"]
            if vendor in self.IN_FLIGHT:
                return WebhookResult()
            return WebhookResult(statuses=[StatusUpdate(
                message_id=request.query.get("message_id"), provider_message_id=form.get("MessageSid"),
                status=self.STATUS_MAP.get(vendor), vendor_status=vendor, detail=form.get("ErrorCode") or None)])
        if "Body" in form:
            return WebhookResult(inbound=[InboundMessage(
                channel="sms", sender=form.get("From", ""), text=form["Body"],
                provider_message_id=form.get("MessageSid"))])
        return WebhookResult()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _code(value: Any) -> str | None:
    return None if value is None else str(value)
