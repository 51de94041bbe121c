"""Meta WhatsApp Cloud API (`/{version}/{phone-number-id}/messages`), with signed status and message webhooks.

Shapes and codes from https://developers.facebook.com/docs/graph-api/guides/error-handling (error envelope),
https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes (131026, 131047, 131049, 130429,
131000), https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages (send response) and
https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/
(the `whatsapp_business_account` envelope, `statuses`, `errors`, `biz_opaque_callback_data`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from typing import TYPE_CHECKING, Any

import phonenumbers
from aiohttp import web

from channels.providers.whatsapp import MetaSettings
from channels.signatures import meta_signature
from consumers.dev.simulator.behaviour import PAYLOAD, FaultDecision

if TYPE_CHECKING:
    from consumers.dev.simulator.app import Payload, Sim

WABA_ID = "102290129340398"
DISPLAY_PHONE = "15550783881"
WINDOW_SECONDS = 24 * 3600
MAX_TEXT = 4096
ERROR_CODES_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
MESSAGE_TYPES = ("audio", "contacts", "document", "image", "interactive", "location", "reaction", "sticker",
                 "template", "text", "video")
# Types a business may send outside the 24-hour customer-service window.
WINDOW_FREE = frozenset({"template"})
VERSION = re.compile(r"^v\d+\.\d+$")
ERRORS = {
    131026: ("Message undeliverable", "Unable to deliver message. Reasons can include: the recipient phone number "
             "is not a WhatsApp phone number; the recipient has not accepted the new Terms of Service."),
    131047: ("Re-engagement message", "Message failed to send because more than 24 hours have passed since the "
             "customer last replied to this number."),
    131049: ("This message was not delivered to maintain healthy ecosystem engagement.",
             "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."),
}


def fbtrace_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(9)).decode()


def _error(status: int, code: int, message: str, *, type_: str = "OAuthException", details: str | None = None,
           subcode: int | None = None) -> web.Response:
    """The Graph API error envelope."""
    error: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = fbtrace_id()
    return web.json_response({"error": error}, status=status)


def fault_response(fault: FaultDecision) -> web.Response:
    if fault.kind == "rate_limit":
        response = _error(429, 130429, "(#130429) Rate limit hit",
                          details="Cloud API message throughput has been reached.")
        response.headers["Retry-After"] = str(fault.retry_after or 1)
        return response
    if fault.kind == "timeout":
        return web.json_response({"error": {"message": "Gateway Timeout", "code": 504}}, status=504)
    return _error(500, 131000, "(#131000) Something went wrong", details="Something went wrong.")


def recipient(kind: str, payload: Payload) -> str | None:
    to = payload.get("to") if isinstance(payload, dict) else None
    if not isinstance(to, str):
        return None
    digits = to.removeprefix("+")
    return f"+{digits}" if digits.isdigit() else to


def _valid(wa_id: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(f"+{wa_id}", None))
    except phonenumbers.NumberParseException:
        return False


def _check_content(body: dict[str, Any], kind: str) -> str | None:
    """Meta's `(#100)` message for an invalid content object, or None."""
    content = body.get(kind)
    if not isinstance(content, dict):
        return f"(#100) The parameter {kind} is required."
    if kind == "text":
        text = content.get("body")
        if not isinstance(text, str) or not text:
            return "(#100) The parameter text['body'] is required."
        if len(text) > MAX_TEXT:
            return f"(#100) Param text['body'] must be at most {MAX_TEXT} characters long."
    elif kind == "template":
        if not isinstance(content.get("name"), str) or not content["name"]:
            return "(#100) The parameter template['name'] is required."
        language = content.get("language")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str) or not language["code"]:
            return "(#100) The parameter template['language']['code'] is required."
        components = content.get("components", [])
        if not isinstance(components, list) or not all(isinstance(c, dict) and c.get("type") for c in components):
            return "(#100) Param template['components'] must be a list of objects with a type."
    return None


