"""The console's template pages: every type x channel x locale of the catalog rendered with its sample data (the
matrix), one type's channels side by side in a locale (the preview), and that preview's email HTML and PDF on URLs
of their own, so the email's HTML never runs in the console's origin.

The templates are the worker's own (`extras["renderer"]`, `extras["catalog"]`), rendered with the catalog's
sample data (channels/rendering/preview.py, shared with `herald templates check|preview`): never personal data.
Rendering happens off the event loop (the worker is sending meanwhile).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from channels.errors import DeliveryError
from channels.rendering.preview import (
    ChannelPreview,
    MatrixRow,
    known_locale,
    matrix_row,
    preview_channels,
    render_sample,
    sample_document,
    shipped_locales,
)
from channels.rendering.render import Renderer
from consumers.console.context import ConsoleContext
from consumers.console.views import context, page
from schemas.catalog import Catalog, CatalogEntry, Channel, Priority

# The email's own HTML, framed by the preview: its inline styles may apply, nothing else (no script, no request
# anywhere, no form), and `sandbox` gives it an opaque origin even when opened alone.
EMAIL_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; base-uri 'none'; "
             "form-action 'none'; frame-ancestors 'self'; sandbox")
EMAIL_HEADERS = {"Content-Security-Policy": EMAIL_CSP, "X-Frame-Options": "SAMEORIGIN",
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
PDF_HEADERS = {"Content-Security-Policy": "default-src 'none'; frame-ancestors 'self'", "X-Frame-Options": "SAMEORIGIN",
               "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
LOCALE_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,2}")
PREVIEW_TIMEZONE = "UTC"  # the console shows times in UTC
SAMPLE_MESSAGE_ID = "msg-" + "0" * 24  # as long as a real one, so an SMS with a document link counts true
SAMPLE_LINK_EXPIRY = "1767225600"  # a ten-digit expiry, as a real link carries


@dataclass(frozen=True)
class Templates:
    """What the pages render with: the worker's renderer, catalog and template globals."""

    renderer: Renderer
    catalog: Catalog
    template_globals: Mapping[str, Any]

    @property
    def locales(self) -> list[str]:
        return shipped_locales(self.renderer)

    def has_document(self, event_type: str) -> bool:
        return (self.renderer.root / event_type / f"email.{self.renderer.default_locale}.pdf.j2").is_file()

    def globals_for(self, ctx: ConsoleContext, event_type: str) -> dict[str, Any]:
        """The worker's globals, with a signed-looking document link (as an SMS of a type with a document gets)."""
        found = dict(self.template_globals)
        if self.has_document(event_type):
            signature = ctx.keys.sign("document", SAMPLE_MESSAGE_ID, SAMPLE_LINK_EXPIRY)
            found["document_url"] = (f"{ctx.settings.public_url.rstrip('/')}/documents/{SAMPLE_MESSAGE_ID}.pdf"
                                     f"?e={SAMPLE_LINK_EXPIRY}&s={signature}")
        return found


def templates_of(ctx: ConsoleContext) -> Templates:
    renderer = ctx.extras.get("renderer") or Renderer(ctx.settings.templates,
                                                      default_locale=ctx.settings.default_locale)
    catalog = ctx.extras["catalog"]
    template_globals = ctx.extras.get("template_globals") or {"brand": ctx.settings.brand_name, "document_url": None}
    return Templates(renderer, catalog, template_globals)


def chosen_locale(request: web.Request, default: str) -> str:
    """The `locale` asked for when it looks like a language tag, else the default."""
    asked = request.query.get("locale", "").strip()
    return asked if LOCALE_TAG.fullmatch(asked) else default


def _entry(t: Templates, request: web.Request) -> tuple[str, CatalogEntry]:
    event_type = request.match_info["type"]
    entry = t.catalog.get(event_type)
    if entry is None:
        raise web.HTTPNotFound(text=f"unknown event type {event_type!r}")
    return event_type, entry


# --- the matrix ------------------------------------------------------------------------------------------------------

def build_matrix(t: Templates, ctx: ConsoleContext) -> list[MatrixRow]:
    locales = t.locales
    return [matrix_row(t.renderer, event_type, entry, locales, template_globals=t.globals_for(ctx, event_type))
            for event_type, entry in sorted(t.catalog.types.items())]


