"""Twilio: Programmable Messaging (Messages.json) and Voice (Calls.json), with signed status callbacks.

Shapes and codes from https://www.twilio.com/docs/messaging/api/message-resource,
https://www.twilio.com/docs/voice/api/call-resource, https://www.twilio.com/docs/usage/webhooks/voice-webhooks
(status callback parameters, StatusCallbackEvent) and https://www.twilio.com/docs/api/errors.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin

import phonenumbers
from aiohttp import BasicAuth, web
from multidict import MultiDict, MultiDictProxy

from channels.providers._twilio import TwilioSettings
from channels.segments import sms_segments
from channels.signatures import twilio_signature
from consumers.dev.simulator.behaviour import PAYLOAD, FaultDecision

if TYPE_CHECKING:
    from consumers.dev.simulator.app import Payload, Sim

API_VERSION = "2010-04-01"
MAX_BODY = 1600
FORM = "application/x-www-form-urlencoded"
# StatusCallbackEvent values; "answered" is reported as CallStatus "in-progress".
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
# Per-recipient `fail` -> (final MessageStatus, ErrorCode). 30005: unknown handset (a "failed" send never
# reaches "sent"); 30003: unreachable handset (sent to the carrier, then undelivered).
SMS_FAILURES = {"permanent": ("failed", "30005"), "undelivered": ("undelivered", "30003")}


def _rfc2822(when: datetime | None = None) -> str:
    return format_datetime(when or datetime.now(UTC))


def _error(status: int, code: int, message: str, **extra: Any) -> web.Response:
    """Twilio's REST error body."""
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status, **extra}
    return web.json_response(body, status=status)


def fault_response(fault: FaultDecision) -> web.Response:
    if fault.kind == "rate_limit":
        response = _error(429, 20429, "Too Many Requests")
        response.headers["Retry-After"] = str(fault.retry_after or 1)
        return response
    if fault.kind == "timeout":
        return web.json_response({"message": "Gateway Timeout", "status": 504}, status=504)
    return _error(500, 20500, "Internal Server Error")


def recipient(kind: str, payload: Payload) -> str | None:
    if isinstance(payload, MultiDict | MultiDictProxy):
        return payload.get("To")
    return None


def _form(payload: Payload) -> MultiDict[str]:
    return MultiDict(payload) if isinstance(payload, MultiDict | MultiDictProxy) else MultiDict()


