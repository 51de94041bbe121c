"""Faust web views: metrics, liveness, readiness, provider webhooks and one-click unsubscribe."""

from __future__ import annotations

from collections.abc import Callable

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from channels.webhooks import WebhookRequest, lower_keys
from consumers.documents import Documents
from consumers.hearback import HearBack
from consumers.metrics import Metrics
from consumers.preferences import PreferenceLedger
from consumers.unsubscribe import Unsubscribes

MAX_WEBHOOK_BYTES = 1024 * 1024
MAX_UNSUBSCRIBE_BYTES = 16 * 1024  # the one-click body is `List-Unsubscribe=One-Click`; anything bigger is noise


def register_views(app: faust.App, metrics: Metrics, hearback: HearBack, public_url: str, *,
                   ledger: PreferenceLedger | None = None, secret: bytes | None = None,
                   lanes_ready: Callable[[], bool] = lambda: True) -> None:
    """Metrics, health, readiness and webhooks; with a `ledger` and the link `secret`, also
    `/unsubscribe/{recipient_id}` (RFC 8058 one-click unsubscribe)."""
    @app.page("/metrics")
    async def metrics_view(web: View, request: Request) -> Response:
        return web.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health_view(web: View, request: Request) -> Response:
        """Liveness: the process serves requests."""
        return web.json({"status": "ok", "app": app.conf.id})

    @app.page("/ready")
    async def ready_view(web: View, request: Request) -> Response:
        """Readiness: the worker joined its consumer groups (the normal lane's, the critical lane's) and is not
        rebalancing."""
        ready = app.rebalancing_count > 0 and not app.rebalancing and lanes_ready()
        return web.json({"ready": ready}, status=200 if ready else 503)

    async def webhook(view: View, request: Request, channel: str, vendor: str) -> Response:
        body = await request.content.read(MAX_WEBHOOK_BYTES + 1)  # type: ignore[attr-defined]
        if len(body) > MAX_WEBHOOK_BYTES:
            return view.text("too large", status=413)
        # Providers sign the public URL they called, not the one this process sees behind a proxy.
        inbound = WebhookRequest(method=request.method, url=public_url.rstrip("/") + request.path_qs,  # type: ignore[attr-defined]
                                 headers=lower_keys(dict(request.headers)), query=dict(request.query),  # type: ignore[attr-defined]
                                 body=body)
        answer = await hearback.handle(channel, vendor, inbound)
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

    async def unsubscribe(view: View, request: Request, recipient_id: str) -> Response:
        if request.method == "POST":  # type: ignore[attr-defined]
            await request.content.read(MAX_UNSUBSCRIBE_BYTES)  # type: ignore[attr-defined]  # content ignored
        answer = await unsubscribes.handle(recipient_id, dict(request.query), request.method)  # type: ignore[attr-defined]
        return view.bytes(answer.body, status=answer.status,
                          headers={"Content-Type": answer.content_type, "Cache-Control": "no-store",
                                   "X-Robots-Tag": "noindex"})

    class UnsubscribeView(View):
        async def get(self, request: Request, recipient_id: str) -> Response:
            return await unsubscribe(self, request, recipient_id)

        async def post(self, request: Request, recipient_id: str) -> Response:
            return await unsubscribe(self, request, recipient_id)

    app.page("/unsubscribe/{recipient_id}")(UnsubscribeView)


def register_document_view(app: faust.App, documents: Documents) -> None:
    """`GET /documents/{message_id}.pdf?e=…&s=…`, answered by any worker (every worker holds the documents)."""

    class DocumentView(View):
        async def get(self, request: Request, message_id: str) -> Response:
            query = request.query  # type: ignore[attr-defined]
            if not documents.verify(message_id, query.get("e", ""), query.get("s", "")):
                return self.text("link expired or invalid", status=403)
            pdf = await documents.pdf(message_id)
            if pdf is None:
                return self.text("not found", status=404)
            return self.bytes(pdf, headers={"Content-Type": "application/pdf",
                                            "Content-Disposition": 'inline; filename="document.pdf"',
                                            "Cache-Control": "private, no-store"})

    app.page("/documents/{message_id}.pdf")(DocumentView)
