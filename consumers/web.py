"""Faust web views: metrics, liveness and readiness. Webhooks and tracking join them in later issues."""

from __future__ import annotations

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from consumers.metrics import Metrics


def register_views(app: faust.App, metrics: Metrics) -> None:
    @app.page("/metrics")
    async def metrics_view(web: View, request: Request) -> Response:
        return web.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health_view(web: View, request: Request) -> Response:
        """Liveness: the process serves requests."""
        return web.json({"status": "ok", "app": app.conf.id})

    @app.page("/ready")
    async def ready_view(web: View, request: Request) -> Response:
        """Readiness: the worker joined its consumer group and is not rebalancing."""
        ready = app.rebalancing_count > 0 and not app.rebalancing
        return web.json({"ready": ready}, status=200 if ready else 503)