async def _matrix(request: web.Request) -> web.Response:
    ctx = context(request)
    t = templates_of(ctx)
    rows = await asyncio.to_thread(build_matrix, t, ctx)
    failing = sum(cell.state == "error" for row in rows for cells in row.channels.values() for cell in cells)
    return page(request, "templates.html", title="Templates", rows=rows, channels=[c.value for c in Channel],
                locales=t.locales, failing=failing,
                lanes={name: lane(entry) for name, entry in t.catalog.types.items()})


# --- one type's preview ----------------------------------------------------------------------------------------------

def lane(entry: CatalogEntry) -> str:
    """The lane a type travels: critical for the catalog's critical priority, normal otherwise."""
    return "critical" if entry.priority is Priority.CRITICAL else "normal"


def whatsapp_template(preview: ChannelPreview) -> dict[str, Any] | None:
    """The approved template a WhatsApp message outside the 24-hour session uses: name, language, parameters."""
    if preview.rendered is None or "template" not in preview.rendered.parts:
        return None
    try:
        found = json.loads(preview.rendered["template"])
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def pretty_json(text: str) -> str:
    """Indented JSON (the text as it is when it is not JSON: the preview shows that problem separately)."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return text


def document_error(t: Templates, preview: ChannelPreview) -> str | None:
    """Why the PDF cannot be laid out, or None when it can."""
    if preview.rendered is None or not preview.has_document:
        return None
    try:
        sample_document(preview.rendered)
    except DeliveryError as exc:  # a RenderError, or Rejected when over the size limit
        return str(exc)
    return None


async def _preview(request: web.Request) -> web.Response:
    ctx = context(request)
    t = templates_of(ctx)
    event_type, entry = _entry(t, request)
    locale = chosen_locale(request, t.renderer.default_locale)

    def render() -> tuple[list[ChannelPreview], str | None]:
        previews = preview_channels(t.renderer, event_type, entry, locale, timezone=PREVIEW_TIMEZONE,
                                    template_globals=t.globals_for(ctx, event_type))
        email = next((p for p in previews if p.channel == "email"), None)
        return previews, document_error(t, email) if email is not None else None

    previews, pdf_error = await asyncio.to_thread(render)
    locales = t.locales if locale in t.locales else [*t.locales, locale]
    return page(request, "preview.html", title=f"Template: {event_type}", event_type=event_type, entry=entry,
                lane=lane(entry), locale=locale, locales=locales, previews=previews, pdf_error=pdf_error,
                known=known_locale(locale), whatsapp_template=whatsapp_template, pretty_json=pretty_json,
                keypad={digit: action.value for digit, action in entry.keypad.items()})


async def _email_html(request: web.Request) -> web.Response:
    ctx = context(request)
    t = templates_of(ctx)
    event_type, entry = _entry(t, request)
    locale = chosen_locale(request, t.renderer.default_locale)

    def render() -> str:
        return render_sample(t.renderer, event_type, "email", locale, entry.template_payload(),
                             timezone=PREVIEW_TIMEZONE, template_globals=t.globals_for(ctx, event_type))["html"]

    try:
        html = await asyncio.to_thread(render)
    except DeliveryError as exc:
        return web.Response(status=422, text=str(exc), headers=EMAIL_HEADERS)
    return web.Response(text=html, content_type="text/html", headers=EMAIL_HEADERS)


async def _document(request: web.Request) -> web.Response:
    ctx = context(request)
    t = templates_of(ctx)
    event_type, entry = _entry(t, request)
    locale = chosen_locale(request, t.renderer.default_locale)

    def render() -> bytes | None:
        rendered = render_sample(t.renderer, event_type, "email", locale, entry.template_payload(),
                                 timezone=PREVIEW_TIMEZONE, template_globals=t.globals_for(ctx, event_type))
        if "pdf" not in rendered.parts:
            return None
        return sample_document(rendered)

    try:
        pdf = await asyncio.to_thread(render)
    except DeliveryError as exc:
        return web.Response(status=422, text=str(exc), headers=PDF_HEADERS)
    if pdf is None:
        raise web.HTTPNotFound(text=f"{event_type} has no document")
    filename = re.sub(r"[^\w.-]", "_", f"{event_type}.{locale}.pdf")
    headers = {**PDF_HEADERS, "Content-Disposition": f'inline; filename="{filename}"'}
    return web.Response(body=pdf, content_type="application/pdf", headers=headers)


def routes() -> list[web.RouteDef]:
    return [web.get("/templates", _matrix), web.get("/templates/{type}", _preview),
            web.get("/templates/{type}/email.html", _email_html), web.get("/templates/{type}/document.pdf", _document)]
