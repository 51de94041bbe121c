"""The public port's Faust web views (provider webhooks, one-click unsubscribe, document and tracking links) and the
response headers of both of Herald's web servers (`harden_responses`).

Every view that takes input from outside answers malformed input with 400, 403 or 413 and never 500 before it
has changed anything: bodies are read whole up to a limit (413 past it, however they arrive), header bytes that
are not UTF-8 are kept as Latin-1 text (they then match no signature), and anything unexpected that input makes
raise before any state change is answered 400 and counted (`malformed`), as a bug to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

import aiohttp.web_response
import faust
from aiohttp import web
from faust.web import Request, Response, View

from channels.webhooks import WebhookRequest
from consumers.identity import KeyRing
from consumers.inbound.hearback import HearBack
from consumers.inbound.tracking import CLICK_PATH, OPEN_PATH, Tracking
from consumers.inbound.tracking import Answer as TrackingAnswer
from consumers.inbound.unsubscribe import Unsubscribes
from consumers.observe.metrics import Metrics
from consumers.state.documents import Documents
from consumers.state.preferences import PreferenceLedger

log = logging.getLogger(__name__)

MAX_UNSUBSCRIBE_BYTES = 16 * 1024  # the one-click body is `List-Unsubscribe=One-Click`; anything bigger is noise


class BodyTooLarge(Exception):
    """The request body is over the limit: answered 413."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, or BodyTooLarge once it passes `limit` bytes.

    A declared Content-Length over the limit is refused before reading. Otherwise the body is read until its end,
    whatever pieces it arrives in (a chunked body has no length, and aiohttp's `content.read(n)` returns only what
    is already buffered: one read of a body sent in 8 KB pieces is its first piece), counting as it goes, so
    neither a lying Content-Length nor an endless chunked body is read past the limit.
    """
    declared = request.headers.get("Content-Length")
    if declared is not None and declared.strip().isascii() and declared.strip().isdigit() \
            and int(declared) > limit:
        raise BodyTooLarge
    # Faust's web driver hands over aiohttp's request; Faust's abstract `Request` does not declare `content`.
    stream = cast(web.BaseRequest, request).content
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.readany():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _text(value: str) -> str:
    """A header as text that survives `.encode()`: aiohttp keeps bytes that are not UTF-8 as lone surrogates
    (`\\udce9`), on which every later encode raises. They are read as Latin-1 instead (RFC 9110 treats such bytes
    as opaque octets); no vendor sends them, so such a value simply matches no signature."""
    try:
        value.encode()
        return value
    except UnicodeEncodeError:
        pass
    try:
        return value.encode("utf-8", "surrogateescape").decode("latin-1")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte: not from the wire, but never raise
        return value.encode("utf-8", "replace").decode()


def text_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers with lower-case names and values that are safe text (see `_text`); a repeated header keeps
    its first value, as `dict(request.headers)` does."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        out.setdefault(_text(key).lower(), _text(value))
    return out


def text_query(query: Mapping[str, str]) -> dict[str, str]:
    """The query as safe text; a repeated parameter keeps its first value (as `dict(request.query)` does)."""
    out: dict[str, str] = {}
    for key, value in query.items():
        out.setdefault(_text(key), _text(value))
    return out


def register_views(app: faust.App, metrics: Metrics, hearback: HearBack, public_url: str, *,
                   ledger: PreferenceLedger | None = None, secret: bytes | KeyRing | None = None) -> None:
    """Provider webhooks; with a `ledger` and the link `secret`, also `/unsubscribe/{recipient_id}` (RFC 8058
    one-click unsubscribe). Metrics, health and readiness are on the admin port (consumers/inbound/admin.py)."""
    async def webhook(view: View, request: Request, channel: str, vendor: str) -> Response:
        labels = hearback.labels(channel, vendor)
        if labels[0] == "unknown":  # no provider here: nothing to read the body for
            hearback.metrics.webhooks.labels(*labels, "unknown_provider").inc()
            return view.text("unknown provider", status=404)
        try:
            body = await read_body(request, hearback.max_body_bytes)
        except BodyTooLarge:
            hearback.metrics.webhooks.labels(*labels, "too_large").inc()
            return view.text("too large", status=413)
        try:
            # Providers sign the public URL they called, not the one this process sees behind a proxy.
            # (`path_qs`: the request is aiohttp's, which Faust's abstract `Request` does not say.)
            path_qs = cast(web.BaseRequest, request).path_qs
            inbound = WebhookRequest(method=request.method, url=public_url.rstrip("/") + path_qs,
                                     headers=text_headers(request.headers), query=text_query(request.query),
                                     body=body)
        except Exception:  # the backstop: nothing has changed, so a 400, logged as the bug it is
            hearback.metrics.webhooks.labels(*labels, "malformed").inc()
            log.exception("webhook request could not be adapted", extra={"channel": labels[0],
                                                                          "provider": labels[1]})
            return view.text("unreadable", status=400)
        try:
            # HearBack answers every failure itself (400/403 before any change, 500 once state may have changed).
            answer = await hearback.handle(channel, vendor, inbound)
        except Exception:  # it never raises; if it did, it may have been after a change: the vendor must retry
            hearback.metrics.webhooks.labels(*labels, "error").inc()
            log.exception("webhook handling raised", extra={"channel": labels[0], "provider": labels[1]})
            return view.text("error", status=500)
        return view.bytes(answer.body, status=answer.status, headers={"Content-Type": answer.content_type})

    class WebhookView(View):
        async def get(self, request: Request, channel: str, vendor: str) -> Response:
            return await webhook(self, request, channel, vendor)

        async def post(self, request: Request, channel: str, vendor: str) -> Response:
            return await webhook(self, request, channel, vendor)

    app.page("/webhooks/{channel}/{vendor}")(WebhookView)

    if ledger is not None and secret is not None:
        register_unsubscribe_view(app, Unsubscribes(ledger, secret, metrics))


def register_unsubscribe_view(app: faust.App, unsubscribes: Unsubscribes) -> None:
    """`GET|POST /unsubscribe/{recipient_id}?c=…&s=…`: any worker can answer (the ledger is replicated)."""

    refused = unsubscribes.metrics.links_refused

    async def unsubscribe(view: View, request: Request, recipient_id: str) -> Response:
        if request.method == "POST":
            try:  # the content is ignored (RFC 8058), but read whole so the connection stays usable
                await read_body(request, MAX_UNSUBSCRIBE_BYTES)
            except BodyTooLarge:
                refused.labels("unsubscribe", "too_large").inc()
                return view.text("too large", status=413)
        query = text_query(request.query)
        try:
            # The link's checks never raise (a bad link is 403 before any change; the fuzz test holds them to it),
            # so what raises here is the ledger write of a valid link failing, which the person can only retry.
            answer = await unsubscribes.handle(_text(recipient_id), query, request.method)
        except Exception:
            log.exception("unsubscribe failed")
            return view.text("Please try again later.", status=500)
        return view.bytes(answer.body, status=answer.status,
                          headers={"Content-Type": answer.content_type, "Cache-Control": "no-store",
                                   "X-Robots-Tag": "noindex"})

    class UnsubscribeView(View):
        async def get(self, request: Request, recipient_id: str) -> Response:
            return await unsubscribe(self, request, recipient_id)

        async def post(self, request: Request, recipient_id: str) -> Response:
            return await unsubscribe(self, request, recipient_id)

    app.page("/unsubscribe/{recipient_id}")(UnsubscribeView)


def register_document_view(app: faust.App, documents: Documents, metrics: Metrics) -> None:
    """`GET /documents/{message_id}.pdf?e=…&s=…`, answered by any worker (every worker holds the documents).
    Refusals are counted on `metrics`."""

    class DocumentView(View):
        async def get(self, request: Request, message_id: str) -> Response:
            query = request.query
            try:
                valid = documents.verify(_text(message_id), _text(query.get("e", "")), _text(query.get("s", "")))
            except Exception:  # reading a link changes nothing: whatever it raises is a 400 (and a bug to fix)
                metrics.links_refused.labels("documents", "malformed").inc()
                log.exception("document link raised while being checked; answered 400")
                return self.text("link expired or invalid", status=400)
            if not valid:
                return self.text("link expired or invalid", status=403)
            pdf = await documents.pdf(message_id)
            if pdf is None:
                return self.text("not found", status=404)
            return self.bytes(pdf, headers={"Content-Type": "application/pdf",
                                            "Content-Disposition": 'inline; filename="document.pdf"',
                                            "Cache-Control": "private, no-store"})

    app.page("/documents/{message_id}.pdf")(DocumentView)


def register_tracking_views(app: faust.App, tracking: Tracking) -> None:
    """`GET /t/o/{message_id}.gif` (open pixel) and `GET /t/c/{message_id}` (click redirect), answered by any worker
    (consumers/inbound/tracking.py). A link that raises while being checked is a 400, never a redirect."""

    async def answer(view: View, kind: str, handle: Callable[[str, dict[str, str]], Awaitable[TrackingAnswer]],
                     message_id: str, request: Request) -> Response:
        try:
            result = await handle(_text(message_id), text_query(request.query))
        except Exception:  # checking a link changes nothing, and publishing never raises: a bug, answered 400
            tracking.metrics.tracking.labels(kind, "malformed").inc()
            log.exception("tracking link raised; answered 400")
            return view.text("This link is not valid.", status=400)
        headers = {"Content-Type": result.content_type, "Cache-Control": "no-store", "X-Robots-Tag": "noindex"}
        if result.location is not None:
            headers["Location"] = result.location
        return view.bytes(result.body, status=result.status, headers=headers)

    class OpenView(View):
        async def get(self, request: Request, message_id: str) -> Response:
            return await answer(self, "open", tracking.open, message_id, request)

    class ClickView(View):
        async def get(self, request: Request, message_id: str) -> Response:
            return await answer(self, "click", tracking.click, message_id, request)

    app.page(OPEN_PATH)(OpenView)
    app.page(CLICK_PATH)(ClickView)


# Sent on every response of both servers (`Server` replaces aiohttp's `Python/3.x aiohttp/3.x` banner). The other
# headers are defaults: a view that sets its own (the document view's `Cache-Control`) keeps it.
SERVER_HEADER = "Herald"
SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}
# Browsers show an inline PDF in a viewer that `default-src 'none'` (through `object-src`) can block: a PDF only
# forbids being framed.
PDF_CONTENT_SECURITY_POLICY = "frame-ancestors 'none'"


async def _secure_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Server"] = SERVER_HEADER
    for name, value in SECURITY_HEADERS.items():
        if name == "Content-Security-Policy" and response.content_type == "application/pdf":
            value = PDF_CONTENT_SECURITY_POLICY
        headers.setdefault(name, value)


def harden_responses(application: web.Application) -> None:
    """Give every response of an aiohttp application `Server: Herald` and the security headers (before it is
    started: aiohttp freezes its signals then)."""
    application.on_response_prepare.append(_secure_headers)
    # The 400 aiohttp answers to a request it cannot parse never reaches the application (no signal): its
    # `Server` header is aiohttp's default, read from this module global when the response is sent. Herald's
    # processes serve only Herald, so the default is Herald's too (aiohttp's client has its own User-Agent).
    aiohttp.web_response.SERVER_SOFTWARE = SERVER_HEADER  # type: ignore[attr-defined]  # imported there, not exported


PRODUCTION_INDEX = "faust.web.apps.production_index:blueprint"


def harden_public_server(app: faust.App) -> None:
    """The public port serves Herald's views only, with `harden_responses`' headers.

    Faust's own pages are off through its settings (`faust_config`), except its production index (`GET /`
    answering `{"status": "OK"}`), which has no setting: it is dropped from the blueprints Faust is about to
    mount (they are mounted when the server starts). Call before the worker starts.
    """
    faust_web = app.web
    blueprints = getattr(faust_web, "blueprints", None)
    enabled = getattr(blueprints, "_enabled", None)
    if isinstance(enabled, list):
        enabled[:] = [(prefix, bp) for prefix, bp in enabled if bp != PRODUCTION_INDEX]
    application = getattr(faust_web, "web_app", None)
    if isinstance(application, web.Application):
        harden_responses(application)
