"""Voice: the call we place through Twilio, its TwiML, its status callbacks and the stateless keypad menu."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from channels.base import OutboundMessage, Sender, WebhookReceiver
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.providers.voice import (
    PHRASES,
    SEAL_TTL_SECONDS,
    TwilioVoiceProvider,
    TwilioVoiceSettings,
    decode_keypad,
    encode_keypad,
    say_language,
    voice_fernet,
)
from channels.registry import provider_class
from channels.rendering.render import Rendered
from channels.signatures import twilio_signature
from channels.webhooks import WebhookRequest
from schemas.settings import Settings
from schemas.status import Status

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "twilio"
PUBLIC = "https://herald.example.com"
SECRET = "test-secret-for-voice"
TOKEN = TwilioVoiceSettings().auth_token.get_secret_value()
SID = TwilioVoiceSettings().account_sid
SPEECH = "Su código de verificación es 4, 8, 2, 9, 1, 3."
MENU = "Pulse 1 para repetir, 2 para confirmar, 3 para cancelar o 0 para hablar con un agente."
KEYPAD = {"1": "repeat", "2": "confirm", "3": "cancel", "0": "agent"}
Handler = Callable[[httpx.Request], httpx.Response]


def settings(secret: str = SECRET) -> Settings:
    return Settings(public_url=PUBLIC, secret=secret)


def message(speech: str = SPEECH, menu: str | None = MENU, keypad: dict[str, str] | None = None,
            locale: str = "es-ES", text_locale: str = "es", address: str = "+34600111222") -> OutboundMessage:
    parts = {"speech": speech, **({"menu": menu} if menu is not None else {})}
    return OutboundMessage(message_id="msg-3f2a9c", channel="voice", address=address, idempotency_key="k-3f2a9c",
                           rendered=Rendered(template="appointment.reminder/voice", locale=text_locale, parts=parts),
                           locale=locale, metadata={"message_id": "msg-3f2a9c", "recipient_id": "user-42"},
                           options={"keypad": KEYPAD if keypad is None else keypad})


def provider(handler: Handler | None = None, config: TwilioVoiceSettings | None = None,
             secret: str = SECRET) -> TwilioVoiceProvider:
    transport = httpx.MockTransport(handler or answer(201, fixture("call_queued.json")))
    return TwilioVoiceProvider(config or TwilioVoiceSettings(), settings(secret), transport=transport)


def fixture(name: str) -> Any:
    text = (FIXTURES / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def answer(status: int, body: Any) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)
    return handle


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(201, json=fixture("call_queued.json"))


def twiml_of(message_: OutboundMessage, voice: TwilioVoiceProvider | None = None) -> ET.Element:
    """The call's TwiML, parsed (which also proves it is well-formed XML)."""
    return ET.fromstring((voice or provider()).build_twiml(message_))


def action_of(root: ET.Element) -> str:
    gather = root.find("Gather")
    assert gather is not None
    return gather.attrib["action"]


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


# --- placing the call -----------------------------------------------------------------------------------------


async def test_twilio_voice__send_posts_the_calls_form_with_basic_auth() -> None:
    recorder = Recorder()
    result = await provider(recorder).send(message())
    [request] = recorder.requests
    assert request.method == "POST"
    assert request.url == f"http://127.0.0.1:8090/twilio/2010-04-01/Accounts/{SID}/Calls.json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    form = parse_qs(request.content.decode(), keep_blank_values=True)
    assert form["To"] == ["+34600111222"] and form["From"] == ["+15005550006"]
    assert form["StatusCallback"] == [f"{PUBLIC}/webhooks/voice/twilio?message_id=msg-3f2a9c"]
    assert form["StatusCallbackMethod"] == ["POST"]
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]  # one field per event
    assert form["Timeout"] == ["30"]
    assert "MachineDetection" not in form
    assert ET.fromstring(form["Twiml"][0]).tag == "Response"
    assert (result.provider, result.provider_message_id) == ("twilio", "CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")


