"""The status webhook registration API on the public port, authenticated like `POST /v1/events` (HERALD_API_KEYS):
the key decides the tenant, and a tenant sees and changes only its own registration (there is no tenant in the path).

- `PUT /v1/webhooks/status` `{"url", "statuses"?, "event_types"?, "description"?}`: 201 with the registration and
  its `secret` when it is new (the only time the secret is shown), 200 without it when it replaces the tenant's
  (the secrets stay);
- `GET /v1/webhooks/status`: 200 with the registration, never a secret; 404 when there is none;
- `DELETE /v1/webhooks/status`: 204; 404 when there is none;
- `POST /v1/webhooks/status/rotate`: 200 with the registration and a new `secret`; the old one keeps signing beside
  it (both in `webhook-signature`) for 24 hours (`previous_secret_expires_at`).

Refusals: 401 (no key, or an unknown one), 413 (a body over 16 KiB), 400 (not a JSON object), 422
`{"errors": [{field, error, detail}]}` (a URL that is not https, names credentials, a port outside
HERALD_WEBHOOK_PORTS or a non-public address, with HERALD_WEBHOOK_ALLOW_PRIVATE off; an unknown status or catalog
type; an unknown field), 503 (the broker did not take the change; retry). The URL is checked again, with its host
resolved, at every delivery (the webhook channel's SSRF guard).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import faust
import httpx
import orjson
from faust.web import Request, Response, View
from pydantic import ValidationError

from channels.providers.webhook import WebhookSettings, forbidden_address
from consumers.inbound.api import Answer, ApiKeys, json_object
from consumers.inbound.api import error_answer as _error
from consumers.inbound.web import BodyTooLarge, read_body, text_headers
from consumers.state.status_webhooks import Registrations
from schemas.catalog import Catalog
from schemas.settings import Settings
from schemas.subscriptions import StatusWebhook, StatusWebhookRequest

log = logging.getLogger(__name__)

PATH = "/v1/webhooks/status"
ROTATE_PATH = PATH + "/rotate"
MAX_BODY = 16 * 1024
READY_WITHIN = 10.0  # seconds for the registrations' store to be read whole before an answer is 503
JSON = "application/json"



def url_problem(url: str, config: WebhookSettings) -> str | None:
    """Why `url` cannot be a status webhook endpoint, or None. What needs DNS is left to the send-time guard."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "is not a URL"
    if parsed.scheme not in ({"https", "http"} if config.allow_private else {"https"}):
        return "must be https"
    if not parsed.host:
        return "has no host"
    if parsed.userinfo or parsed.fragment:
        return "must not carry credentials or a fragment"
    if config.allow_private:
        return None
    port = parsed.port or 443
    if port not in config.ports:
        return f"port {port} is not allowed (HERALD_WEBHOOK_PORTS)"
    host = parsed.host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return "names a non-public address"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return None
    return "names a non-public address" if forbidden_address(literal) else None