class MetaSim:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.settings = MetaSettings()

    def wamid(self) -> str:
        raw = b"\x15\x02\x00\x11\x18\x12" + self.sim.behaviour.hex_id(18).upper().encode() + b"\x00"
        return "wamid." + base64.b64encode(raw).decode()

    def window_open(self, wa_id: str) -> bool:
        last = self.sim.whatsapp_inbound.get(wa_id)
        return last is not None and self.sim.clock() - last < WINDOW_SECONDS

    async def send(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        token = self.settings.access_token.get_secret_value()
        if not auth.startswith("Bearer ") or not secrets.compare_digest(auth[7:].encode(), token.encode()):
            return _error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        version, phone_id = request.match_info["version"], request.match_info["phone_number_id"]
        if not VERSION.match(version) or phone_id != self.settings.phone_number_id:
            return _error(400, 100, f"Unsupported post request. Object with ID '{phone_id}' does not exist, cannot "
                          "be loaded due to missing permissions, or does not support this operation.",
                          type_="GraphMethodException", subcode=33)
        body = request[PAYLOAD]
        if not isinstance(body, dict):
            return _error(400, 100, "(#100) The parameter messaging_product is required.")
        product = body.get("messaging_product")
        if product is None:
            return _error(400, 100, "(#100) The parameter messaging_product is required.")
        if product != "whatsapp":
            return _error(400, 100, f'(#100) Param messaging_product must be one of {{WHATSAPP}} - got "{product}".')
        to = body.get("to")
        if not isinstance(to, str) or not to:
            return _error(400, 100, "(#100) The parameter to is required.")
        wa_id = to.removeprefix("+")
        if not wa_id.isdigit() or not _valid(wa_id):
            return _error(400, 100, "(#100) Invalid parameter", details="Recipient phone number not valid.")
        kind = body.get("type", "text")
        if kind not in MESSAGE_TYPES:
            allowed = ", ".join(t.upper() for t in MESSAGE_TYPES)
            return _error(400, 100, f'(#100) Param type must be one of {{{allowed}}} - got "{kind}".')
        if (problem := _check_content(body, kind)) is not None:
            return _error(400, 100, problem)
        if self.sim.behaviour.unroutable(wa_id):
            title, details = ERRORS[131026]
            return _error(400, 131026, f"(#131026) {title}", details=details)
        outside_window = kind not in WINDOW_FREE and not self.window_open(wa_id)
        if outside_window and self.sim.config.meta_reengagement == "sync":
            title, details = ERRORS[131047]
            return _error(400, 131047, f"(#131047) {title}", details=details)
        wamid = self.wamid()
        message: dict[str, str] = {"id": wamid}
        if kind == "template":
            message["message_status"] = "accepted"
        opaque = body.get("biz_opaque_callback_data")
        self.sim.spawn(self.lifecycle(wamid, wa_id, opaque if isinstance(opaque, str) else None,
                                      failure=131047 if outside_window else None))
        return web.json_response({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}],
                                  "messages": [message]})

    # --- webhooks ------------------------------------------------------------------------------------------------

    def envelope(self, value: dict[str, Any]) -> dict[str, Any]:
        value = {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": DISPLAY_PHONE,
                              "phone_number_id": self.settings.phone_number_id}, **value}
        return {"object": "whatsapp_business_account",
                "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}]}

    async def post(self, kind: str, envelope: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(envelope, separators=(",", ":")).encode()
        secret = self.settings.app_secret.get_secret_value()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(secret, body),
                   "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}
        return await self.sim.callback("meta", kind, f"{self.sim.herald_url}/webhooks/whatsapp/meta",
                                       content=body, headers=headers, fields=envelope)

    def status(self, wamid: str, wa_id: str, status: str, opaque: str | None, conversation: str,
               error: int | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(self.sim.clock())),
                                "recipient_id": wa_id}
        if opaque is not None:
            item["biz_opaque_callback_data"] = opaque
        if error is not None:
            title, details = ERRORS[error]
            item["errors"] = [{"code": error, "title": title, "message": title, "error_data": {"details": details},
                               "href": ERROR_CODES_URL}]
        elif status in ("sent", "delivered"):
            item["conversation"] = {"id": conversation, "origin": {"type": "utility"}}
            if status == "sent":
                item["conversation"]["expiration_timestamp"] = str(int(self.sim.clock()) + WINDOW_SECONDS)
            item["pricing"] = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"}
        return item

    async def lifecycle(self, wamid: str, wa_id: str, opaque: str | None, failure: int | None) -> None:
        behaviour = self.sim.behaviour
        rule = behaviour.rule_for(f"+{wa_id}")
        conversation = behaviour.hex_id(32)
        if failure is None and rule.fail == "permanent":
            failure = 131026
        steps: list[tuple[str, int | None]]
        if failure is not None:
            steps = [("failed", failure)]
        elif rule.fail == "undelivered":
            steps = [("sent", None), ("failed", 131049)]
        else:
            steps = [("sent", None), ("delivered", None)]
            if rule.open is not False:
                steps.append(("read", None))
        for status, error in steps:
            await behaviour.callback_pause()
            item = self.status(wamid, wa_id, status, opaque, conversation, error)
            await self.post("status", self.envelope({"statuses": [item]}))
        if failure is None and rule.fail is None and (text := behaviour.reply_for(wa_id, rule)):
            await behaviour.callback_pause()
            await self.inbound(wa_id, text, context=wamid)

    async def inbound(self, sender: str, text: str, context: str | None = None) -> dict[str, Any]:
        """The person writes (or answers a message, with `context`): opens the 24-hour window."""
        wa_id = sender.removeprefix("+")
        self.sim.whatsapp_inbound[wa_id] = self.sim.clock()
        message: dict[str, Any] = {"from": wa_id, "id": self.wamid(), "timestamp": str(int(self.sim.clock())),
                                   "type": "text", "text": {"body": text}}
        if context:
            message["context"] = {"from": DISPLAY_PHONE, "id": context}
        value = {"contacts": [{"profile": {"name": "Sim User"}, "wa_id": wa_id}], "messages": [message]}
        return await self.post("inbound", self.envelope(value))


def setup(app: web.Application, sim: Sim) -> None:
    meta = MetaSim(sim)
    app.router.add_post("/meta/{version}/{phone_number_id}/messages", meta.send, name="meta.messages")


async def inbound(sim: Sim, sender: str, text: str, to: str | None = None) -> dict[str, Any]:
    return await MetaSim(sim).inbound(sender, text)
