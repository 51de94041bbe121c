"""SMS: a Twilio-compatible provider (Messages API) and a Vonage-compatible one (SMS API), one contract."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.base import OutboundMessage, SendResult
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.http import (
    HttpProvider,
    base_url_for,
    build_client,
    http_errors,
    raise_for_status,
    response_json,
    vendor_code,
)
from channels.phone import EnvMap, parse_env_map, sender_for, to_e164
from channels.providers._twilio import (
    TWILIO_ACCOUNT_CODES,
    TwilioSettings,
    twilio_client,
    twilio_idempotency_token,
    verify_twilio_request,
)
from channels.resilience.ratelimit import Metering, sender_number_key, sms_segment_cost
from channels.segments import sms_segments
from channels.signatures import fresh, safe_equal, unix_seconds
from channels.webhooks import InboundMessage, StatusUpdate, WebhookRequest, WebhookResult, callback_url
from schemas.settings import Settings
from schemas.status import Status


class TwilioSmsProvider(HttpProvider):
    """Twilio Messages API: form-encoded POST with basic auth; receipts to `StatusCallback`."""

    name = "twilio"
    channel = "sms"
    settings_class = TwilioSettings

    STATUS_MAP: ClassVar[dict[str, Status | None]] = {
        # Herald publishes `sent` when the API accepts a message; the vendor's own "sent" (handed to the carrier)
        # and the earlier words are not a new state for Herald.
        "accepted": None, "scheduled": None, "queued": None, "sending": None, "sent": None,
        "delivered": Status.DELIVERED, "read": Status.READ,
        "undelivered": Status.FAILED, "failed": Status.FAILED, "canceled": Status.CANCELLED,
    }
    IN_FLIGHT: ClassVar[frozenset[str]] = frozenset({"accepted", "scheduled", "queued", "sending", "sent"})
    # https://www.twilio.com/docs/api/errors
    CODES: ClassVar[dict[str, type[DeliveryError]]] = {
        "21211": InvalidRecipient,  # invalid 'To' number
        "21614": InvalidRecipient,  # not a mobile number
        "21610": InvalidRecipient,  # recipient replied STOP
        "21408": Rejected,  # region not enabled
        "21606": Rejected,  # 'From' is not a valid SMS-capable number
        "30007": Rejected,  # carrier filtering
        **TWILIO_ACCOUNT_CODES,
    }

    def __init__(self, config: TwilioSettings, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.settings = settings
        self.client = twilio_client(config, settings, transport)

    def rate_limit_metering(self) -> Metering:
        """Twilio meters each "From" number, in message segments (channels/resilience/ratelimit.py)."""
        return Metering(per_sender=sender_number_key(self.config.sms_from), cost=sms_segment_cost)

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
        data = response_json(response)
        raise_for_status(response, self.name, vendor_code=vendor_code(data.get("code")), codes=self.CODES,
                         message=str(data.get("message") or ""))
        return SendResult(provider=self.name, provider_message_id=data.get("sid"),
                          detail=f"{encoding}, {segments} segment{'s' if segments > 1 else ''}", segments=segments)

    def verify_webhook(self, request: WebhookRequest) -> bool:
        return verify_twilio_request(self.config.auth_token.get_secret_value(), request)

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult:
        form = request.form()
        token = twilio_idempotency_token(request)
        sid = form.get("MessageSid") or None
        if "MessageStatus" in form:
            vendor = form["MessageStatus"]
            if vendor in self.IN_FLIGHT:
                return WebhookResult(delivery_id=token)
            # One callback per status change of a message: the same (sid, status) again is a replay, even under
            # another idempotency token (the header is not covered by Twilio's signature).
            return WebhookResult(delivery_id=token, statuses=[StatusUpdate(
                message_id=request.query.get("message_id"), provider_message_id=sid,
                status=self.STATUS_MAP.get(vendor), vendor_status=vendor, detail=form.get("ErrorCode") or None,
                address=form.get("To") or None, delivery_id=f"{sid}|{vendor}" if sid else None)])
        if "Body" in form:
            return WebhookResult(delivery_id=token, inbound=[InboundMessage(
                channel="sms", sender=form.get("From", ""), text=form["Body"], provider_message_id=sid,
                delivery_id=sid)])
        return WebhookResult(delivery_id=token)


# --- Vonage -------------------------------------------------------------------------------------------------------

VONAGE_CLIENT_REF_MAX = 100  # Vonage truncates longer `client-ref` values, which would break correlation
HERALD_QUERY_PARAMS = ("message_id",)  # what `callback_url` puts in the callback URL itself


VonageSignatureMethod = Literal["md5hash", "md5", "sha1", "sha256", "sha512"]
VONAGE_HMACS: dict[str, str] = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha512": "sha512"}


def vonage_signature(secret: str, params: Mapping[str, str], method: VonageSignatureMethod = "sha256") -> str:
    """Vonage's signed-request `sig` over every parameter but `sig`, sorted by name, each as `&name=value` with
    `&` and `=` in values replaced by `_`: for the HMAC methods the upper-case hex HMAC of that string keyed by
    the signature secret; for `md5hash` (the dashboard's default) the lower-case hex MD5 of the string followed by
    the secret. Vonage's SDKs compare case-insensitively, so `verify_webhook` does too.

    https://developer.vonage.com/en/getting-started/concepts/signing-messages
    """
    query = "".join(f"&{key}={str(params[key]).replace('&', '_').replace('=', '_')}"
                    for key in sorted(k for k in params if k != "sig"))
    if method == "md5hash":
        return hashlib.md5((query + secret).encode(), usedforsecurity=False).hexdigest()
    return hmac.new(secret.encode(), query.encode(), VONAGE_HMACS[method]).hexdigest().upper()


class VonageSettings(BaseSettings):
    """`HERALD_VONAGE_*`. Without a base URL, the provider simulator (`HERALD_SIM_URL/vonage`) is used."""

    model_config = SettingsConfigDict(env_prefix="HERALD_VONAGE_", extra="ignore")
    # Development values production refuses (channels/production.py). Field -> what to set instead.
    DEV_DEFAULTS: ClassVar[dict[str, str]] = {
        "api_key": "your account's API key", "api_secret": "your account's API secret",
        "signature_secret": "your account's signature secret (Vonage dashboard, API settings)"}

    base_url: str | None = Field(default=None, description="https://rest.nexmo.com in production.")
    api_key: str = "dev-vonage-key"
    api_secret: SecretStr = SecretStr("dev-vonage-secret")
    signature_secret: SecretStr = Field(default=SecretStr("dev-vonage-signature-secret"),
                                        description="Checks the `sig` of signed webhooks.")
    signature_method: VonageSignatureMethod = Field(
        default="sha256", description="The signing method chosen in the Vonage dashboard: `sha256` (set it there; "
        "the dashboard's own default is `md5hash`, which Herald accepts but does not recommend), `sha512`, "
        "`sha1`, `md5` (HMAC-MD5) or `md5hash`.")
    sms_from: EnvMap = Field(default_factory=lambda: {"default": "+15005550006"},
                             description="Sender per country: `default=+1…,ES=Herald` or a JSON object.")

    @field_validator("sms_from", mode="before")
    @classmethod
    def _senders(cls, value: Any) -> Any:
        return parse_env_map(value)


class VonageSmsProvider(HttpProvider):
    """Vonage SMS API: form POST with key and secret; receipts (DLRs) to `callback`, signed with `sig`."""

    name = "vonage"
    channel = "sms"
    settings_class = VonageSettings

    # https://developer.vonage.com/messaging/sms/guides/delivery-receipts and
    # https://api.support.vonage.com/hc/en-us/articles/115007053127 (intermediate: accepted, buffered;
    # final: delivered, expired, failed, rejected). A carrier's expiry or rejection happens after Herald sent the
    # message, so it is `failed` (Herald's `expired`/`rejected` mean "never sent"); `vendor_status` keeps the word.
    # `unknown` is the carrier saying it does not know: no guess, so None (counted as unmapped).
    STATUS_MAP: ClassVar[dict[str, Status | None]] = {
        "accepted": None, "buffered": None,  # intermediate receipts: not a state change
        "delivered": Status.DELIVERED, "expired": Status.FAILED, "failed": Status.FAILED,
        "rejected": Status.FAILED, "unknown": None,
    }
    IN_FLIGHT: ClassVar[frozenset[str]] = frozenset({"accepted", "buffered"})
    # https://developer.vonage.com/en/api-errors/sms and
    # https://developer.vonage.com/messaging/sms/guides/troubleshooting-sms (per-message `status` of the response)
    CODES: ClassVar[dict[str, type[DeliveryError]]] = {
        "1": RateLimited,  # Throttled: faster than the account's throughput
        "2": Rejected,  # Missing Parameters
        "3": Rejected,  # Invalid Parameters
        "4": Rejected,  # Invalid Credentials
        "5": ProviderUnavailable,  # Internal Error
        "6": InvalidRecipient,  # Invalid Message: e.g. an unrecognised number prefix (unroutable)
        "7": InvalidRecipient,  # Number Barred
        "8": Rejected,  # Partner Account Barred (suspended)
        "9": Rejected,  # Partner Quota Violation (no credit): needs a person to top up
        "10": RateLimited,  # Too Many Existing Binds: "back-off and retry"
        "11": Rejected,  # Account Not Enabled For HTTP
        "12": Rejected,  # Message Too Long
        "14": Rejected,  # Invalid Signature
        "15": Rejected,  # Invalid Sender Address
        "22": Rejected,  # Invalid Network Code
        "23": Rejected,  # Invalid Callback Url
        "29": Rejected,  # Non-Whitelisted Destination (trial accounts)
        "32": Rejected,  # Signature And API Secret Disallowed
        "33": InvalidRecipient,  # Number De-activated
    }

    def __init__(self, config: VonageSettings, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.settings = settings
        self.clock = clock
        self.client = build_client(base_url_for(config.base_url, settings, "vonage"), transport=transport)



    async def send(self, message: OutboundMessage) -> SendResult:
        to, region = to_e164(message.address, provider=self.name)
        body = message.rendered["text"]
        encoding, segments = sms_segments(body)
        form = {"api_key": self.config.api_key, "api_secret": self.config.api_secret.get_secret_value(),
                "from": sender_for(region, self.config.sms_from).removeprefix("+"), "to": to.removeprefix("+"),
                "text": body, "type": "unicode" if encoding == "UCS-2" else "text",
                "client-ref": message.message_id[:VONAGE_CLIENT_REF_MAX], "status-report-req": "1",
                "callback": callback_url(self.settings, "sms", "vonage", message)}
        with http_errors(self.name):
            response = await self.client.post("/sms/json", data=form)
        data = response_json(response)
        # Failures of the whole request (auth at the gateway, 5xx) come as HTTP errors; per-message failures
        # come as HTTP 200 with a non-zero `status` in each message.
        raise_for_status(response, self.name, message=str(data.get("title") or data.get("error-text") or ""))
        parts = data.get("messages")
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
            raise ProviderUnavailable("response without messages", code="bad_response", provider=self.name)
        for part in parts:
            code = str(part.get("status", ""))
            if code != "0":
                cls = self.CODES.get(code, Rejected)  # an unknown code is not retried: a retry may duplicate
                raise cls(str(part.get("error-text") or f"status {code}"), code=code, provider=self.name)
        return SendResult(provider=self.name, provider_message_id=parts[0].get("message-id"),
                          detail=f"{encoding}, {segments} segment{'s' if segments > 1 else ''}", segments=segments)

    def verify_webhook(self, request: WebhookRequest) -> bool:
        """A fresh `timestamp` (within `HERALD_WEBHOOK_TOLERANCE` of when Herald received it) and a `sig` over the
        parameters Vonage sent (which include `timestamp` and `nonce`, so neither can be changed).

        The callback URL carries Herald's own `message_id`; whether a signer includes it is not documented,
        so a signature over the vendor's parameters with or without it is accepted.
        """
        try:
            params = _vonage_params(request)
        except ValueError:
            return False
        sig, timestamp = params.get("sig"), unix_seconds(params.get("timestamp"))
        now = request.received_at.timestamp() if request.received_at is not None else self.clock()
        if not sig or timestamp is None or not fresh(timestamp, now, self.settings.webhook_tolerance):
            return False
        secret = self.config.signature_secret.get_secret_value()
        own = {k: v for k, v in params.items() if k not in HERALD_QUERY_PARAMS}
        method = self.config.signature_method
        return any(safe_equal(sig.upper(), vonage_signature(secret, candidate, method).upper())
                   for candidate in (params, own))

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult:
        params = _vonage_params(request)
        at = _vonage_time(params.get("message-timestamp"))
        # The signed `nonce` names this request; Vonage's `messageId` (with the receipt's status) names what it says,
        # which also catches a retry Vonage signed afresh.
        nonce = params.get("nonce") or None
        message = params.get("messageId") or None
        if "status" in params and "text" not in params:
            vendor = params["status"]
            if vendor in self.IN_FLIGHT:
                return WebhookResult(delivery_id=nonce)
            err = params.get("err-code", "")
            return WebhookResult(delivery_id=nonce, statuses=[StatusUpdate(
                message_id=params.get("client-ref") or request.query.get("message_id"),
                provider_message_id=message, status=self.STATUS_MAP.get(vendor),
                vendor_status=vendor, detail=err if err.strip("0") else None, at=at,
                address=f"+{params['msisdn']}" if _ascii_digits(params.get("msisdn")) else None,
                delivery_id=f"{message}|{vendor}" if message else None)])
        if "text" in params:
            sender = params.get("msisdn", "")
            return WebhookResult(delivery_id=nonce, inbound=[InboundMessage(
                channel="sms", sender=f"+{sender}" if _ascii_digits(sender) else sender, text=params["text"],
                provider_message_id=message, received_at=at, delivery_id=message)])
        return WebhookResult(delivery_id=nonce)


def _vonage_params(request: WebhookRequest) -> dict[str, str]:
    """Vonage's webhook parameters: the query of a GET, the JSON or form body of a POST (values as strings).
    Raises ValueError for a body that is not what Vonage sends (this runs before the signature is checked)."""
    params = dict(request.query)
    if request.method.upper() != "POST" or not request.body.strip():
        return params
    content_type = (request.header("content-type") or "").lower()
    if "json" in content_type or (not content_type and request.body.lstrip().startswith(b"{")):
        data = request.json()
        if not isinstance(data, dict):
            raise ValueError("a JSON object was expected")
        params.update({k: _vonage_value(v) for k, v in data.items() if v is not None})
    else:
        params.update(request.form())
    return params


def _vonage_value(value: Any) -> str:
    if isinstance(value, bool):  # JSON true/false, spelled as in the query-string form of the same webhook
        return "true" if value else "false"
    if isinstance(value, dict | list):  # Vonage sends flat values; a nested one is kept as its JSON text
        try:
            return json.dumps(value)
        except RecursionError as exc:  # JSON nested ~1000 deep: read fine, but too deep to write back
            raise ValueError("a parameter nested too deep") from exc
    return value if isinstance(value, str) else str(value)


def _ascii_digits(value: str | None) -> bool:
    return bool(value and value.isascii() and value.isdigit())


def _vonage_time(value: str | None) -> datetime | None:
    """`message-timestamp` is UTC `YYYY-MM-DD HH:MM:SS`."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
