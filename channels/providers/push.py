"""Push: a Firebase Cloud Messaging HTTP v1-compatible provider (`projects/{id}/messages:send`, one contract)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.base import OutboundMessage, SendResult
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.http import HttpProvider, base_url_for, build_client, http_errors, raise_for_status
from schemas.settings import Settings

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
# Catalog priorities that must wake a dozing device; the rest may wait for the next maintenance window.
URGENT_PRIORITIES = frozenset({"critical", "high"})


class FcmSettings(BaseSettings):
    """`HERALD_FCM_*`. Without a base URL, the provider simulator (`HERALD_SIM_URL/fcm`) is used."""

    model_config = SettingsConfigDict(env_prefix="HERALD_FCM_", extra="ignore")
    # Development values production refuses (channels/production.py). Field -> what to set instead.
    DEV_DEFAULTS: ClassVar[dict[str, str]] = {"access_token": "an OAuth 2.0 access token of your service account"}

    base_url: str | None = Field(default=None, description="https://fcm.googleapis.com in production.")
    project_id: str = "herald-dev"
    # A bearer token taken from configuration. In production it is a short-lived OAuth 2.0 token minted from
    # a service account (scope firebase.messaging) and rotated before it expires (about an hour).
    access_token: SecretStr = SecretStr("dev-fcm-access-token")


class FcmPushProvider(HttpProvider):
    """FCM HTTP v1: one JSON POST per device token with a bearer token.

    FCM has no delivery receipts, so this is only a `Sender`: `sent` is the final status of a push.
    """

    name = "fcm"
    channel = "push"
    settings_class = FcmSettings

    # https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode — FcmError words, lower-cased, as they
    # appear in a status `detail` (`unregistered` lets the consent ledger suppress a dead token).
    CODES: ClassVar[dict[str, type[DeliveryError]]] = {
        "unregistered": InvalidRecipient,  # 404: the app was uninstalled or the token expired
        "sender_id_mismatch": InvalidRecipient,  # 403: the token belongs to another sender
        "invalid_argument": Rejected,  # 400: bad token format, payload too large, reserved data key…
        "third_party_auth_error": Rejected,  # 401: APNs certificate or web push auth key invalid
        "quota_exceeded": RateLimited,  # 429: project, device or topic rate over quota
        "unavailable": ProviderUnavailable,  # 503: server overloaded
        "internal": ProviderUnavailable,  # 500: unknown internal error
    }

    def __init__(self, config: FcmSettings, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.settings = settings
        self.client = build_client(base_url_for(config.base_url, settings, "fcm"),
                                   headers={"Authorization": f"Bearer {config.access_token.get_secret_value()}"},
                                   transport=transport)

    async def send(self, message: OutboundMessage) -> SendResult:
        token = message.address.strip()
        if not token:
            raise InvalidRecipient("no push token", code="invalid_token", provider=self.name)
        urgent = str(message.options.get("priority", "normal")) in URGENT_PRIORITIES
        body = {"message": {
            "token": token,
            "notification": {"title": message.rendered["title"], "body": message.rendered["body"]},
            # FCM data values must be strings.
            "data": {"message_id": message.message_id, "event_type": message.event_type},
            "android": {"priority": "high" if urgent else "normal"},
            "apns": {"headers": {"apns-priority": "10" if urgent else "5"}},
        }}
        with http_errors(self.name):
            response = await self.client.post(f"/v1/projects/{self.config.project_id}/messages:send", json=body)
        data = _json(response)
        error = data.get("error")
        if not isinstance(error, dict):
            error = {}
        raise_for_status(response, self.name, vendor_code=_error_code(error), codes=self.CODES,
                         message=str(error.get("message") or ""))
        return SendResult(provider=self.name, provider_message_id=data.get("name"))


def _error_code(error: dict[str, Any]) -> str | None:
    """The FcmError `errorCode` from `details`, else the google.rpc `status`; lower-cased."""
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == FCM_ERROR_TYPE and detail.get("errorCode"):
            return str(detail["errorCode"]).lower()
    status = error.get("status")
    return str(status).lower() if status else None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
