"""Voice: a Twilio-compatible provider (Calls API with inline TwiML), with a stateless keypad menu."""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
import phonenumbers
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import Field, field_validator

from channels.base import OutboundMessage, SendResult
from channels.errors import DeliveryError, InvalidRecipient, Rejected
from channels.http import (
    HttpProvider,
    http_errors,
    raise_for_status,
    response_json,
    vendor_code,
)
from channels.phone import EnvMap, parse_env_map, to_e164
from channels.providers._twilio import (
    TWILIO_ACCOUNT_CODES,
    TwilioSettings,
    twilio_client,
    twilio_idempotency_token,
    verify_twilio_request,
)
from channels.webhooks import InboundMessage, StatusUpdate, WebhookRequest, WebhookResponse, WebhookResult, callback_url
from schemas.settings import Settings
from schemas.status import Status

# Twilio rejects a `Twiml` parameter longer than this (error 32018); checked before the call is placed.
TWIML_MAX_CHARS = 4000
GATHER_TIMEOUT_SECONDS = "6"
RING_TIMEOUT_SECONDS = "30"
# A sealed speech or menu is only opened for this long: enough for any call that was placed with it.
SEAL_TTL_SECONDS = 24 * 3600
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'

# Keypad actions in the compact `k` query parameter: `1c2x0a` = 1 confirm, 2 cancel, 0 agent; `1s2s3s4s5s` = a
# survey's ratings 1 to 5 (thanked like an answer).
ACTION_CODES: dict[str, str] = {"repeat": "r", "confirm": "c", "cancel": "x", "agent": "a", "rate": "s"}
CODE_ACTIONS: dict[str, str] = {v: k for k, v in ACTION_CODES.items()}
KEYS = frozenset("0123456789*#")

# Language/locale values of <Say> (https://www.twilio.com/docs/voice/twiml/say/text-speech; the account's default
# voice for each is used unless `HERALD_TWILIO_SAY_VOICES` names one).
SAY_LANGUAGES: frozenset[str] = frozenset({
    "ca-ES", "da-DK", "de-DE", "en-AU", "en-CA", "en-GB", "en-IN", "en-NZ", "en-US", "en-ZA", "es-ES", "es-MX",
    "es-US", "fi-FI", "fr-CA", "fr-FR", "it-IT", "ja-JP", "ko-KR", "nb-NO", "nl-NL", "pl-PL", "pt-BR", "pt-PT",
    "ru-RU", "sv-SE", "zh-CN", "zh-HK", "zh-TW",
})
SAY_DEFAULTS: dict[str, str] = {
    "en": "en-US", "es": "es-ES", "de": "de-DE", "fr": "fr-FR", "it": "it-IT", "pt": "pt-BR", "nl": "nl-NL",
    "ca": "ca-ES", "da": "da-DK", "fi": "fi-FI", "nb": "nb-NO", "no": "nb-NO", "pl": "pl-PL", "ru": "ru-RU",
    "sv": "sv-SE", "ja": "ja-JP", "ko": "ko-KR", "zh": "zh-CN",
}
FALLBACK_LANGUAGE = "en-US"

# What Herald itself says on a keypad answer, by language.
PHRASES: dict[str, dict[str, str]] = {
    "en": {"thanks": "Thank you, we have received your answer. Goodbye.",
           "agent": "Please hold while we connect you to an agent."},
    "es": {"thanks": "Gracias, hemos recibido su respuesta. Hasta luego.",
           "agent": "Por favor, espere mientras le comunicamos con un agente."},
    "de": {"thanks": "Vielen Dank, wir haben Ihre Antwort erhalten. Auf Wiederhören.",
           "agent": "Bitte warten Sie, wir verbinden Sie mit einem Mitarbeiter."},
}