async def test_twilio_voice__invalid_address_fails_before_any_request() -> None:
    recorder = Recorder()
    with pytest.raises(InvalidRecipient):
        await provider(recorder).send(message(address="not a number"))
    assert recorder.requests == []


def test_twilio_voice__without_keypad_the_call_just_speaks() -> None:
    root = twiml_of(message(keypad={}))
    assert [child.tag for child in root] == ["Say"]
    assert (root[0].text, root[0].attrib) == (SPEECH, {"language": "es-ES"})


@pytest.mark.parametrize(("menu", "keypad"), [(None, KEYPAD), (MENU, {}), (MENU, {"5": "teleport"})],
                         ids=["no-menu-part", "no-keypad", "only-unknown-actions"])
def test_twilio_voice__menu_needs_both_a_keypad_and_a_menu_part(menu: str | None, keypad: dict[str, str]) -> None:
    assert twiml_of(message(menu=menu, keypad=keypad)).find("Gather") is None


def test_twilio_voice__keypad_menu_is_a_gather_then_the_speech_then_hangup() -> None:
    root = twiml_of(message())
    assert [child.tag for child in root] == ["Gather", "Say", "Hangup"]
    gather = root[0]
    assert {k: v for k, v in gather.attrib.items() if k != "action"} == {
        "numDigits": "1", "timeout": "6", "method": "POST"}
    assert [(say.tag, say.text) for say in gather] == [("Say", SPEECH), ("Say", MENU)]
    assert root[1].text == SPEECH  # said once more when no key is pressed
    action = urlsplit(gather.attrib["action"])
    assert f"{action.scheme}://{action.netloc}{action.path}" == f"{PUBLIC}/webhooks/voice/twilio"
    query = query_of(gather.attrib["action"])
    assert set(query) == {"message_id", "kind", "rid", "k", "l", "m", "r"}
    assert (query["message_id"], query["kind"], query["rid"], query["k"], query["l"]) == (
        "msg-3f2a9c", "gather", "user-42", "0a1r2c3x", "es-ES")


def test_twilio_voice__without_repeat_the_speech_is_not_in_the_url() -> None:
    query = query_of(action_of(twiml_of(message(keypad={"1": "confirm", "2": "cancel"}))))
    assert "r" not in query and query["k"] == "1c2x"


def test_twilio_voice__no_recipient_id_means_no_rid() -> None:
    msg = message()
    msg = OutboundMessage(**{**{f: getattr(msg, f) for f in msg.__slots__}, "metadata": {"message_id": "msg-3f2a9c"}})
    assert "rid" not in query_of(action_of(twiml_of(msg)))


INJECTIONS = [
    "</Say><Dial>+1900</Dial>",
    "]]><Dial>+1900</Dial><![CDATA[",
    '"/><Dial>+1900</Dial><Say a="',
    "&lt;Dial&gt; &amp; <!-- --> <?pi?>",
]


@pytest.mark.parametrize("payload", INJECTIONS, ids=["close-say", "cdata", "attribute", "entities"])
@pytest.mark.parametrize("part", ["speech", "menu"])
def test_twilio_voice__markup_in_the_text_stays_text(payload: str, part: str) -> None:
    msg = message(speech=f"Hola {payload}") if part == "speech" else message(menu=f"Pulse {payload}")
    root = twiml_of(msg)
    assert root.find(".//Dial") is None
    said = [say.text for say in root.iter("Say")]
    assert (f"Hola {payload}" if part == "speech" else f"Pulse {payload}") in said


def test_twilio_voice__control_characters_are_dropped_so_the_xml_stays_valid() -> None:
    root = twiml_of(message(speech="Código\x00 4\x1b8\x0b2\ufffe", keypad={}))
    assert root[0].text == "Código 482"


async def test_twilio_voice__twiml_over_4000_characters_is_rejected_before_calling() -> None:
    recorder = Recorder()
    with pytest.raises(Rejected) as info:
        await provider(recorder).send(message(speech="Su código. " * 300))
    assert (info.value.code, info.value.retriable, recorder.requests) == ("32018", False, [])


