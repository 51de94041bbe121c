"""The admin port: `/metrics`, `/health` and `/ready` on an aiohttp server of their own, and the message timeline
(`/messages/{message_id}`, `/messages?event_id=…|idempotency_key=…`) behind `HERALD_ADMIN_TOKEN`.

They are kept off the public port (provider webhooks, unsubscribe and document links), which faces the internet:
metrics describe traffic and providers, and probes and scrapers only need to reach the pod. The server starts and
stops with the worker (a `mode.Service` the Faust app runs after it has started) and binds
`HERALD_ADMIN_HOST`/`HERALD_ADMIN_PORT`, loopback unless a deployment opens it to its probes and Prometheus.
The timeline answers with statuses (ids, types, providers, hashed recipients), so it also asks for a bearer token:
401 without the right one; 503 while no token is set (the worker then keeps no index).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import faust
from aiohttp import web
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr

from consumers.identity import key_message_ids
from consumers.inbound.web import harden_responses
from consumers.observe.metrics import Metrics
from consumers.observe.timeline import MessageTimeline, MessageTimelines, StatusTimeline
from schemas.settings import Settings

MAX_ID = 512  # longest id or key looked up; longer ones are no id Herald gave


def worker_ready(app: faust.App, lanes_ready: Callable[[], bool] = lambda: True) -> bool:
    """Readiness: the worker joined its consumer groups (the normal lane's, the critical lane's) and is not
    rebalancing."""
    return app.rebalancing_count > 0 and not app.rebalancing and lanes_ready()


def bearer_matches(header: str | None, token: SecretStr) -> bool:
    """Whether an `Authorization` header carries `Bearer <token>`. Both sides are hashed first, so the comparison
    takes the same time whatever was sent, its length included."""
    scheme, _, given = (header or "").strip().partition(" ")
    expected = hashlib.sha256(token.get_secret_value().encode()).digest()
    sent = hashlib.sha256(given.strip().encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(sent, expected) and scheme.lower() == "bearer"


def _error(status: int, error: str, detail: str, **headers: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers or None)


def add_timeline_views(application: web.Application, timeline: StatusTimeline | None,
                       token: SecretStr | None) -> None:
    """`GET /messages/{message_id}` and `GET /messages?event_id=…|idempotency_key=…[&tenant=…]`."""

    def refusal(request: web.Request) -> web.Response | None:
        if timeline is None or token is None:
            return _error(503, "timeline_disabled", "set HERALD_ADMIN_TOKEN to turn the message timeline on")
        if not bearer_matches(request.headers.get("Authorization"), token):
            return _error(401, "unauthorized", "send Authorization: Bearer <HERALD_ADMIN_TOKEN>",
                          **{"WWW-Authenticate": 'Bearer realm="herald-admin"'})
        return None

    def missing(what: str) -> web.Response:
        assert timeline is not None
        if not timeline.caught_up:  # not found *yet*: the index is still reading the topic
            return _error(503, "catching_up", f"no status of {what} indexed yet; the timeline is still reading "
                          "herald.status", **{"Retry-After": "5"})
        days = timeline.retention.total_seconds() / 86400
        return _error(404, "not_found", f"no status of {what} in herald.status over the last {days:g} days")

    def answer(model: MessageTimeline | MessageTimelines) -> web.Response:
        return web.Response(body=model.model_dump_json(), content_type="application/json")

    async def message_view(request: web.Request) -> web.Response:
        if (refused := refusal(request)) is not None:
            return refused
        assert timeline is not None
        message_id = request.match_info["message_id"]
        found = timeline.index.message(message_id) if len(message_id) <= MAX_ID else None
        return answer(found) if found else missing(f"message {message_id[:MAX_ID]}")

    async def messages_view(request: web.Request) -> web.Response:
        if (refused := refusal(request)) is not None:
            return refused
        assert timeline is not None
        query = request.query
        event_id, key, tenant = query.get("event_id"), query.get("idempotency_key"), query.get("tenant")
        if (event_id is None) == (key is None) or any(len(v) > MAX_ID for v in (event_id, key, tenant) if v):
            return _error(400, "bad_request", "give one of event_id or idempotency_key (and tenant with a key, "
                          f"optionally), each at most {MAX_ID} characters")
        if event_id is not None:
            found, what = timeline.index.by_event(event_id), f"event {event_id}"
        else:
            assert key is not None
            found, what = timeline.index.by_key(key, key_message_ids, tenant), f"idempotency key {key}"
        return answer(MessageTimelines(messages=found)) if found else missing(what)

    application.router.add_get("/messages/{message_id}", message_view)
    application.router.add_get("/messages", messages_view)


def admin_application(metrics: Metrics, app_id: str, ready: Callable[[], bool], *,
                      timeline: StatusTimeline | None = None, token: SecretStr | None = None) -> web.Application:
    """The admin server's aiohttp application: metrics, liveness, readiness and the message timeline (off without
    `timeline` and `token`), with Herald's response headers."""

    async def metrics_view(request: web.Request) -> web.Response:
        # prometheus_client's content type carries its own `charset`, which aiohttp refuses in `content_type=`.
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_view(request: web.Request) -> web.Response:
        """Liveness: the process serves requests."""
        return web.json_response({"status": "ok", "app": app_id})

    async def ready_view(request: web.Request) -> web.Response:
        is_ready = ready()
        return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)

    application = web.Application()
    application.router.add_get("/metrics", metrics_view)
    application.router.add_get("/health", health_view)
    application.router.add_get("/ready", ready_view)
    add_timeline_views(application, timeline, token)
    harden_responses(application)
    return application


class AdminServer(Service):
    """Serves an aiohttp application on `host:port` from the service's start to its stop."""

    def __init__(self, application: web.Application, host: str, port: int, **kwargs: Any) -> None:
        self.application = application
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        runner = web.AppRunner(self.application, access_log=None)
        await runner.setup()
        self._runner = runner  # set before the bind: a port in use still gets the runner cleaned up on stop
        await web.TCPSite(runner, self.host, self.port).start()
        self.log.info("admin server on %s:%s", self.host, self.port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def serve_admin(app: faust.App, settings: Settings, metrics: Metrics,
                lanes_ready: Callable[[], bool] = lambda: True,
                timeline: StatusTimeline | None = None) -> web.Application:
    """Run the admin server with `app`'s worker, on the admin host and port; returns its application."""
    application = admin_application(metrics, app.conf.id, lambda: worker_ready(app, lanes_ready),
                                    timeline=timeline, token=settings.admin_token)

    # Faust instantiates `@app.service` classes itself (with its loop and beacon), so the address is bound here.
    class Admin(AdminServer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(application, settings.admin_host, settings.admin_port, **kwargs)

    app.service(Admin)
    return application