# Characters XML 1.0 cannot carry at all (ElementTree would write them and produce a document Twilio refuses).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class TwilioVoiceSettings(TwilioSettings):
    """`HERALD_TWILIO_*` as for SMS (credentials, `voice_from`), plus what only calls need."""

    # Redeclared only to read `HERALD_TWILIO_SMS_FROM=default=+1…,ES=+34…` (see `EnvMap`): these settings read the
    # same variables as `TwilioSettings`, and a voice worker must not fail on the SMS sender map.
    sms_from: EnvMap = Field(default_factory=lambda: {"default": "+15005550006"},
                             description="Sender per country: `default=+1…,ES=+34…` or a JSON object.")
    agent_number: str | None = Field(default=None, description="Where keypad `agent` transfers the call (E.164).")
    say_voices: EnvMap = Field(default_factory=dict,
                               description="<Say> voice per language: `en-GB=Polly.Amy,es=Polly.Lucia`.")

    @field_validator("agent_number")
    @classmethod
    def _agent_e164(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            parsed = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException as exc:
            raise ValueError("agent_number must be an E.164 phone number") from exc
        if not phonenumbers.is_valid_number(parsed):
            raise ValueError("agent_number must be an E.164 phone number")
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    @field_validator("sms_from", "say_voices", mode="before")
    @classmethod
    def _maps(cls, value: Any) -> Any:
        return parse_env_map(value)


def _split_locale(tag: str | None) -> tuple[str, str | None]:
    parts = (tag or "").replace("_", "-").split("-")
    lang = parts[0].lower()
    region = next((p.upper() for p in parts[1:] if len(p) == 2 and p.isalpha()), None)
    return lang, region


def say_language(locale: str | None, text_locale: str | None = None) -> str:
    """The <Say> language for a recipient's locale (`es-MX` -> `es-MX`, `es-AR` -> `es-ES`, `xx` -> `en-US`).

    `text_locale` is the locale the speech was rendered in: when a template fell back to another language, the
    voice must speak the language of the text, not the recipient's.
    """
    lang, region = _split_locale(locale)
    if text_locale:
        text_lang, text_region = _split_locale(text_locale)
        if text_lang and text_lang != lang:
            lang, region = text_lang, text_region
        else:
            region = region or text_region
    if region and f"{lang}-{region}" in SAY_LANGUAGES:
        return f"{lang}-{region}"
    return SAY_DEFAULTS.get(lang, FALLBACK_LANGUAGE)


def encode_keypad(keypad: Mapping[str, Any]) -> str:
    """`{"1": "confirm", "0": "agent"}` -> `0a1c` (unknown keys and actions are left out)."""
    return "".join(f"{key}{ACTION_CODES[str(action)]}" for key, action in sorted(keypad.items())
                   if key in KEYS and str(action) in ACTION_CODES)


def decode_keypad(code: str) -> dict[str, str]:
    """`0a1c` -> `{"0": "agent", "1": "confirm"}`; malformed pairs are ignored."""
    pairs = (code[i:i + 2] for i in range(0, len(code) - 1, 2))
    return {p[0]: CODE_ACTIONS[p[1]] for p in pairs if p[0] in KEYS and p[1] in CODE_ACTIONS}


def voice_fernet(secret: str) -> Fernet:
    """The key that seals speech into the gather URL, derived from `HERALD_SECRET` so every worker shares it."""
    digest = hashlib.sha256(b"herald-voice|" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


class TwilioVoiceProvider(HttpProvider):
    """Twilio Calls API: places a call that speaks the message, optionally with a one-key menu.

    The call's TwiML is sent inline. A keypad answer comes back to the gather `action` URL, which carries all the
    callback needs (keypad, language, the sealed speech and menu), so any worker can answer it.
    """

    name = "twilio"
    channel = "voice"
    settings_class = TwilioVoiceSettings

    # https://www.twilio.com/docs/voice/api/call-resource#call-status-values and
    # https://www.twilio.com/docs/voice/api/call-resource#statuscallbackevent
    STATUS_MAP: ClassVar[dict[str, Status | None]] = {
        "queued": None, "initiated": None, "ringing": None, "in-progress": None,  # the call is still going
        "completed": Status.DELIVERED, "busy": Status.FAILED, "no-answer": Status.FAILED, "failed": Status.FAILED,
        "canceled": Status.CANCELLED,
    }
    IN_FLIGHT: ClassVar[frozenset[str]] = frozenset({"queued", "initiated", "ringing", "in-progress"})
    FAILED_DETAIL: ClassVar[frozenset[str]] = frozenset({"busy", "no-answer", "failed"})
    # https://www.twilio.com/docs/api/errors
    CODES: ClassVar[dict[str, type[DeliveryError]]] = {
        "21211": InvalidRecipient,  # invalid 'To' phone number
        "21214": InvalidRecipient,  # 'To' phone number cannot be reached
        "21217": InvalidRecipient,  # phone number does not appear to be valid
        "13223": InvalidRecipient,  # invalid phone number format
        "13224": InvalidRecipient,  # Twilio does not support calling this number or it is invalid
        "21215": Rejected,  # geo permissions do not allow calling this country
        "21216": Rejected,  # account not allowed to call this number (blocked/premium)
        "21210": Rejected,  # 'From' is not a Twilio number or verified caller id
        "21212": Rejected,  # invalid 'From' (caller id)
        "21219": Rejected,  # 'To' not verified (trial account)
        "21205": Rejected,  # invalid URL (StatusCallback)
        "32018": Rejected,  # Twiml over 4000 characters
        **TWILIO_ACCOUNT_CODES,
    }

    def __init__(self, config: TwilioVoiceSettings, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.settings = settings
        # Sealed with HERALD_SECRET; a token sealed just before a rotation still opens (for its SEAL_TTL_SECONDS)
        # with a secret kept in HERALD_SECRET_PREVIOUS.
        self.fernet = MultiFernet([voice_fernet(s.get_secret_value())
                                   for s in (settings.secret, *settings.secret_previous)])
        self.client = twilio_client(config, settings, transport)



    # --- sending ----------------------------------------------------------------------------------------------

    def seal(self, text: str) -> str:
        """Encrypt text for a URL Twilio will call back (the speech may hold a one-time code)."""
        return self.fernet.encrypt(text.encode()).decode()

    def unseal(self, token: str | None) -> str | None:
        """The text of a sealed token, or None when it is missing, tampered with or too old."""
        if not token:
            return None
        try:
            return self.fernet.decrypt(token.encode(), ttl=SEAL_TTL_SECONDS).decode()
        except (InvalidToken, ValueError):
            return None

    def build_twiml(self, message: OutboundMessage) -> str:
        """The call's TwiML: the speech, and when the message has a keypad and a menu, a one-key <Gather>."""
        speech = message.rendered["speech"]
        menu = message.rendered.parts.get("menu")
        keypad = encode_keypad(message.options.get("keypad") or {})
        language = say_language(message.locale, message.rendered.locale)
        if not (keypad and menu):
            root = ET.Element("Response")
            self._say(root, speech, language)
            return _serialize(root)
        extra = {"kind": "gather", "k": keypad, "l": language, "m": self.seal(menu)}
        if rid := message.metadata.get("recipient_id"):
            extra["rid"] = rid
        if "repeat" in decode_keypad(keypad).values():
            extra["r"] = self.seal(speech)
        action = callback_url(self.settings, "voice", "twilio", message, **extra)
        return _serialize(self._menu_twiml(speech, menu, language, action))

    async def send(self, message: OutboundMessage) -> SendResult:
        to, _ = to_e164(message.address, provider=self.name)
        twiml = self.build_twiml(message)
        if len(twiml) > TWIML_MAX_CHARS:
            raise Rejected(f"TwiML is {len(twiml)} characters; Twilio accepts {TWIML_MAX_CHARS}", code="32018",
                           provider=self.name)
        form: dict[str, str | list[str]] = {
            "To": to, "From": self.config.voice_from, "Twiml": twiml,
            "StatusCallback": callback_url(self.settings, "voice", "twilio", message),
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": list(STATUS_EVENTS),  # one field per event, as Twilio expects
            "Timeout": RING_TIMEOUT_SECONDS,
        }
        with http_errors(self.name):
            response = await self.client.post(
                f"/2010-04-01/Accounts/{self.config.account_sid}/Calls.json", data=form,
                headers={"Idempotency-Key": message.idempotency_key})
        data = response_json(response)
        raise_for_status(response, self.name, vendor_code=vendor_code(data.get("code")), codes=self.CODES,
                         message=str(data.get("message") or ""))
        return SendResult(provider=self.name, provider_message_id=data.get("sid"))

    # --- hearing back -----------------------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> bool:
        return verify_twilio_request(self.config.auth_token.get_secret_value(), request)

    def parse_webhook(self, request: WebhookRequest) -> WebhookResult:
        form = request.form()
        token = twilio_idempotency_token(request)
        # A gather callback also carries `CallStatus` (in-progress), so the query decides first. Its only id is
        # Twilio's token: a person may press keys again on the same call (a repeated menu), which is not a replay.
        if request.query.get("kind") == "gather":
            result = self._gather(request, form)
            result.delivery_id = token
            return result
        if "CallStatus" in form:
            vendor = form["CallStatus"]
            if vendor in self.IN_FLIGHT:
                return WebhookResult(delivery_id=token)
            sid = form.get("CallSid") or None
            return WebhookResult(delivery_id=token, statuses=[StatusUpdate(
                message_id=request.query.get("message_id"), provider_message_id=sid,
                status=self.STATUS_MAP.get(vendor), vendor_status=vendor,
                detail=vendor if vendor in self.FAILED_DETAIL else None, address=form.get("To") or None,
                recipient_id=request.query.get("rid"), delivery_id=f"{sid}|{vendor}" if sid else None)])
        return WebhookResult(delivery_id=token)

    def _gather(self, request: WebhookRequest, form: Mapping[str, str]) -> WebhookResult:
        digits = form.get("Digits", "")
        query = request.query
        language = query.get("l", "")
        if language not in SAY_LANGUAGES:  # it came through a signed URL, but it lands in an attribute: check it
            language = FALLBACK_LANGUAGE
        action = decode_keypad(query.get("k", "")).get(digits)
        inbound = [InboundMessage(
            channel="voice", sender=form.get("To", ""), digits=digits, message_id=query.get("message_id"),
            recipient_id=query.get("rid"), provider_message_id=form.get("CallSid"))] if digits else []
        menu = self.unseal(query.get("m"))
        root = ET.Element("Response")
        speech = self.unseal(query.get("r")) if action == "repeat" else None
        if speech is not None and menu is not None:  # say it again and listen again, at the same action URL
            root = self._menu_twiml(speech, menu, language, request.url)
        elif action == "agent" and self.config.agent_number:
            self._say(root, _phrase(language, "agent"), _phrase_language(language))
            ET.SubElement(root, "Dial").text = self.config.agent_number
        elif action is None and menu is not None:  # no key or an unknown one: offer the menu again
            gather = ET.SubElement(root, "Gather", _gather_attributes(request.url))
            self._say(gather, menu, language)
            ET.SubElement(root, "Hangup")
        else:  # confirm, cancel, a rating, agent without a number, or a menu that cannot be opened
            self._say(root, _phrase(language, "thanks"), _phrase_language(language))
            ET.SubElement(root, "Hangup")
        response = WebhookResponse(body=(XML_DECLARATION + _serialize(root)).encode(),
                                   content_type="application/xml")
        return WebhookResult(inbound=inbound, response=response)

    # --- TwiML ------------------------------------------------------------------------------------------------

    def _say(self, parent: ET.Element, text: str, language: str) -> ET.Element:
        attributes = {"language": language}
        voice = self.config.say_voices.get(language) or self.config.say_voices.get(language.split("-")[0])
        if voice:
            attributes["voice"] = voice
        say = ET.SubElement(parent, "Say", attributes)
        say.text = _xml_text(text)  # ElementTree escapes it: the text can never become markup
        return say

    def _menu_twiml(self, speech: str, menu: str, language: str, action: str) -> ET.Element:
        root = ET.Element("Response")
        gather = ET.SubElement(root, "Gather", _gather_attributes(action))
        self._say(gather, speech, language)
        self._say(gather, menu, language)
        self._say(root, speech, language)  # no key pressed: say it once more, then end the call
        ET.SubElement(root, "Hangup")
        return root


def _gather_attributes(action: str) -> dict[str, str]:
    return {"numDigits": "1", "timeout": GATHER_TIMEOUT_SECONDS, "action": action, "method": "POST"}


def _phrase_language(language: str) -> str:
    """Herald's own phrases exist in a few languages; others are spoken in English, with an English voice."""
    return language if language.split("-")[0] in PHRASES else FALLBACK_LANGUAGE


def _phrase(language: str, key: str) -> str:
    return PHRASES.get(language.split("-")[0], PHRASES["en"])[key]


def _serialize(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode", short_empty_elements=True)
