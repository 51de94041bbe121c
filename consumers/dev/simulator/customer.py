"""A business customer's webhook endpoint: the receiving side of Herald's webhook channel.

It checks the Standard Webhooks signature (https://www.standardwebhooks.com) with Herald's signing secrets (the
default ring and every tenant's: one endpoint plays every customer; any one signature that verifies will do),
keeps what it got (in the recorded requests, vendor "customer") and answers 204, or what behaviour says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from channels.providers.webhook import WebhookSettings
from channels.signatures import verify_standard_webhook
from channels.webhooks import lower_keys
from consumers.dev.simulator.behaviour import PAYLOAD, FaultDecision

if TYPE_CHECKING:
    from consumers.dev.simulator.app import Payload, Sim


def recipient(kind: str, payload: Payload) -> str | None:
    return None


def fault_response(fault: FaultDecision) -> web.Response:  # faults are not injected here; see customer_status
    return web.json_response({"error": fault.kind}, status=503)


class CustomerSim:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.settings = WebhookSettings()
        self.secrets = tuple(dict.fromkeys([*self.settings.default_ring(), *(
            s.get_secret_value() for ring in self.settings.tenant_secrets.values() for s in ring)]))

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = lower_keys(request.headers)
        if not any(verify_standard_webhook(secret, headers, body, now=int(self.sim.clock()))
                   for secret in self.secrets):
            return web.json_response({"error": "invalid signature"}, status=401)
        if not isinstance(request[PAYLOAD], dict | list):
            return web.json_response({"error": "body is not JSON"}, status=400)
        status = self.sim.config.customer_status
        if status == 204:
            return web.Response(status=204)
        if 200 <= status < 300:
            return web.json_response({"received": headers.get("webhook-id")}, status=status)
        return web.json_response({"error": "simulated failure"}, status=status)


def setup(app: web.Application, sim: Sim) -> None:
    customer = CustomerSim(sim)
    resource = app.router.add_resource("/customer/webhook{tail:(/.*)?}", name="customer.webhook")
    resource.add_route("POST", customer.receive)
