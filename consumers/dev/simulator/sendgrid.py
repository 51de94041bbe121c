"""SendGrid v3 Mail Send (`/v3/mail/send`), with the signed Event Webhook (ECDSA, like SendGrid's).

Shapes and messages from https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send,
https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors (400 messages and fields),
https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors (error envelope) and
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event (event fields, custom_args merged in).
"""

from __future__ import annotations

import json
import re
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from channels.providers.sendgrid import DEV_WEBHOOK_PRIVATE_KEY, SIGNATURE_HEADER, TIMESTAMP_HEADER, SendgridSettings
from channels.providers.sendgrid import sendgrid_signature as sign
from consumers.dev.simulator.behaviour import PAYLOAD, FaultDecision

if TYPE_CHECKING:
    from consumers.dev.simulator.app import Payload, Sim

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."
BOUNCE_DOMAIN = "bounce.example"
ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MESSAGES = {
    "personalizations": "The personalization block is required and must have at least one personalization.",
    "to": "The to array is required for all personalization objects, and must have at least one email object "
          "with a valid email address.",
    "email": "Does not contain a valid address.",
    "from": "The from object must be provided for every email send. It is an object that requires the email "
            "parameter, but may also contain a name parameter.  e.g. {\"email\" : \"example@example.com\"}  or "
            "{\"email\" : \"example@example.com\", \"name\" : \"Example Recipient\"}.",
    "from_invalid": "The from email does not contain a valid address.",
    "subject": "The subject is required. You can get around this requirement if you use a template with a "
               "subject defined or if every personalization has a subject defined.",
    "content": "Unless a valid template_id is provided, the content parameter is required. There must be at least "
               "one defined content block. We typically suggest both text/plain and text/html blocks are "
               "included, but only one block is required.",
    "content_value": "The content value must be a string at least one character in length.",
    "content_type": "The content type must be a string at least one character in length.",
    "content_order": "If present, text/plain and text/html may only be provided in this order: text/plain, "
                     "text/html.",
}


def _errors(status: int, errors: list[dict[str, Any]]) -> web.Response:
    return web.json_response({"errors": errors}, status=status)


def _problem(key: str, field: str | None, anchor: str) -> dict[str, Any]:
    return {"message": MESSAGES[key], "field": field, "help": HELP + anchor}


def fault_response(fault: FaultDecision) -> web.Response:
    if fault.kind == "rate_limit":
        response = _errors(429, [{"field": None, "message": "too many requests"}])
        response.headers["Retry-After"] = str(fault.retry_after or 1)
        response.headers["X-RateLimit-Limit"] = "600"
        response.headers["X-RateLimit-Remaining"] = "0"
        return response
    if fault.kind == "timeout":
        return _errors(504, [{"field": None, "message": "gateway timeout"}])
    return _errors(500, [{"field": None, "message": "internal error", "help": None}])


def recipient(kind: str, payload: Payload) -> str | None:
    if not isinstance(payload, dict):
        return None
    try:
        return str(payload["personalizations"][0]["to"][0]["email"])
    except (KeyError, IndexError, TypeError):
        return None


def _addresses(items: Any) -> list[str] | None:
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return None
    return [str(i.get("email") or "") for i in items]


def validate(body: Any) -> list[dict[str, Any]]:
    """Every problem SendGrid would report for this Mail Send body (it reports them all at once)."""
    if not isinstance(body, dict):
        return [{"message": "Bad Request", "field": None, "help": None}]
    problems: list[dict[str, Any]] = []
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append(_problem("personalizations", "personalizations", "personalizations"))
        personalizations = []
    for i, p in enumerate(personalizations):
        to = _addresses(p.get("to")) if isinstance(p, dict) else None
        if not to:
            problems.append(_problem("to", f"personalizations.{i}.to", "personalizations.to"))
            continue
        for n, address in enumerate(to):
            if not ADDRESS.match(address):
                problems.append(_problem("email", f"personalizations.{i}.to.{n}.email", "personalizations.to"))
        for kind in ("cc", "bcc"):
            for n, address in enumerate(_addresses(p.get(kind, [])) or []):
                if not ADDRESS.match(address):
                    problems.append(_problem("email", f"personalizations.{i}.{kind}.{n}.email",
                                             f"personalizations.{kind}"))
    sender = body.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        problems.append(_problem("from", "from.email", "from"))
    elif not ADDRESS.match(str(sender["email"])):
        problems.append(_problem("from_invalid", "from.email", "from"))
    template = body.get("template_id")
    every_subject = bool(personalizations) and all(isinstance(p, dict) and p.get("subject")
                                                   for p in personalizations)
    if not template and not body.get("subject") and not every_subject:
        problems.append(_problem("subject", "subject", "subject"))
    content = body.get("content")
    if not template:
        if not isinstance(content, list) or not content:
            problems.append(_problem("content", "content", "content"))
        else:
            types = []
            for n, block in enumerate(content):
                block = block if isinstance(block, dict) else {}
                if not isinstance(block.get("type"), str) or not block["type"]:
                    problems.append(_problem("content_type", f"content.{n}.type", "content.type"))
                if not isinstance(block.get("value"), str) or not block["value"]:
                    problems.append(_problem("content_value", f"content.{n}.value", "content.value"))
                types.append(block.get("type"))
            if "text/html" in types and "text/plain" in types and types.index("text/html") < types.index("text/plain"):
                problems.append(_problem("content_order", "content", "content.type"))
    return problems