def _e164(number: str) -> str | None:
    """The number in E.164 when it is a valid one, else None (Twilio's 21211)."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _country(number: str) -> str:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number, None)) or ""
    except phonenumbers.NumberParseException:
        return ""


class TwilioSim:
    """Twilio's two resources and the callbacks they cause."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.settings = TwilioSettings()

    @property
    def token(self) -> str:
        return self.settings.auth_token.get_secret_value()

    def authorized(self, request: web.Request, sid: str) -> bool:
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return False
        return (auth.login == sid == self.settings.account_sid
                and secrets.compare_digest(auth.password.encode(), self.token.encode()))

    def new_sid(self, prefix: str) -> str:
        return prefix + self.sim.behaviour.hex_id(32)

    # --- signed requests to Herald --------------------------------------------------------------------------------

    async def post(self, kind: str, url: str, params: dict[str, str], method: str = "POST") -> dict[str, Any]:
        """A webhook as Twilio sends it: form POST (or GET query), `X-Twilio-Signature` over URL and fields."""
        headers = {"I-Twilio-Idempotency-Token": secrets.token_hex(16)}
        if method.upper() == "GET":
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
            headers["X-Twilio-Signature"] = twilio_signature(self.token, url, {})
            return await self.sim.callback("twilio", kind, url, method="GET", headers=headers, fields=params)
        headers["X-Twilio-Signature"] = twilio_signature(self.token, url, params)
        headers["Content-Type"] = FORM
        return await self.sim.callback("twilio", kind, url, content=urlencode(params).encode(), headers=headers,
                                       fields=params)

    # --- Messages ---------------------------------------------------------------------------------------------

    async def create_message(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        if not self.authorized(request, sid):
            return _error(401, 20003, "Authenticate", detail="Your AccountSid or AuthToken was incorrect.")
        form = _form(request[PAYLOAD])
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not sender and not form.get("MessagingServiceSid"):
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body and not form.get("MediaUrl"):
            return _error(400, 21602, "Message body is required.")
        e164 = _e164(to)
        if e164 is None:
            return _error(400, 21211, "Invalid 'To' Phone Number")
        if len(body) > MAX_BODY:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if self.sim.behaviour.unroutable(e164):
            return _error(400, 21614, "'To' number is not a valid mobile number")
        message_sid = self.new_sid("SM")
        now = _rfc2822()
        _, segments = sms_segments(body)
        uri = f"/{API_VERSION}/Accounts/{sid}/Messages/{message_sid}"
        resource = {
            "account_sid": sid, "api_version": API_VERSION, "body": body, "date_created": now, "date_sent": None,
            "date_updated": now, "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": sender or None, "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0", "num_segments": str(segments), "price": None, "price_unit": "USD",
            "sid": message_sid, "status": "queued", "to": e164, "uri": f"{uri}.json",
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
        }
        self.sim.spawn(self.message_lifecycle(message_sid, e164, sender, form.get("StatusCallback")))
        return web.json_response(resource, status=201)

    async def message_lifecycle(self, message_sid: str, to: str, sender: str, status_callback: str | None) -> None:
        rule = self.sim.behaviour.rule_for(to)
        steps: list[tuple[str, str | None]]
        if rule.fail:
            final, failure = SMS_FAILURES[rule.fail]
            steps = [("sent", None), (final, failure)] if final == "undelivered" else [(final, failure)]
        else:
            steps = [("sent", None), ("delivered", None)]
        for status, code in steps:
            if not status_callback:
                break
            await self.sim.behaviour.callback_pause()
            params = {"AccountSid": self.settings.account_sid, "ApiVersion": API_VERSION, "From": sender,
                      "MessageSid": message_sid, "MessageStatus": status, "SmsSid": message_sid,
                      "SmsStatus": status, "To": to}
            if code:
                params["ErrorCode"] = code
            await self.post("status", status_callback, params)
        if steps[-1][0] == "delivered" and (text := self.sim.behaviour.reply_for(to, rule)):
            await self.sim.behaviour.callback_pause()
            await self.inbound(to, text, sender)

    async def inbound(self, sender: str, text: str, to: str | None = None) -> dict[str, Any]:
        """The person texts Herald's Twilio number: the incoming-message webhook."""
        to = to or self.settings.sms_from.get("default", "+15005550006")
        sid = self.new_sid("SM")
        params = {"AccountSid": self.settings.account_sid, "ApiVersion": API_VERSION, "Body": text,
                  "From": sender, "FromCountry": _country(sender), "MessageSid": sid, "NumMedia": "0",
                  "NumSegments": str(sms_segments(text)[1]), "SmsMessageSid": sid, "SmsSid": sid,
                  "SmsStatus": "received", "To": to, "ToCountry": _country(to)}
        return await self.post("inbound", f"{self.sim.herald_url}/webhooks/sms/twilio", params)

    # --- Calls ------------------------------------------------------------------------------------------------

    async def create_call(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        if not self.authorized(request, sid):
            return _error(401, 20003, "Authenticate", detail="Your AccountSid or AuthToken was incorrect.")
        form = _form(request[PAYLOAD])
        to, sender = form.get("To", ""), form.get("From", "")
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not sender:
            return _error(400, 21213, "No 'From' number is specified")
        if not (form.get("Url") or form.get("Twiml") or form.get("ApplicationSid")):
            return _error(400, 21205, "Url parameter is required.")
        e164 = _e164(to)
        if e164 is None or self.sim.behaviour.unroutable(e164):
            return _error(400, 21211, "Invalid 'To' Phone Number")
        twiml = form.get("Twiml")
        if twiml is not None:
            try:
                ET.fromstring(twiml)
            except ET.ParseError:
                return _error(400, 12100, "Document parse failure")
        events = {e for value in form.getall("StatusCallbackEvent", []) for e in value.replace(",", " ").split()}
        unknown = events - set(CALL_EVENTS)
        if unknown:
            return _error(400, 21626, "Invalid 'StatusCallbackEvent'")
        call_sid = self.new_sid("CA")
        now = _rfc2822()
        uri = f"/{API_VERSION}/Accounts/{sid}/Calls/{call_sid}"
        resource = {
            "account_sid": sid, "annotation": None, "answered_by": None, "api_version": API_VERSION,
            "caller_name": None, "date_created": now, "date_updated": now, "direction": "outbound-api",
            "duration": None, "end_time": None, "forwarded_from": None, "from": sender, "from_formatted": sender,
            "group_sid": None, "parent_call_sid": None, "phone_number_sid": None, "price": None,
            "price_unit": "USD", "queue_time": "0", "sid": call_sid, "start_time": None, "status": "queued",
            "to": e164, "to_formatted": e164, "trunk_sid": None, "uri": f"{uri}.json",
            "subresource_uris": {"notifications": f"{uri}/Notifications.json",
                                 "recordings": f"{uri}/Recordings.json", "events": f"{uri}/Events.json"},
        }
        call = {"sid": call_sid, "to": e164, "from": sender, "twiml": twiml, "url": form.get("Url"),
                "method": form.get("Method", "POST"), "status_callback": form.get("StatusCallback"),
                "status_method": form.get("StatusCallbackMethod", "POST"),
                # Without StatusCallbackEvent, Twilio reports only the end of the call.
                "events": events or {"completed"}}
        self.sim.spawn(self.call_lifecycle(call))
        return web.json_response(resource, status=201)

    def call_params(self, call: dict[str, Any], status: str) -> dict[str, str]:
        return {"AccountSid": self.settings.account_sid, "ApiVersion": API_VERSION, "CallSid": call["sid"],
                "CallStatus": status, "Called": call["to"], "Caller": call["from"], "Direction": "outbound-api",
                "From": call["from"], "To": call["to"]}

    async def call_status(self, call: dict[str, Any], event: str, status: str, **extra: str) -> None:
        call["sequence"] = call.get("sequence", -1) + 1  # counts every event, reported or not, like Twilio
        if not call["status_callback"] or event not in call["events"]:
            return
        params = {**self.call_params(call, status), "CallbackSource": "call-progress-events",
                  "SequenceNumber": str(call["sequence"]), "Timestamp": _rfc2822(), **extra}
        await self.post("call_status", call["status_callback"], params, method=call["status_method"])

    async def call_lifecycle(self, call: dict[str, Any]) -> None:
        behaviour = self.sim.behaviour
        rule = behaviour.rule_for(call["to"])
        outcome = rule.voice or ("failed" if rule.fail else None)
        await behaviour.callback_pause()
        await self.call_status(call, "initiated", "initiated")
        if outcome != "failed":
            await behaviour.callback_pause()
            await self.call_status(call, "ringing", "ringing")
        if outcome:
            await behaviour.callback_pause()
            await self.call_status(call, "completed", outcome, CallDuration="0")
            return
        await behaviour.callback_pause()
        await self.call_status(call, "answered", "in-progress")
        await self.run_twiml(call, rule.reply_digits)
        await behaviour.callback_pause()
        seconds = str(behaviour.rng.randint(5, 40))
        await self.call_status(call, "completed", "completed", CallDuration=seconds)

    async def run_twiml(self, call: dict[str, Any], digits: str | None) -> None:
        """Fetch the call's TwiML when given a Url, and answer its <Gather> with the person's digits."""
        document_url = call["url"]
        twiml = call["twiml"]
        if twiml is None and document_url:
            await self.sim.behaviour.callback_pause()
            record = await self.post("twiml", document_url, self.call_params(call, "in-progress"),
                                     method=call["method"])
            twiml = record["response"] if record["status"] and 200 <= record["status"] < 300 else None
        if not twiml or not digits:
            return
        try:
            gather = ET.fromstring(twiml).find(".//Gather")
        except ET.ParseError:
            return
        if gather is None:
            return
        action = gather.get("action") or document_url
        if not action:
            return  # inline TwiML without an action has nowhere to send the digits
        action = urljoin(document_url or f"{self.sim.herald_url}/", action)
        num_digits = gather.get("numDigits")
        pressed = digits[: int(num_digits)] if num_digits and num_digits.isdigit() else digits
        await self.sim.behaviour.callback_pause()
        params = {**self.call_params(call, "in-progress"), "Digits": pressed, "FinishedOnKey": ""}
        await self.post("gather", action, params, method=gather.get("method", "POST"))


def setup(app: web.Application, sim: Sim) -> None:
    twilio = TwilioSim(sim)
    base = f"/twilio/{API_VERSION}/Accounts/{{sid}}"
    app.router.add_post(f"{base}/Messages.json", twilio.create_message, name="twilio.messages")
    app.router.add_post(f"{base}/Calls.json", twilio.create_call, name="twilio.calls")


async def inbound(sim: Sim, sender: str, text: str, to: str | None = None) -> dict[str, Any]:
    return await TwilioSim(sim).inbound(sender, text, to)
