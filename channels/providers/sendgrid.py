"""Email over SendGrid's v3 Mail Send API, with receipts from its signed Event Webhook (ECDSA P-256)."""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any, ClassVar

import httpx
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.base import OutboundMessage, SendResult
from channels.errors import DeliveryError, InvalidRecipient, RateLimited, Rejected
from channels.http import HttpProvider, base_url_for, build_client, http_errors, raise_for_status, retry_after_seconds
from channels.providers.email_headers import ADDR_SPEC, HEADER_NAME, clean_header, encoded_header
from channels.signatures import fresh, unix_seconds
from channels.webhooks import StatusUpdate, WebhookRequest, WebhookResult
from schemas.settings import Settings
from schemas.status import Status

# A fixed DEV key pair. The private key exists ONLY so the provider simulator can sign dev webhooks the way
# SendGrid does; it is public in this source file, so it must never verify anything in production (see
# `SendgridEmailProvider.verify_webhook`). Production sets HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY to the
# verification key shown under Settings > Mail Settings > Signed Event Webhook Requests.
DEV_WEBHOOK_PRIVATE_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/2fMWti3DVMUInRI
qur+mt2SPT5RJzxRVwOVwYUrGCehRANCAAQgONtrAXSuAppDdtlC0Gl/J2T9j3IL
sWzGTVfxDE4bF6H9MIQJh6cMLshAXlisZLWQfM9u0dHk9m1nW3nB07Mp
-----END PRIVATE KEY-----
"""
# The matching public key as SendGrid shows one: base64 of the DER SubjectPublicKeyInfo, without PEM framing.
DEV_WEBHOOK_PUBLIC_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIDjbawF0rgKaQ3bZQtBpfydk/Y9yC7Fsxk1X8QxOGxeh"
                          "/TCECYenDC7IQF5YrGS1kHzPbtHR5PZtZ1t5wdOzKQ==")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

# https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send — "You may not override the following
# headers" (compared case-insensitively). Message-ID is not on the list, but SendGrid support says it derives its
# own message id from it (django-anymail #108/#109), so Herald correlates through custom_args instead.
RESERVED_HEADERS = frozenset({"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
                              "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc"})
MAX_CATEGORY_LENGTH = 255
DETAIL_LIMIT = 100

_EMAIL_LIKE = re.compile(r"\S+@\S+")
_SMTP_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


def _public_key(value: str) -> ec.EllipticCurvePublicKey:
    """A SendGrid verification key: PEM, or the bare base64 DER that SendGrid's settings page shows."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ValueError("HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY is not a PEM or base64 DER public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY is not an elliptic-curve (ECDSA) key")
    return key


