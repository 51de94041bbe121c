"""Faust web views: metrics and health. Webhooks and tracking join them in later issues."""

from __future__ import annotations

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from consumers.metrics import Metrics


def register_views(app: faust.App, metrics: Metrics) -> None:
    @app.page("/metrics")
    async def metrics_view(web: View, request: Request) -> Response:
        return web.bytes(metrics.render(), content_type=CONTENT_TYPE_LATEST)

    @app.page("/health")
    async def health_view(web: View, request: Request) -> Response:
        return web.json({"status": "ok", "app": app.conf.id})