class StatusWebhookApi:
    """The registration API without the HTTP (see the module docstring); every method answers, none raises."""

    def __init__(self, keys: ApiKeys, registrations: Registrations, catalog: Catalog, config: WebhookSettings,
                 clock: Callable[[], datetime]) -> None:
        self.keys = keys
        self.registrations = registrations
        self.catalog = catalog
        self.config = config
        self.clock = clock

    async def ready(self) -> bool:
        """Whether the store is read whole (a worker just started reads it first): else a `put` would take an
        existing registration for none and replace its secret."""
        try:
            await asyncio.wait_for(self.registrations.store.ready(), READY_WITHIN)
        except Exception:
            log.exception("status webhook registrations not read")
            return False
        return True

    async def get(self, tenant: str) -> Answer:
        if not await self.ready():
            return _unavailable()
        registration = self.registrations.get(tenant)
        if registration is None:
            return _not_found()
        return Answer(200, self._shown(registration))

    async def put(self, tenant: str, body: bytes) -> Answer:
        if not await self.ready():
            return _unavailable()
        parsed = json_object(body)
        if isinstance(parsed, Answer):
            return parsed
        try:
            request = StatusWebhookRequest.model_validate(parsed)
        except ValidationError as exc:
            return Answer(422, {"errors": [{"field": ".".join(str(p) for p in e["loc"]) or None, "error": e["type"],
                                            "detail": e["msg"]} for e in exc.errors(include_input=False)]})
        errors = []
        if problem := url_problem(request.url, self.config):
            errors.append({"field": "url", "error": "invalid_url", "detail": f"the URL {problem}"})
        errors += [{"field": "event_types", "error": "unknown_type", "detail": f"{name!r} is not a catalog type"}
                   for name in request.event_types if self.catalog.get(name) is None]
        if errors:
            return Answer(422, {"errors": errors})
        try:
            registration, secret = await self.registrations.put(tenant, request)
        except Exception:
            log.exception("status webhook registration not stored", extra={"tenant": tenant})
            return _unavailable()
        log.info("status webhook registered", extra={"tenant": tenant, "host": httpx.URL(request.url).host,
                                                     "new": secret is not None})
        if secret is None:
            return Answer(200, self._shown(registration))
        return Answer(201, {**self._shown(registration), "secret": secret})

    async def delete(self, tenant: str) -> Answer:
        if not await self.ready():
            return _unavailable()
        try:
            deleted = await self.registrations.delete(tenant)
        except Exception:
            log.exception("status webhook registration not deleted", extra={"tenant": tenant})
            return _unavailable()
        if not deleted:
            return _not_found()
        log.info("status webhook deleted", extra={"tenant": tenant})
        return Answer(204, {})

    async def rotate(self, tenant: str) -> Answer:
        if not await self.ready():
            return _unavailable()
        try:
            rotated = await self.registrations.rotate(tenant)
        except Exception:
            log.exception("status webhook secret not rotated", extra={"tenant": tenant})
            return _unavailable()
        if rotated is None:
            return _not_found()
        registration, secret = rotated
        log.info("status webhook secret rotated", extra={"tenant": tenant})
        return Answer(200, {**self._shown(registration), "secret": secret})

    def _shown(self, registration: StatusWebhook) -> dict[str, Any]:
        shown: dict[str, Any] = registration.view(self.clock()).model_dump(mode="json")
        return shown


def _not_found() -> Answer:
    return _error(404, "not_found", "this tenant has no status webhook; PUT one")


def _unavailable() -> Answer:
    return _error(503, "unavailable", "the change could not be stored; retry", **{"Retry-After": "1"})


def register_status_webhook_views(app: faust.App, settings: Settings, registrations: Registrations, *,
                                  catalog: Catalog, clock: Callable[[], datetime],
                                  config: WebhookSettings | None = None) -> StatusWebhookApi | None:
    """The views when `HERALD_API_KEYS` names any key; else nothing (the paths answer 404)."""
    keys = ApiKeys.from_settings(settings)
    if not keys:
        return None
    api = StatusWebhookApi(keys, registrations, catalog, config or WebhookSettings(), clock)

    def tenant_of(request: Request) -> str | None:
        return api.keys.tenant(text_headers(request.headers).get("authorization"))

    def unauthorized(view: View) -> Response:
        return _respond(view, _error(401, "unauthorized", "send Authorization: Bearer <your API key>",
                                     **{"WWW-Authenticate": 'Bearer realm="herald"'}))

    class StatusWebhookView(View):
        async def get(self, request: Request) -> Response:
            tenant = tenant_of(request)
            return unauthorized(self) if tenant is None else _respond(self, await api.get(tenant))

        async def put(self, request: Request) -> Response:
            tenant = tenant_of(request)
            if tenant is None:
                return unauthorized(self)
            try:
                body = await read_body(request, MAX_BODY)
            except BodyTooLarge:
                return _respond(self, _error(413, "too_large", f"the body is over {MAX_BODY} bytes"))
            return _respond(self, await api.put(tenant, body))

        async def delete(self, request: Request) -> Response:
            tenant = tenant_of(request)
            return unauthorized(self) if tenant is None else _respond(self, await api.delete(tenant))

    class RotateView(View):
        async def post(self, request: Request) -> Response:
            tenant = tenant_of(request)
            return unauthorized(self) if tenant is None else _respond(self, await api.rotate(tenant))

    app.page(PATH)(StatusWebhookView)
    app.page(ROTATE_PATH)(RotateView)
    return api


def _respond(view: View, answer: Answer) -> Response:
    if answer.status == 204:
        return view.bytes(b"", status=204, headers=answer.headers)
    # no-store: an answer may hold a secret, which no cache may keep.
    return view.bytes(orjson.dumps(answer.body), status=answer.status,
                      headers={"Content-Type": JSON, "Cache-Control": "no-store", **answer.headers})
