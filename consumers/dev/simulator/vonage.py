"""Vonage SMS API (`/sms/json`), with signed delivery receipts (DLRs) and inbound messages.

Shapes and codes from https://developer.vonage.com/messaging/sms/guides/troubleshooting-sms (response and
`status` codes), https://developer.vonage.com/messaging/sms/guides/delivery-receipts (DLR fields, `err-code`)
and https://developer.vonage.com/en/getting-started/concepts/signing-messages (`timestamp`, `nonce`, `sig`).
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import phonenumbers
from aiohttp import BasicAuth, web
from multidict import MultiDict, MultiDictProxy

from channels.providers.sms import VonageSettings, vonage_signature
from channels.segments import sms_segments
from consumers.dev.simulator.behaviour import PAYLOAD, FaultDecision

if TYPE_CHECKING:
    from consumers.dev.simulator.app import Payload, Sim

PRICE = "0.03330000"
BALANCE = "15.53590000"
NETWORK = "23410"
# Per-recipient `fail` -> (DLR status, err-code): 3 "Absent Subscriber - Permanent", 2 "Absent Subscriber -
# Temporary" (the carrier kept trying until the message expired).
DLR_FAILURES = {"permanent": ("failed", "3"), "undelivered": ("expired", "2")}


def _fields(payload: Payload) -> dict[str, str]:
    if isinstance(payload, dict):
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items() if v is not None}
    if isinstance(payload, MultiDict | MultiDictProxy):
        return {k: payload[k] for k in dict.fromkeys(payload.keys())}
    return {}


def recipient(kind: str, payload: Payload) -> str | None:
    to = _fields(payload).get("to")
    return f"+{to}" if to and to.isdigit() else to


def _failed(status: str, text: str, http_status: int = 200) -> web.Response:
    return web.json_response({"message-count": "1", "messages": [{"status": status, "error-text": text}]},
                             status=http_status)


def fault_response(fault: FaultDecision) -> web.Response:
    if fault.kind == "rate_limit":
        response = _failed("1", "Throughput Rate Exceeded - please wait [ 1000 ] and retry", 429)
        response.headers["Retry-After"] = str(fault.retry_after or 1)
        return response
    if fault.kind == "timeout":
        return web.json_response({"title": "Gateway Timeout", "status": 504}, status=504)
    return _failed("5", "Internal Error", 500)


def _valid(msisdn: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(f"+{msisdn}", None))
    except phonenumbers.NumberParseException:
        return False


class VonageSim:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.settings = VonageSettings()

    def message_id(self) -> str:
        return self.sim.behaviour.hex_id(16).upper()

    async def send(self, request: web.Request) -> web.Response:
        fields = _fields(request[PAYLOAD])
        key, secret = fields.get("api_key"), fields.get("api_secret")
        if not key and not secret and request.headers.get("Authorization"):
            try:
                auth = BasicAuth.decode(request.headers["Authorization"])
                key, secret = auth.login, auth.password
            except ValueError:
                pass
        if not key:
            return _failed("2", "Missing api_key")
        if not secret:
            return _failed("2", "Missing api_secret")
        if key != self.settings.api_key or not secrets.compare_digest(
                secret.encode(), self.settings.api_secret.get_secret_value().encode()):
            return _failed("4", "Bad Credentials")
        for name in ("from", "to"):
            if not fields.get(name):
                return _failed("2", f"Missing {name} param")
        kind = fields.get("type", "text")
        text = fields.get("text", "")
        if kind in ("text", "unicode") and not text:
            return _failed("2", "Missing text param")
        to = fields["to"].removeprefix("+")
        if not to.isdigit() or not _valid(to):
            return _failed("3", "Invalid to address")
        if self.sim.behaviour.unroutable(to):
            return _failed("6", "Unroutable message - rejected")
        _, parts = sms_segments(text)
        ref = fields.get("client-ref")
        messages = []
        for _ in range(parts):
            part = {"to": to, "message-id": self.message_id(), "status": "0", "remaining-balance": BALANCE,
                    "message-price": PRICE, "network": NETWORK}
            if ref:
                part["client-ref"] = ref
            messages.append(part)
        report = fields.get("status-report-req", "1").lower() not in ("0", "false")
        callback = fields.get("callback") or f"{self.sim.herald_url}/webhooks/sms/vonage"
        self.sim.spawn(self.lifecycle(messages, fields["from"], callback if report else None, key))
        return web.json_response({"message-count": str(parts), "messages": messages})

    def signed(self, params: dict[str, str]) -> dict[str, str]:
        """Add `timestamp`, `nonce` and `sig` as Vonage's signed webhooks carry them."""
        params = {**params, "timestamp": str(int(self.sim.clock())), "nonce": str(uuid.uuid4())}
        params["sig"] = vonage_signature(self.settings.signature_secret.get_secret_value(), params,
                                         self.settings.signature_method)
        return params

    async def post(self, kind: str, url: str, params: dict[str, str]) -> dict[str, Any]:
        params = self.signed(params)
        if self.sim.config.vonage_callback_method == "GET":
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
            return await self.sim.callback("vonage", kind, url, method="GET", fields=params)
        return await self.sim.callback("vonage", kind, url, content=json.dumps(params).encode(),
                                       headers={"Content-Type": "application/json"}, fields=params)

    async def lifecycle(self, messages: list[dict[str, str]], sender: str, callback: str | None,
                        api_key: str) -> None:
        to = messages[0]["to"]
        rule = self.sim.behaviour.rule_for(f"+{to}")
        status, err = DLR_FAILURES[rule.fail] if rule.fail else ("delivered", "0")
        for part in messages:
            if callback is None:
                break
            await self.sim.behaviour.callback_pause()
            now = datetime.now(UTC)
            params = {"msisdn": to, "to": sender, "network-code": NETWORK, "messageId": part["message-id"],
                      "price": PRICE, "status": status, "scts": now.strftime("%y%m%d%H%M"), "err-code": err,
                      "api-key": api_key, "message-timestamp": now.strftime("%Y-%m-%d %H:%M:%S")}
            if "client-ref" in part:
                params["client-ref"] = part["client-ref"]
            await self.post("dlr", callback, params)
        if status == "delivered" and (text := self.sim.behaviour.reply_for(to, rule)):
            await self.sim.behaviour.callback_pause()
            await self.inbound(to, text, sender)

    async def inbound(self, sender: str, text: str, to: str | None = None) -> dict[str, Any]:
        """The person texts Herald's Vonage number: the inbound-message webhook."""
        to = (to or self.settings.sms_from.get("default", "15005550006")).removeprefix("+")
        words = text.split()
        params = {"msisdn": sender.removeprefix("+"), "to": to, "messageId": self.message_id(), "text": text,
                  "type": "text", "keyword": words[0].upper() if words else "", "api-key": self.settings.api_key,
                  "message-timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")}
        return await self.post("inbound", f"{self.sim.herald_url}/webhooks/sms/vonage", params)


def setup(app: web.Application, sim: Sim) -> None:
    vonage = VonageSim(sim)
    # Vonage takes the same request as a POST (form or JSON) or as a GET with a query string.
    resource = app.router.add_resource("/vonage/sms/json", name="vonage.sms")
    resource.add_route("POST", vonage.send)
    resource.add_route("GET", vonage.send)


async def inbound(sim: Sim, sender: str, text: str, to: str | None = None) -> dict[str, Any]:
    return await VonageSim(sim).inbound(sender, text, to)
