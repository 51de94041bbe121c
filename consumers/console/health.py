"""The console's health page (`/console/health`): per provider the circuit breaker, rate-limit waits, sends and
error rates; per lane the consumer lag by partition and the latency percentiles of event -> sent; per tenant's
status webhook endpoint this worker's outbox (waiting, paused) and outcomes. It refreshes
itself every 10 s (static/health.js fetches `/console/health/fragment`) and is whole without JavaScript."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from consumers.console.health_query import DEFAULT_WINDOW, LANES, RATE_WINDOWS, WINDOWS, Health, read_health
from consumers.console.views import HEADERS, context, fragment, page
from consumers.console.webhooks_health import OUTCOMES

REFRESH_SECONDS = 10


async def _read(request: web.Request) -> Health:
    ctx = context(request)
    window = request.query.get("window", DEFAULT_WINDOW)
    window = window if window in WINDOWS else DEFAULT_WINDOW
    index = ctx.timeline.index if ctx.timeline is not None else None
    # Off the event loop: the index is SQLite on disk, and the worker is sending meanwhile.
    return await asyncio.to_thread(read_health, ctx.metrics, index, ctx.extras["catalog"],
                                     ctx.settings.providers, ctx.clock(), window)


def _values(health: Health) -> dict[str, Any]:
    return {"health": health, "lanes": LANES, "rate_windows": RATE_WINDOWS, "windows": list(WINDOWS),
            "outcomes": OUTCOMES}


async def _health(request: web.Request) -> web.Response:
    health = await _read(request)
    return page(request, "health.html", title="Health", refresh=REFRESH_SECONDS, **_values(health))


async def _fragment(request: web.Request) -> web.Response:
    """The page's numbers alone, for the script that refreshes them."""
    health = await _read(request)
    return web.Response(text=fragment("health-body.html", **_values(health)), content_type="text/html",
                        headers={**HEADERS, "Cache-Control": "no-store"})


def routes() -> list[web.RouteDef]:
    return [web.get("/health", _health), web.get("/health/fragment", _fragment)]