class SendgridSim:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.settings = SendgridSettings()

    async def send(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        key = self.settings.api_key.get_secret_value()
        if not auth.startswith("Bearer ") or not secrets.compare_digest(auth[7:].encode(), key.encode()):
            return _errors(401, [{"field": None, "message": "The provided authorization grant is invalid, expired, "
                                  "or revoked", "help": None}])
        body = request[PAYLOAD]
        problems = validate(body)
        if problems:
            return _errors(400, problems)
        message_id = self.sim.behaviour.token(22, URL_SAFE)
        self.sim.spawn(self.lifecycle(message_id, body))
        return web.Response(status=202, headers={"X-Message-Id": message_id})

    # --- Event Webhook -------------------------------------------------------------------------------------------

    async def post(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        body = json.dumps(events, separators=(",", ":")).encode()
        timestamp = str(int(self.sim.clock()))
        headers = {"Content-Type": "application/json", "User-Agent": "SendGrid Event API",
                   SIGNATURE_HEADER: sign(DEV_WEBHOOK_PRIVATE_KEY, timestamp, body), TIMESTAMP_HEADER: timestamp}
        return await self.sim.callback("sendgrid", "events", f"{self.sim.herald_url}/webhooks/email/sendgrid",
                                       content=body, headers=headers, fields=events)

    def event(self, name: str, email: str, sg_message_id: str, extra: dict[str, Any]) -> dict[str, Any]:
        return {"email": email, "timestamp": int(self.sim.clock()), "event": name,
                "sg_event_id": self.sim.behaviour.token(22, URL_SAFE), "sg_message_id": sg_message_id, **extra}

    async def lifecycle(self, message_id: str, body: dict[str, Any]) -> None:
        behaviour = self.sim.behaviour
        base: dict[str, Any] = dict(body.get("custom_args") or {})
        categories = body.get("categories")
        if categories:
            base["category"] = categories
        first, second, engaged = [], [], []
        n = 0
        for p in body["personalizations"]:
            args = {**base, **(p.get("custom_args") or {})}
            for kind in ("to", "cc", "bcc"):
                for email in _addresses(p.get(kind, [])) or []:
                    sg_id = f"{message_id}.filterdrecv-sim-{behaviour.hex_id(8)}-{n}-{behaviour.hex_id(8).upper()}.0"
                    n += 1
                    smtp = {"smtp-id": f"<{message_id}@ismtpd-sim>"}
                    rule = behaviour.rule_for(email)
                    domain = email.rpartition("@")[2].lower()
                    if rule.fail == "undelivered":
                        first.append(self.event("dropped", email, sg_id, {**smtp, "reason": "Bounced Address",
                                                                          "status": "5.0.0", **args}))
                        continue
                    first.append(self.event("processed", email, sg_id, {**smtp, **args}))
                    if rule.fail == "permanent" or domain == BOUNCE_DOMAIN:
                        second.append(self.event("bounce", email, sg_id, {
                            **smtp, "type": "bounce", "status": "5.1.1", "bounce_classification": "Invalid Address",
                            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
                            "tls": 1, **args}))
                        continue
                    second.append(self.event("delivered", email, sg_id, {
                        **smtp, "response": "250 2.0.0 OK", "ip": "168.1.1.1", "tls": 1, **args}))
                    engagement = {"ip": "192.0.2.10", "useragent": "Mozilla/5.0 (Herald simulator)"}
                    if rule.open:
                        engaged.append(self.event("open", email, sg_id, {**engagement, "sg_machine_open": False,
                                                                         **args}))
                    if rule.click:
                        engaged.append(self.event("click", email, sg_id, {
                            **engagement, "url": rule.click, "url_offset": {"index": 0, "type": "html"}, **args}))
        for batch in (first, second, engaged):
            if batch:
                await behaviour.callback_pause()
                await self.post(batch)


def setup(app: web.Application, sim: Sim) -> None:
    sendgrid = SendgridSim(sim)
    app.router.add_post("/sendgrid/v3/mail/send", sendgrid.send, name="sendgrid.mail")
