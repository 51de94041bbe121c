"""The provider simulator: one aiohttp app with every vendor's request side, fault injection and signed callbacks.

Routes: `/{vendor}/…` (the vendors' own paths under a prefix; Herald's providers use `{HERALD_SIM_URL}/{vendor}`
as their base URL), `/customer/webhook` (a business customer's endpoint for the webhook channel) and the
control API under `/_sim/` (health, recorded requests and callbacks, configuration, reset, simulated inbound).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import httpx
from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from pydantic import ValidationError

from consumers.dev.simulator import customer, fcm, meta, sendgrid, twilio, vonage
from consumers.dev.simulator.behaviour import PAYLOAD, Behaviour, SimConfig
from schemas.settings import Settings

log = logging.getLogger("herald.simulator")

VENDORS: dict[str, ModuleType] = {"twilio": twilio, "vonage": vonage, "meta": meta, "fcm": fcm,
                                  "sendgrid": sendgrid, "customer": customer}
# Request fields never recorded: credentials and signatures.
SECRET_FIELDS = frozenset({"api_key", "api_secret", "sig", "password", "auth_token", "access_token"})
IDEMPOTENCY_HEADERS = ("Idempotency-Key", "I-Twilio-Idempotency-Token", "X-Idempotency-Key", "webhook-id")
RECORD_LIMIT = 10_000  # recorded requests and callbacks kept, oldest dropped first
RESPONSE_KEEP = 4_000  # characters of Herald's answer kept per callback (TwiML, errors)

Payload = dict[str, Any] | MultiDict[str] | MultiDictProxy[str] | list[Any] | None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_fields(payload: Payload) -> dict[str, Any]:
    """The request's fields for the record, without credentials."""
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k not in SECRET_FIELDS}
    if isinstance(payload, MultiDict | MultiDictProxy):
        out: dict[str, Any] = {}
        for key in dict.fromkeys(payload.keys()):
            if key in SECRET_FIELDS:
                continue
            values = payload.getall(key)
            out[key] = values[0] if len(values) == 1 else list(values)
        return out
    return {} if payload is None else {"body": payload}


