"""The admin port: `/metrics`, `/health` and `/ready` on an aiohttp server of their own.

They are kept off the public port (provider webhooks, unsubscribe and document links), which faces the internet:
metrics describe traffic and providers, and probes and scrapers only need to reach the pod. The server starts and
stops with the worker (a `mode.Service` the Faust app runs after it has started) and binds
`HERALD_ADMIN_HOST`/`HERALD_ADMIN_PORT`, loopback unless a deployment opens it to its probes and Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from aiohttp import web
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST

from consumers.inbound.web import harden_responses
from consumers.observe.metrics import Metrics
from schemas.settings import Settings


def worker_ready(app: faust.App, lanes_ready: Callable[[], bool] = lambda: True) -> bool:
    """Readiness: the worker joined its consumer groups (the normal lane's, the critical lane's) and is not
    rebalancing."""
    return app.rebalancing_count > 0 and not app.rebalancing and lanes_ready()


def admin_application(metrics: Metrics, app_id: str, ready: Callable[[], bool]) -> web.Application:
    """The admin server's aiohttp application: metrics, liveness and readiness, with Herald's response headers."""

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
                lanes_ready: Callable[[], bool] = lambda: True) -> web.Application:
    """Run the admin server with `app`'s worker, on the admin host and port; returns its application."""
    application = admin_application(metrics, app.conf.id, lambda: worker_ready(app, lanes_ready))

    # Faust instantiates `@app.service` classes itself (with its loop and beacon), so the address is bound here.
    class Admin(AdminServer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(application, settings.admin_host, settings.admin_port, **kwargs)

    app.service(Admin)
    return application
