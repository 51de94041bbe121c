"""Rendering a console page: one Jinja2 environment (autoescaped) over `consumers/console/templates`, the headers
every console response carries, and the filters the pages share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from consumers.console.auth import csrf_token
from consumers.console.context import ConsoleContext

# Same-origin scripts, styles and images only (the pages have no inline script); frames of the console itself
# (the PDF preview) are allowed, no other site may frame it.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-src 'self'; object-src 'self'; form-action 'self'; "
                           "base-uri 'none'; frame-ancestors 'self'")
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "SAMEORIGIN"}

# (label, path) of the navigation, in the order shown.
NAVIGATION = (("Find", "/console/"), ("Live tail", "/console/tail"), ("Templates", "/console/templates"),
              ("Dead letters", "/console/dead-letters"), ("Health", "/console/health"), ("Rates", "/console/rates"))
CONTEXT_KEY = web.AppKey("console_context", ConsoleContext)


def _when(value: datetime | None) -> str:
    """A time as UTC, to the second (the pages say UTC once, in the footer)."""
    if value is None:
        return "\u2013"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _millis(value: int | float | None) -> str:
    if value is None:
        return "\u2013"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


ENVIRONMENT = jinja2.Environment(loader=jinja2.PackageLoader("consumers.console", "templates"),
                                 autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                                 undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
ENVIRONMENT.filters["when"] = _when
ENVIRONMENT.filters["millis"] = _millis


def context(request: web.Request) -> ConsoleContext:
    return request.app[CONTEXT_KEY]


def page(request: web.Request, template: str, *, status: int = 200, title: str = "", **values: Any
         ) -> web.Response:
    """Render `template` inside the console's layout."""
    ctx = context(request)
    csrf = csrf_token(ctx.token, request) if ctx.token is not None else ""
    body = ENVIRONMENT.get_template(template).render(
        title=title, path=request.path, navigation=NAVIGATION, csrf=csrf, app_id=ctx.settings.app_id, **values)
    return web.Response(text=body, status=status, content_type="text/html", headers=HEADERS)


def fragment(template: str, **values: Any) -> str:
    """A piece of a page (a table's rows), rendered alone: what the live tail and filters fetch."""
    return ENVIRONMENT.get_template(template).render(**values)