class Sim:
    """The simulator's live state: behaviour, what it received, what it called back, open WhatsApp windows."""

    def __init__(self, config: SimConfig, settings: Settings) -> None:
        self.settings = settings
        self.initial_config = config
        self.behaviour = Behaviour(config)
        self.requests: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.whatsapp_inbound: dict[str, float] = {}  # wa_id -> epoch seconds of the person's last message
        self.tasks: set[asyncio.Task[None]] = set()
        self.client: httpx.AsyncClient | None = None
        self.clock: Callable[[], float] = time.time
        self._ids = 0

    @property
    def config(self) -> SimConfig:
        return self.behaviour.config

    @property
    def herald_url(self) -> str:
        return (self.config.herald_url or self.settings.public_url).rstrip("/")

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    # --- recording ---------------------------------------------------------------------------------------------

    def record_request(self, vendor: str, kind: str, recipient: str | None, fields: dict[str, Any],
                       idempotency_key: str | None) -> dict[str, Any]:
        record = {"id": self.next_id(), "vendor": vendor, "kind": kind, "recipient": recipient, "fields": fields,
                  "idempotency_key": idempotency_key, "status": None, "received_at": now_iso()}
        self._append(self.requests, record)
        return record

    @staticmethod
    def _append(records: list[dict[str, Any]], record: dict[str, Any]) -> None:
        records.append(record)
        if len(records) > RECORD_LIMIT:
            del records[: len(records) - RECORD_LIMIT]

    def reset(self) -> None:
        """Forget everything and go back to the start-up configuration; pending callbacks are cancelled."""
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()
        self.requests.clear()
        self.callbacks.clear()
        self.whatsapp_inbound.clear()
        self.behaviour = Behaviour(self.initial_config)

    # --- background work -----------------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a message's callbacks in the background: the request that caused them is never blocked."""
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _guard(coro: Awaitable[None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:  # a broken callback chain must never take the server down
            log.exception("simulator: a callback chain failed")

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait until no callback chain is running (tests)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.tasks and asyncio.get_running_loop().time() < deadline:
            await asyncio.wait(set(self.tasks), timeout=max(0.0, deadline - asyncio.get_running_loop().time()))

    async def callback(self, vendor: str, kind: str, url: str, *, method: str = "POST", content: bytes = b"",
                       headers: Mapping[str, str] | None = None, fields: Any = None) -> dict[str, Any]:
        """Call Herald (or any URL) back like the vendor: retried with backoff until accepted; always recorded.

        `fields` is what the record shows (the parsed form or JSON); `content` is sent as is.
        """
        record: dict[str, Any] = {"id": self.next_id(), "vendor": vendor, "kind": kind, "method": method,
                                  "url": url, "fields": fields, "attempts": 0, "status_codes": [],
                                  "status": None, "error": None, "response": None, "sent_at": now_iso()}
        self._append(self.callbacks, record)
        if self.client is None:
            record["error"] = "simulator not started"
            return record
        backoff = self.config.callback_backoff_ms / 1000
        for attempt in range(self.config.callback_retries + 1):
            if attempt:
                await asyncio.sleep(backoff * 2 ** (attempt - 1))
            record["attempts"] = attempt + 1
            try:
                response = await self.client.request(method, url, content=content or None,
                                                     headers=dict(headers or {}))
            except httpx.HTTPError as exc:
                record["error"] = type(exc).__name__
                record["status_codes"].append(None)
                continue
            record["status"] = response.status_code
            record["status_codes"].append(response.status_code)
            record["response"] = response.text[:RESPONSE_KEEP]
            record["error"] = None
            if response.is_success:
                break
            if 400 <= response.status_code < 500 and response.status_code not in (408, 425, 429):
                break  # Herald refused it (bad signature, unknown message): retrying changes nothing
        return record


# --- the aiohttp app ---------------------------------------------------------------------------------------------

SIM_KEY = web.AppKey("sim", Sim)


async def read_payload(request: web.Request) -> Payload:
    """The request's fields: JSON body, form body or query string (Vonage takes all three)."""
    if request.method == "GET":
        return MultiDict(request.query)
    if request.content_type == "application/json":
        try:
            payload: Payload = await request.json()
        except ValueError:
            return None
        return payload
    form = MultiDict(request.query)
    form.extend((k, v) for k, v in (await request.post()).items() if isinstance(v, str))
    return form


@web.middleware
async def vendor_middleware(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Parse and record every vendor request, then inject latency and faults before the vendor handler."""
    name = request.match_info.route.name or ""
    vendor, _, kind = name.partition(".")
    module = VENDORS.get(vendor)
    if module is None:
        return await handler(request)
    sim = request.app[SIM_KEY]
    payload = await read_payload(request)
    request[PAYLOAD] = payload
    recipient = module.recipient(kind, payload)
    key = next((v for h in IDEMPOTENCY_HEADERS if (v := request.headers.get(h))), None)
    record = sim.record_request(vendor, kind, recipient, public_fields(payload), key)
    response: web.StreamResponse | None = None
    if vendor != "customer":
        await sim.behaviour.request_latency()
        fault = sim.behaviour.draw_fault()
        if fault is not None:
            if fault.kind == "timeout":
                await asyncio.sleep(sim.config.timeout_hold_s)
            response = module.fault_response(fault)
    if response is None:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            record["status"] = exc.status
            raise
    record["status"] = response.status
    return response


def _filtered(records: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
    keys = ("vendor", "kind", "recipient")
    return [r for r in records if all(query.get(k) in (None, "", r.get(k)) for k in keys)]


async def health(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    return web.json_response({"status": "ok", "vendors": sorted(v for v in VENDORS if v != "customer"),
                              "herald_url": sim.herald_url, "pending_callbacks": len(sim.tasks)})


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response(_filtered(request.app[SIM_KEY].requests, request.query))


async def list_callbacks(request: web.Request) -> web.Response:
    return web.json_response(_filtered(request.app[SIM_KEY].callbacks, request.query))


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM_KEY].config.model_dump(mode="json"))


async def post_config(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        patch = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    if not isinstance(patch, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    try:
        sim.behaviour.update(patch)
    except ValidationError as exc:
        return web.json_response({"error": "invalid configuration",
                                  "details": json.loads(exc.json(include_url=False, include_input=False))},
                                 status=400)
    return web.json_response(sim.config.model_dump(mode="json"))


async def post_reset(request: web.Request) -> web.Response:
    request.app[SIM_KEY].reset()
    return web.json_response({"status": "reset"})


INBOUND_VENDORS = ("twilio", "vonage", "meta")


async def post_inbound(request: web.Request) -> web.Response:
    """`{"vendor": "meta", "from": "+34600111222", "text": "Hola"}`: the person writes first (opens a window)."""
    sim = request.app[SIM_KEY]
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("vendor") not in INBOUND_VENDORS or not body.get("from") \
            or not isinstance(body.get("text"), str):
        return web.json_response({"error": f"need vendor ({', '.join(INBOUND_VENDORS)}), from and text"},
                                 status=400)
    module = VENDORS[body["vendor"]]
    record = await module.inbound(sim, str(body["from"]), body["text"], body.get("to"))
    return web.json_response(record)


async def _client_ctx(app: web.Application) -> AsyncIterator[None]:
    sim = app[SIM_KEY]
    # One shared client for every callback (Herald may be slow; it is never waited on by a vendor request).
    sim.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False,
                                   headers={"User-Agent": "HeraldSim/0.1"})
    yield
    for task in list(sim.tasks):
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*sim.tasks, return_exceptions=True)
    await sim.client.aclose()
    sim.client = None


def create_sim_app(config: SimConfig, settings: Settings) -> web.Application:
    """The simulator as an aiohttp application (serve it with `SimServer` or `run_sim`)."""
    app = web.Application(middlewares=[vendor_middleware], client_max_size=32 * 1024 * 1024)
    sim = Sim(config, settings)
    app[SIM_KEY] = sim
    for module in VENDORS.values():
        module.setup(app, sim)
    app.router.add_get("/_sim/health", health)
    app.router.add_get("/_sim/requests", list_requests)
    app.router.add_get("/_sim/callbacks", list_callbacks)
    app.router.add_get("/_sim/config", get_config)
    app.router.add_post("/_sim/config", post_config)
    app.router.add_post("/_sim/reset", post_reset)
    app.router.add_post("/_sim/inbound", post_inbound)
    app.cleanup_ctx.append(_client_ctx)
    return app


class SimServer:
    """The simulator on a TCP port, started and stopped in-process (tests, `herald dev`). Port 0 picks one."""

    def __init__(self, settings: Settings | None = None, config: SimConfig | None = None, *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings or Settings()
        self.config = config or SimConfig()
        self.host = host
        self.port = port
        self.app = create_sim_app(self.config, self.settings)
        self._runner: web.AppRunner | None = None

    @property
    def sim(self) -> Sim:
        return self.app[SIM_KEY]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        log.info("provider simulator listening on %s, calling Herald back at %s", self.url, self.sim.herald_url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def run_sim(settings: Settings, host: str = "127.0.0.1", port: int | None = None,
                  config: SimConfig | None = None) -> None:
    """Serve the simulator until cancelled (`herald sim`). The port defaults to `settings.sim_port`."""
    server = SimServer(settings, config, host=host, port=settings.sim_port if port is None else port)
    await server.start()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