def sendgrid_signature(private_key_pem: str, timestamp: str | int, body: bytes) -> str:
    """`X-Twilio-Email-Event-Webhook-Signature`: base64 DER ECDSA-SHA256 signature of timestamp + raw body.

    For the simulator (signing dev webhooks). ECDSA signatures are randomised, so two calls differ; both verify.
    """
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an elliptic-curve private key")
    return base64.b64encode(key.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def verify_sendgrid_signature(public_key: ec.EllipticCurvePublicKey, timestamp: str, body: bytes,
                              signature: str) -> bool:
    """Check a signed Event Webhook request: the signed payload is the timestamp header followed by the raw body."""
    try:
        public_key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body,
                          ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def scrub(text: str, limit: int = DETAIL_LIMIT) -> str:
    """Vendor text made safe for a status detail or an error message: one line, no email address, bounded."""
    return clean_header(_EMAIL_LIKE.sub("", text), limit)


class SendgridSettings(BaseSettings):
    """`HERALD_SENDGRID_*`. Without a base URL, the provider simulator (`HERALD_SIM_URL/sendgrid`) is used."""

    model_config = SettingsConfigDict(env_prefix="HERALD_SENDGRID_", extra="ignore")
    # Development values production refuses (channels/production.py). Field -> what to set instead.
    DEV_DEFAULTS: ClassVar[dict[str, str]] = {
        "api_key": "your API key",
        "webhook_public_key": "the verification key of your Signed Event Webhook"}

    base_url: str | None = Field(default=None, description="https://api.sendgrid.com in production "
                                 "(https://api.eu.sendgrid.com for EU subusers).")
    api_key: SecretStr = SecretStr("SG.dev-sendgrid-key")
    sender: str | None = Field(default=None, description="From address; HERALD_EMAIL_FROM when unset.")
    webhook_public_key: str = Field(default=DEV_WEBHOOK_PUBLIC_KEY,
                                    description="Signed Event Webhook verification key (base64 DER or PEM).")


class SendgridEmailProvider(HttpProvider):
    """SendGrid Mail Send: JSON POST with a bearer key; receipts from the signed Event Webhook.

    Herald's ids travel in `custom_args`, which SendGrid copies into every webhook event, so a receipt finds
    its message without a lookup table.
    """

    name = "sendgrid"
    channel = "email"
    settings_class = SendgridSettings

    # https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event (Event Webhook Reference)
    STATUS_MAP: ClassVar[dict[str, Status | None]] = {
        "processed": None, "deferred": None,  # accepted / retrying at SendGrid: not a state change for Herald
        "delivered": Status.DELIVERED,
        "bounce": Status.BOUNCED,  # type "blocked" (a temporary refusal SendGrid gave up on) becomes FAILED
        "dropped": Status.FAILED,
        "open": Status.OPENED, "click": Status.CLICKED,
        "spamreport": Status.COMPLAINED,
        "unsubscribe": Status.UNSUBSCRIBED, "group_unsubscribe": Status.UNSUBSCRIBED,
        "group_resubscribe": None,  # a preference change, not a message state
    }
    # Known words that change nothing: skipped, so they are not counted as unmapped vendor statuses.
    NO_CHANGE: ClassVar[frozenset[str]] = frozenset({"processed", "deferred", "group_resubscribe"})
    # https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send (responses 400…500) and
    # https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits (429).
    # SendGrid's errors carry no codes of their own, so the HTTP status names the code.
    HTTP_CODES: ClassVar[dict[int, str]] = {401: "auth", 403: "auth", 404: "not_found", 413: "too_large"}
    CODES: ClassVar[dict[str, type[DeliveryError]]] = {
        "auth": Rejected,  # bad or under-privileged API key: retrying will not help
        "not_found": Rejected,  # wrong base URL, not a missing recipient
        "too_large": Rejected,  # message over 30 MB
    }

    def __init__(self, config: SendgridSettings, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.settings = settings
        self.sender = config.sender or settings.email_from
        self.public_key = _public_key(config.webhook_public_key)
        # In production the DEV key would accept webhooks forged with the private key published above.
        self._dev_key_in_production = (settings.env == "production"
                                       and config.webhook_public_key.strip() == DEV_WEBHOOK_PUBLIC_KEY)
        self.clock: Callable[[], float] = time.time
        self.client = build_client(base_url_for(config.base_url, settings, "sendgrid"),
                                   headers={"Authorization": f"Bearer {config.api_key.get_secret_value()}"},
                                   transport=transport)



    def request_body(self, message: OutboundMessage) -> dict[str, Any]:
        """The Mail Send JSON for one message. Raises `InvalidRecipient` or `Rejected` before any request."""
        if not ADDR_SPEC.match(message.address):
            raise InvalidRecipient("address is not a bare addr-spec", code="invalid_address", provider=self.name)
        rendered = message.rendered
        to: dict[str, str] = {"email": message.address}
        if message.display_name and (name := clean_header(message.display_name)):
            to["name"] = name
        custom_args = {"herald_message_id": message.message_id}
        if recipient_id := message.metadata.get("recipient_id"):
            custom_args["herald_recipient_id"] = recipient_id
        sender_name, sender_email = parseaddr(self.sender)
        sender = {"email": sender_email, **({"name": clean_header(sender_name)} if sender_name else {})}
        # SendGrid requires text/plain before text/html, and rejects empty values.
        content = [{"type": mime, "value": rendered.parts[part]}
                   for part, mime in (("text", "text/plain"), ("html", "text/html")) if rendered.parts.get(part)]
        body: dict[str, Any] = {
            "personalizations": [{"to": [to], "custom_args": custom_args}],
            "from": sender,
            "subject": clean_header(rendered["subject"]),
            "content": content,
            "headers": self._headers(message),
        }
        if message.attachments:
            body["attachments"] = [{"content": base64.b64encode(a.content).decode(), "type": a.content_type,
                                    "filename": clean_header(a.filename), "disposition": "attachment"}
                                   for a in message.attachments]
        if category := clean_header(message.event_type, MAX_CATEGORY_LENGTH):
            body["categories"] = [category]
        return body

    def _headers(self, message: OutboundMessage) -> dict[str, str]:
        headers = {"X-Herald-Message-ID": clean_header(message.message_id),
                   "Content-Language": clean_header(message.rendered.locale),
                   "Auto-Submitted": "auto-generated"}  # RFC 3834, as the SMTP provider sends
        for name, value in message.headers.items():
            if not HEADER_NAME.match(name):
                raise Rejected(f"invalid header name {name!r}", code="invalid_header", provider=self.name)
            if name.lower() in RESERVED_HEADERS:
                raise Rejected(f"SendGrid does not allow header {name!r}", code="reserved_header",
                               provider=self.name)
            headers[name] = encoded_header(value)  # SendGrid wants non-ASCII values already encoded (RFC 2047)
        return headers

    async def send(self, message: OutboundMessage) -> SendResult:
        body = orjson.dumps(self.request_body(message))
        with http_errors(self.name):
            response = await self.client.post(
                "/v3/mail/send", content=body,
                # SendGrid ignores Idempotency-Key; a proxy in front of it, or the simulator, can dedupe on it.
                headers={"Content-Type": "application/json", "Idempotency-Key": message.idempotency_key})
        self._raise_for(response)
        return SendResult(provider=self.name, provider_message_id=response.headers.get("x-message-id"))

    def _raise_for(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        status = response.status_code
        text = _error_text(response)
        if status == 429:
            raise RateLimited(text, retry_after=self._retry_after(response), code="429", provider=self.name)
        raise_for_status(response, self.name, vendor_code=self.HTTP_CODES.get(status), codes=self.CODES,
                         message=text)

    def _retry_after(self, response: httpx.Response) -> float | None:
        """`Retry-After` when present, else SendGrid's `X-RateLimit-Reset` (a Unix time)."""
        seconds = retry_after_seconds(response.headers.get("retry-after"))
        if seconds is not None:
            return seconds
        reset = response.headers.get("x-ratelimit-reset", "").strip()
        return max(0.0, float(reset) - self.clock()) if reset.isdigit() else None

    def verify_webhook(self, request: WebhookRequest) -> bool:
        """The ECDSA signature over timestamp + body, and a timestamp within `HERALD_WEBHOOK_TOLERANCE` of when
        Herald received the request: a captured batch (a complaint suppresses an address) cannot be replayed
        later. SendGrid signs each delivery when it makes it, so its retries carry a fresh timestamp."""
        signature, timestamp = request.header(SIGNATURE_HEADER), request.header(TIMESTAMP_HEADER)
        if not signature or not timestamp or self._dev_key_in_production:
            return False
        seconds = unix_seconds(timestamp)
        now = request.received_at.timestamp() if request.received_at is not None else self.clock()
        if seconds is None or not fresh(seconds, now, self.settings.webhook_tolerance):
            return False
        return verify_sendgrid_signature(self.public_key, timestamp, request.body, signature)

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult:
        events = request.json()
        if not isinstance(events, list):
            raise ValueError("SendGrid posts a JSON array of events")
        statuses = [update for event in events if isinstance(event, dict)
                    if (update := self._status(event)) is not None]
        return WebhookResult(statuses=statuses)

    def _status(self, event: Mapping[str, Any]) -> StatusUpdate | None:
        vendor = str(event.get("event") or "")
        if vendor in self.NO_CHANGE:
            return None
        status = self.STATUS_MAP.get(vendor)
        if vendor == "bounce" and event.get("type") == "blocked":
            status = Status.FAILED
        sg_id = _str_or_none(event.get("sg_message_id"))
        return StatusUpdate(
            message_id=_str_or_none(event.get("herald_message_id")),
            # sg_message_id is the send's X-Message-Id followed by ".filter…" routing details.
            provider_message_id=sg_id.split(".filter", 1)[0] if sg_id else None,
            status=status, vendor_status=vendor[:40], detail=_detail(event), at=_timestamp(event.get("timestamp")),
            address=_str_or_none(event.get("email")),
            recipient_id=_str_or_none(event.get("herald_recipient_id")),
            # "a unique ID to this event that you can use for deduplication purposes" (Event Webhook reference)
            delivery_id=_str_or_none(event.get("sg_event_id")))


def _error_text(response: httpx.Response) -> str:
    """SendGrid's first error as `message (field)`, scrubbed: its messages can quote addresses back."""
    try:
        data = response.json()
    except ValueError:
        data = None
    errors = data.get("errors") if isinstance(data, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    message = str(first.get("message") or f"HTTP {response.status_code}")
    field = first.get("field")
    if field and field != "null":
        message = f"{message} ({field})"
    return scrub(message, 200)


def _detail(event: Mapping[str, Any]) -> str | None:
    """The enhanced SMTP status ("5.1.1") when there is one, else the reason; never an address."""
    status = str(event.get("status") or "").strip()
    if _SMTP_STATUS.match(status):
        return status
    reason = scrub(str(event.get("reason") or ""))
    return reason or None


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _str_or_none(value: Any) -> str | None:
    """A field SendGrid sends as a string (numbers tolerated); any other JSON type is not a value Herald sent."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)
