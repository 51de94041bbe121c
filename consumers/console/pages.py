"""The console's pages, in navigation order: each module's `routes()` returns its aiohttp route definitions."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from consumers.console import home

ROUTES: tuple[Callable[[], list[web.RouteDef]], ...] = (
    home.routes,
)