# --- the sealed speech ----------------------------------------------------------------------------------------


def test_twilio_voice__repeat_speech_round_trips_through_fernet() -> None:
    voice = provider()
    query = query_of(action_of(twiml_of(message(), voice)))
    assert SPEECH not in action_of(twiml_of(message(), voice))  # the code is never in the URL in clear
    assert (voice.unseal(query["r"]), voice.unseal(query["m"])) == (SPEECH, MENU)
    # Another worker with the same HERALD_SECRET opens it; the key is the documented derivation.
    key = base64.urlsafe_b64encode(hashlib.sha256(b"herald-voice|" + SECRET.encode()).digest())
    assert Fernet(key).decrypt(query["r"].encode()).decode() == SPEECH
    assert provider().unseal(query["r"]) == SPEECH
    assert voice_fernet(SECRET).decrypt(query["m"].encode()).decode() == MENU


@pytest.mark.parametrize("token", ["", "not-a-token", None], ids=["empty", "garbage", "missing"])
def test_twilio_voice__unreadable_seal_is_none(token: str | None) -> None:
    assert provider().unseal(token) is None


def test_twilio_voice__seal_from_another_secret_or_tampered_is_none() -> None:
    sealed = provider(secret="another-secret-entirely").seal(SPEECH)
    assert provider().unseal(sealed) is None
    mine = provider().seal(SPEECH)
    assert provider().unseal(mine[:-6] + ("A" if mine[-6] != "A" else "B") + mine[-5:]) is None


def test_twilio_voice__seal_older_than_its_ttl_is_none() -> None:
    fernet, now = voice_fernet(SECRET), int(time.time())
    assert provider().unseal(fernet.encrypt_at_time(b"fresh", now - SEAL_TTL_SECONDS + 60).decode()) == "fresh"
    assert provider().unseal(fernet.encrypt_at_time(b"stale", now - SEAL_TTL_SECONDS - 60).decode()) is None


# --- language ---------------------------------------------------------------------------------------------------


LANGUAGE_CASES = [
    ("en-GB", "en", "en-GB"),
    ("en-US", "en", "en-US"),
    ("en", "en", "en-US"),
    ("es-ES", "es", "es-ES"),
    ("es-MX", "es", "es-MX"),
    ("es-AR", "es", "es-ES"),  # no Argentinian voice: the language's default
    ("es", "es-MX", "es-MX"),
    ("de-DE", "de", "de-DE"),
    ("de-AT", "de", "de-DE"),
    ("de", "de", "de-DE"),
    ("en_GB", "en", "en-GB"),
    ("fr-FR", "en", "en-US"),  # the template fell back to English: speak English
    ("xx-YY", "xx", "en-US"),
    ("", "", "en-US"),
]


@pytest.mark.parametrize(("locale", "text_locale", "expected"), LANGUAGE_CASES,
                         ids=[f"{a or 'none'}-{b or 'none'}" for a, b, _ in LANGUAGE_CASES])
def test_twilio_voice__say_language_follows_the_locale(locale: str, text_locale: str, expected: str) -> None:
    assert say_language(locale, text_locale) == expected
    root = twiml_of(message(locale=locale, text_locale=text_locale))
    assert {say.attrib["language"] for say in root.iter("Say")} == {expected}
    assert query_of(action_of(root))["l"] == expected


