"""The console's pages, in navigation order: each module's `routes()` returns its aiohttp route definitions."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from consumers.console import deadletters, find, health, rates, tail, templates_page

ROUTES: tuple[Callable[[], list[web.RouteDef]], ...] = (
    find.routes,
    tail.routes,
    templates_page.routes,
    deadletters.routes,
    health.routes,
    rates.routes,
)
