"""WhatsApp: a Meta Cloud API-compatible provider (Graph API `/{phone-number-id}/messages`, one contract)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.base import OutboundMessage, SendResult
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.http import HttpProvider, base_url_for, build_client, http_errors, raise_for_status
from channels.phone import to_e164
from channels.signatures import meta_signature, safe_equal
from channels.webhooks import (
    InboundMessage,
    StatusUpdate,
    WebhookRequest,
    WebhookResponse,
    WebhookResult,
)
from schemas.settings import Settings
from schemas.status import Status


class MetaSettings(BaseSettings):
    """`HERALD_META_*`. Without a base URL, the provider simulator (`HERALD_SIM_URL/meta`) is used."""

    model_config = SettingsConfigDict(env_prefix="HERALD_META_", extra="ignore")
    # Development values production refuses (channels/production.py). Field -> what to set instead.
    DEV_DEFAULTS: ClassVar[dict[str, str]] = {
        "access_token": "a system user's access token", "app_secret": "your Meta app's secret",
        "verify_token": "the verify token of your app's webhook subscription"}

    base_url: str | None = Field(default=None, description="https://graph.facebook.com in production.")
    api_version: str = "v21.0"
    phone_number_id: str = "100000000000001"
    access_token: SecretStr = SecretStr("dev-meta-access-token")
    app_secret: SecretStr = Field(default=SecretStr("dev-meta-app-secret"),
                                  description="Signs webhooks (`X-Hub-Signature-256`).")
    verify_token: SecretStr = Field(default=SecretStr("dev-meta-verify-token"),
                                    description="Answers Meta's webhook subscription handshake.")


class MetaWhatsappProvider(HttpProvider):
    """Meta WhatsApp Cloud API: JSON POST with a bearer token; receipts and replies on the app's webhook.

    Outside the 24-hour customer-service window only an approved template may be sent; free-form text goes
    out only when Herald knows the window is open (`options["whatsapp_session_open"]`).
    """

    name = "meta"
    channel = "whatsapp"
    settings_class = MetaSettings

    # https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/
    # ("deleted" is retired; "warning" concerns catalog items, not a message's delivery.)
    STATUS_MAP: ClassVar[dict[str, Status | None]] = {
        "sent": None, "delivered": Status.DELIVERED, "read": Status.READ, "failed": Status.FAILED,
        "deleted": None, "warning": None,
    }
    # Herald publishes `sent` when the API accepts a message; Meta's "sent" is not a new state for Herald.
    IN_FLIGHT: ClassVar[frozenset[str]] = frozenset({"sent"})
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
    CODES: ClassVar[dict[str, type[DeliveryError]]] = {
        "0": Rejected,  # AuthException: could not authenticate the app user
        "4": RateLimited,  # API Too Many Calls: app-level rate limit
        "80007": RateLimited,  # WhatsApp Business Account rate limit
        "130429": RateLimited,  # Cloud API throughput reached
        "131048": RateLimited,  # spam rate limit: too many previous messages blocked or flagged
        "131056": RateLimited,  # (business, consumer) pair rate limit: too many to the same number
        "1": ProviderUnavailable,  # API Unknown: possible server error
        "2": ProviderUnavailable,  # API Service: temporary downtime or overload
        "131000": ProviderUnavailable,  # something went wrong
        "131016": ProviderUnavailable,  # service temporarily unavailable
        "100": Rejected,  # invalid parameter
        "190": Rejected,  # access token expired
        "368": Rejected,  # temporarily blocked for policy violations
        "131009": Rejected,  # parameter value not valid
        "131026": InvalidRecipient,  # undeliverable: not on WhatsApp, old terms of service or app version
        "131047": Rejected,  # re-engagement: more than 24 h since the person last wrote
        "131051": Rejected,  # unsupported message type
        "132000": Rejected,  # template parameter count does not match
        "132001": Rejected,  # template does not exist in that language, or is not approved
        "132015": Rejected,  # template paused for low quality
        "132016": Rejected,  # template disabled
        "133010": Rejected,  # the business phone number is not registered
    }

    def __init__(self, config: MetaSettings, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.settings = settings
        self.client = build_client(base_url_for(config.base_url, settings, "meta"),
                                   headers={"Authorization": f"Bearer {config.access_token.get_secret_value()}"},
                                   transport=transport)

    async def send(self, message: OutboundMessage) -> SendResult:
        to, _ = to_e164(message.address, provider=self.name)
        body: dict[str, Any] = {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": to.removeprefix("+"),
            # Echoed in every status webhook: the receipt finds its message without a lookup table.
            "biz_opaque_callback_data": message.message_id,
        }
        kind, content = self._content(message)
        body.update(content)
        with http_errors(self.name):
            response = await self.client.post(
                f"/{self.config.api_version}/{self.config.phone_number_id}/messages", json=body)
        data = _json(response)
        error = data.get("error")
        if not isinstance(error, dict):
            error = {}
        raise_for_status(response, self.name, vendor_code=_code(error.get("code")), codes=self.CODES,
                         message=str(error.get("message") or ""))
        messages = data.get("messages") or [{}]
        wamid = messages[0].get("id") if isinstance(messages[0], dict) else None
        return SendResult(provider=self.name, provider_message_id=wamid, detail=kind)

    def _content(self, message: OutboundMessage) -> tuple[str, dict[str, Any]]:
        """Free-form text inside an open 24-hour window, else the approved template."""
        parts = message.rendered.parts
        if message.options.get("whatsapp_session_open") and "text" in parts:
            return "text", {"type": "text", "text": {"body": parts["text"], "preview_url": False}}
        if "template" in parts:
            return "template", {"type": "template",
                                "template": _template(parts["template"], message.rendered.locale, self.name)}
        raise Rejected("free-form WhatsApp text needs an open 24-hour window; no approved template rendered",
                       code="outside_24h_window", provider=self.name)

    def verify_webhook(self, request: WebhookRequest) -> bool:
        if request.method == "GET":
            # The subscription handshake proves knowledge of the verify token instead of a signature.
            return (request.query.get("hub.mode") == "subscribe" and "hub.challenge" in request.query
                    and safe_equal(request.query.get("hub.verify_token"),
                                   self.config.verify_token.get_secret_value()))
        if request.method != "POST":
            return False
        expected = meta_signature(self.config.app_secret.get_secret_value(), request.body)
        return safe_equal(request.header("x-hub-signature-256"), expected)

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult:
        if request.method == "GET":
            challenge = request.query.get("hub.challenge", "")
            return WebhookResult(response=WebhookResponse(status=200, body=challenge.encode(),
                                                          content_type="text/plain"))
        try:
            payload = request.json()
        except ValueError:  # signed but not JSON: nothing Herald subscribed to (answered 200, so not resent)
            return WebhookResult()
        # A field of the wrong type (an object as `biz_opaque_callback_data`) raises ValueError: a 400 before
        # anything is published, never a guess.
        result = WebhookResult()
        for value in _message_values(payload):
            result.statuses.extend(self._status(s) for s in _dicts(value.get("statuses"))
                                   if s.get("status") not in self.IN_FLIGHT)
            result.inbound.extend(_inbound(m) for m in _dicts(value.get("messages")))
        return result

    def _status(self, item: Mapping[str, Any]) -> StatusUpdate:
        vendor = _text(item, "status") or ""
        errors = _dicts(item.get("errors"))
        detail = _code(errors[0].get("code")) if vendor == "failed" and errors else None
        wamid = _text(item, "id")
        recipient = _text(item, "recipient_id") or ""
        # A status is sent once per (message, status); Meta retries undelivered webhooks for up to 7 days.
        return StatusUpdate(message_id=_text(item, "biz_opaque_callback_data"),
                            provider_message_id=wamid, status=self.STATUS_MAP.get(vendor),
                            vendor_status=vendor, detail=detail, at=_timestamp(item.get("timestamp")),
                            address=f"+{recipient}" if recipient.isascii() and recipient.isdigit() else None,
                            delivery_id=f"{wamid}|{vendor}" if wamid else None)


def _template(raw: str, locale: str, provider: str) -> dict[str, Any]:
    """`{"name", "language", "params"}` rendered by Herald's templates -> Meta's template object."""
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise Rejected("WhatsApp template part is not JSON", code="template_invalid", provider=provider) from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise Rejected("WhatsApp template part has no name", code="template_invalid", provider=provider)
    params = spec.get("params", [])
    if not isinstance(params, list):
        raise Rejected("WhatsApp template params must be a list", code="template_invalid", provider=provider)
    # Meta names languages `es`, `en_US`, `pt_BR`: the rendered BCP 47 tag with an underscore is the fallback.
    language = spec.get("language") or locale.replace("-", "_")
    template: dict[str, Any] = {"name": spec["name"], "language": {"code": str(language)}}
    if params:
        template["components"] = [{"type": "body", "parameters": [{"type": "text", "text": str(p)}
                                                                  for p in params]}]
    return template


def _inbound(item: Mapping[str, Any]) -> InboundMessage:
    kind = item.get("type")
    text: str | None = None
    if kind == "text":
        text = _get(item, "text", "body")
    elif kind == "button":  # a quick-reply button of a template
        text = _get(item, "button", "text")
    elif kind == "interactive":
        reply = item.get("interactive")
        if isinstance(reply, dict) and isinstance(reply.get("type"), str):
            text = _get(reply, reply["type"], "title")  # button_reply / list_reply
    context = item.get("context")
    if not isinstance(context, dict):
        context = {}
    sender = _text(item, "from") or ""
    wamid = _text(item, "id")
    return InboundMessage(channel="whatsapp", sender=f"+{sender}" if sender else "", text=text,
                          # The wamid this answers (the reply's correlation); the reply's own id otherwise.
                          provider_message_id=_text(context, "id") or wamid,
                          received_at=_timestamp(item.get("timestamp")), delivery_id=wamid)


def _text(item: Mapping[str, Any], key: str) -> str | None:
    """A field Meta sends as a string: None when absent or empty; ValueError when it is another JSON type, so a
    malformed webhook is refused (400) rather than half-read (an object as `biz_opaque_callback_data`)."""
    value = item.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"Meta webhook field {key!r} is a {type(value).__name__}, not a string")
    return str(value)


def _message_values(payload: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        return
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            if change.get("field") == "messages" and isinstance(change.get("value"), dict):
                yield change["value"]


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _get(item: Mapping[str, Any], key: str, field: str) -> str | None:
    inner = item.get(key)
    value = inner.get(field) if isinstance(inner, dict) else None
    return value if isinstance(value, str) else None


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _code(value: Any) -> str | None:
    return None if value is None else str(value)