def test_twilio_voice__configured_voice_is_used_for_its_language(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_TWILIO_SAY_VOICES", "es-MX=Polly.Mia,de=Polly.Vicki")
    voice = provider(config=TwilioVoiceSettings())
    assert {s.attrib.get("voice") for s in twiml_of(message(locale="es-MX"), voice).iter("Say")} == {"Polly.Mia"}
    assert {s.attrib.get("voice") for s in twiml_of(message(locale="de-DE", text_locale="de"), voice).iter(
        "Say")} == {"Polly.Vicki"}
    assert {s.attrib.get("voice") for s in twiml_of(message(locale="es-ES"), voice).iter("Say")} == {None}


# --- errors -----------------------------------------------------------------------------------------------------


# Pinned here so a change to the provider's table is a deliberate change to this test too. What each code raises on
# a send, at any HTTP status, and an unknown code's fallback: tests/unit/test_provider_contract.py.
TWILIO_VOICE_CODES: dict[str, type[DeliveryError]] = {
    "21211": InvalidRecipient, "21214": InvalidRecipient, "21217": InvalidRecipient, "13223": InvalidRecipient,
    "13224": InvalidRecipient, "21215": Rejected, "21216": Rejected, "21210": Rejected, "21212": Rejected,
    "21219": Rejected, "21205": Rejected, "32018": Rejected, "20003": Rejected, "20404": Rejected,
    "20429": RateLimited, "20500": ProviderUnavailable, "20503": ProviderUnavailable,
}


def test_twilio_voice__code_table_is_the_documented_one() -> None:
    assert TwilioVoiceProvider.CODES == TWILIO_VOICE_CODES


# --- hearing back -------------------------------------------------------------------------------------------------


def post(url: str, form: dict[str, str], *, token: str = TOKEN, signature: str | None = None) -> WebhookRequest:
    """A Twilio callback as it arrives, signed over the full URL and the POST form."""
    sig = twilio_signature(token, url, form) if signature is None else signature
    headers = {"content-type": "application/x-www-form-urlencoded", **({"x-twilio-signature": sig} if sig else {})}
    return WebhookRequest(method="POST", url=url, headers=headers, query=query_of(url), body=urlencode(form).encode())


STATUS_URL = f"{PUBLIC}/webhooks/voice/twilio?message_id=msg-3f2a9c"


def status_form(call_status: str) -> dict[str, str]:
    return {**dict(parse_qsl(fixture("call_status.txt"))), "CallStatus": call_status}


# https://www.twilio.com/docs/voice/api/call-resource#call-status-values
STATUS_CASES = [
    ("completed", Status.DELIVERED, None),
    ("busy", Status.FAILED, "busy"),
    ("no-answer", Status.FAILED, "no-answer"),
    ("failed", Status.FAILED, "failed"),
    ("canceled", Status.CANCELLED, None),
    ("teleported", None, None),  # not a Twilio word: no guess
]


@pytest.mark.parametrize(("vendor", "status", "detail"), STATUS_CASES, ids=[c[0] for c in STATUS_CASES])
def test_twilio_voice__call_status_is_mapped(vendor: str, status: Status | None, detail: str | None) -> None:
    result = provider().parse_webhook(post(STATUS_URL, status_form(vendor)))
    [update] = result.statuses
    assert (update.message_id, update.provider_message_id) == ("msg-3f2a9c", "CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    assert (update.status, update.vendor_status, update.detail) == (status, vendor, detail)
    assert result.inbound == []


@pytest.mark.parametrize("vendor", ["queued", "initiated", "ringing", "in-progress"])
def test_twilio_voice__call_in_flight_changes_nothing(vendor: str) -> None:
    result = provider().parse_webhook(post(STATUS_URL, status_form(vendor)))
    assert (result.statuses, result.inbound) == ([], [])


def test_twilio_voice__status_map_covers_every_call_status() -> None:
    assert set(TwilioVoiceProvider.STATUS_MAP) == {
        "queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"}


def gather_request(digits: str, msg: OutboundMessage | None = None, voice: TwilioVoiceProvider | None = None
                   ) -> WebhookRequest:
    url = action_of(twiml_of(msg or message(), voice))
    return post(url, {**dict(parse_qsl(fixture("gather.txt"), keep_blank_values=True)), "Digits": digits})


def spoken(result_body: bytes) -> ET.Element:
    assert result_body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(result_body)


def test_twilio_voice__gather_is_a_reply_correlated_to_message_and_recipient() -> None:
    result = provider().parse_webhook(gather_request("2"))
    [reply] = result.inbound
    assert (reply.channel, reply.sender, reply.digits, reply.message_id, reply.recipient_id,
            reply.provider_message_id, reply.text) == (
        "voice", "+34600111222", "2", "msg-3f2a9c", "user-42", "CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", None)
    assert result.statuses == []  # its CallStatus (in-progress) is not a receipt
    assert result.response.content_type == "application/xml" and result.response.status == 200


def test_twilio_voice__gather_repeat_says_it_again_and_listens_at_the_same_url() -> None:
    request = gather_request("1")
    root = spoken(provider().parse_webhook(request).response.body)
    assert [child.tag for child in root] == ["Gather", "Say", "Hangup"]
    assert root[0].attrib["action"] == request.url
    assert [say.text for say in root[0]] == [SPEECH, MENU]
    assert root[1].text == SPEECH
    assert {say.attrib["language"] for say in root.iter("Say")} == {"es-ES"}


@pytest.mark.parametrize("digit", ["2", "3"], ids=["confirm", "cancel"])
@pytest.mark.parametrize(("locale", "text_locale", "phrase", "language"), [
    ("es-MX", "es", PHRASES["es"]["thanks"], "es-MX"),
    ("de-DE", "de", PHRASES["de"]["thanks"], "de-DE"),
    ("en-GB", "en", PHRASES["en"]["thanks"], "en-GB"),
    ("fr-FR", "fr", PHRASES["en"]["thanks"], "en-US"),  # no French phrase: English, with an English voice
], ids=["es", "de", "en", "fr"])
def test_twilio_voice__gather_confirm_or_cancel_thanks_and_hangs_up(digit: str, locale: str, text_locale: str,
                                                                   phrase: str, language: str) -> None:
    result = provider().parse_webhook(gather_request(digit, message(locale=locale, text_locale=text_locale)))
    root = spoken(result.response.body)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert (root[0].text, root[0].attrib["language"]) == (phrase, language)
    assert result.inbound[0].digits == digit


def test_twilio_voice__gather_agent_dials_the_configured_number() -> None:
    voice = provider(config=TwilioVoiceSettings(agent_number="+34 910 00 00 00"))
    root = spoken(voice.parse_webhook(gather_request("0", voice=voice)).response.body)
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert (root[0].text, root[1].text) == (PHRASES["es"]["agent"], "+34910000000")


def test_twilio_voice__gather_agent_without_a_number_thanks_and_hangs_up() -> None:
    root = spoken(provider().parse_webhook(gather_request("0")).response.body)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == PHRASES["es"]["thanks"]


@pytest.mark.parametrize("digits", ["9", "#", ""], ids=["unknown-key", "hash", "no-key"])
def test_twilio_voice__gather_unknown_key_offers_the_menu_again(digits: str) -> None:
    request = gather_request(digits)
    result = provider().parse_webhook(request)
    root = spoken(result.response.body)
    assert [child.tag for child in root] == ["Gather", "Hangup"]
    assert root[0].attrib["action"] == request.url
    assert [say.text for say in root[0]] == [MENU]
    assert [r.digits for r in result.inbound] == ([digits] if digits else [])


def test_twilio_voice__gather_with_an_unreadable_seal_ends_politely() -> None:
    request = gather_request("1")
    query = {**request.query, "r": "tampered", "m": "tampered"}
    url = f"{PUBLIC}/webhooks/voice/twilio?{urlencode(query)}"
    form = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
    for digits in ("1", "9"):
        root = spoken(provider().parse_webhook(post(url, {**form, "Digits": digits})).response.body)
        assert [child.tag for child in root] == ["Say", "Hangup"]


def test_twilio_voice__gather_language_outside_twilio_list_falls_back() -> None:
    request = gather_request("2")
    query = {**request.query, "l": 'x"><Dial>+1900</Dial>'}
    url = f"{PUBLIC}/webhooks/voice/twilio?{urlencode(query)}"
    form = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
    root = spoken(provider().parse_webhook(post(url, form)).response.body)
    assert root.find(".//Dial") is None and root[0].attrib["language"] == "en-US"


def test_twilio_voice__keypad_survives_the_url_with_star_and_hash() -> None:
    keypad = {"*": "repeat", "#": "agent", "1": "confirm"}
    query = query_of(action_of(twiml_of(message(keypad=keypad))))
    assert decode_keypad(query["k"]) == keypad


KEYPAD_CASES = [
    ({"1": "repeat", "2": "confirm", "3": "cancel", "0": "agent"}, "0a1r2c3x"),
    ({"1": "confirm", "12": "cancel", "x": "agent", "2": "dance"}, "1c"),
    ({}, ""),
]


@pytest.mark.parametrize(("keypad", "code"), KEYPAD_CASES, ids=["all", "bad-entries-dropped", "empty"])
def test_keypad__encodes_compactly_and_decodes_back(keypad: dict[str, str], code: str) -> None:
    assert encode_keypad(keypad) == code
    assert decode_keypad(code) == {k: v for k, v in keypad.items() if k in "0123456789*#" and len(k) == 1
                                   and v in ("repeat", "confirm", "cancel", "agent")}


@pytest.mark.parametrize("code", ["1", "1z", "zz1r", "1r2"], ids=["odd", "bad-action", "bad-key", "trailing"])
def test_keypad__malformed_code_keeps_only_valid_pairs(code: str) -> None:
    assert decode_keypad(code) == ({"1": "repeat"} if "1r" in code else {})


# --- signatures -----------------------------------------------------------------------------------------------


def test_twilio_voice__signed_callbacks_are_accepted() -> None:
    voice = provider()
    assert voice.verify_webhook(post(STATUS_URL, status_form("completed"))) is True
    assert voice.verify_webhook(gather_request("1")) is True


def _tampered_body(request: WebhookRequest) -> WebhookRequest:
    form = {**dict(parse_qsl(request.body.decode(), keep_blank_values=True)), "Digits": "3"}
    return WebhookRequest(request.method, request.url, request.headers, request.query, urlencode(form).encode())


def _tampered_url(request: WebhookRequest) -> WebhookRequest:
    url = request.url.replace("k=", "k=9a", 1)
    return WebhookRequest(request.method, url, request.headers, query_of(url), request.body)


INVALID = [
    ("wrong-token", lambda: post(STATUS_URL, status_form("completed"), token="not-the-token")),
    ("tampered-body", lambda: _tampered_body(gather_request("1"))),
    ("tampered-url", lambda: _tampered_url(gather_request("1"))),
    ("missing-header", lambda: post(STATUS_URL, status_form("completed"), signature="")),
]


@pytest.mark.parametrize("make", [m for _, m in INVALID], ids=[i for i, _ in INVALID])
def test_twilio_voice__bad_signature_is_refused(make: Callable[[], WebhookRequest]) -> None:
    assert provider().verify_webhook(make()) is False


# --- settings and registry --------------------------------------------------------------------------------------


def test_twilio_voice__settings_share_twilio_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_TWILIO_VOICE_FROM", "+15005550009")
    monkeypatch.setenv("HERALD_TWILIO_AGENT_NUMBER", "+34910000000")
    monkeypatch.setenv("HERALD_TWILIO_SMS_FROM", "default=+15005550006,ES=+34910000001")
    config = TwilioVoiceSettings()
    assert (config.voice_from, config.agent_number) == ("+15005550009", "+34910000000")
    assert config.sms_from == {"default": "+15005550006", "ES": "+34910000001"}


@pytest.mark.parametrize("number", ["12345", "not a number"])
def test_twilio_voice__agent_number_must_be_a_phone_number(number: str) -> None:
    with pytest.raises(ValidationError):
        TwilioVoiceSettings(agent_number=number)


def test_twilio_voice__is_registered_and_meets_both_protocols() -> None:
    cls = provider_class("voice.twilio")
    assert cls is TwilioVoiceProvider and (cls.name, cls.channel) == ("twilio", "voice")
    voice = cls.from_settings(settings())
    assert isinstance(voice, Sender) and isinstance(voice, WebhookReceiver)


async def test_twilio_voice__close_closes_the_shared_client() -> None:
    voice = provider()
    await voice.close()
    assert voice.client.is_closed
