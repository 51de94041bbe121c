"""The console's landing page until the find page takes `/console/`: what each page is for."""

from __future__ import annotations

from aiohttp import web

from consumers.console.views import page


async def _home(request: web.Request) -> web.Response:
    return page(request, "home.html", title="Console")


def routes() -> list[web.RouteDef]:
    return [web.get("/", _home)]
