"""Documents behind signed, expiring links: the invoice PDF that an SMS points to.

An SMS cannot carry a PDF, so the delivery stage keeps the dispatch in `herald.state.documents` keyed by
message id (a `TopicStore`: it survives crashes, and every worker holds it, so any worker's web server can
answer the link) and puts a signed link in the message. The retention janitor deletes it when the message
expires, which is also when the link stops working. The PDF is rendered on request, in the recipient's
language, from the same `email.<locale>.pdf.j2` template the email attaches, and it is the same document: a
Factur-X invoice for the tenants in `HERALD_FACTURX_TENANTS` (`facturx`, which the email's attachment asks too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from channels.rendering.facturx import document_pdf, parse_tenants, wants_facturx
from channels.rendering.render import Renderer
from channels.signatures import unix_seconds
from consumers.identity import KeyRing
from consumers.state.kvstore import KeyValueStore
from schemas.dispatch import Dispatch


class Documents:
    """Remembers dispatches whose type has a document, signs links to it, and renders it on request."""

    def __init__(self, store: KeyValueStore, renderer: Renderer, secret: bytes | KeyRing, public_url: str, *,
                 template_globals: Mapping[str, Any], clock: Callable[[], datetime],
                 facturx_tenants: str = "") -> None:
        self.store = store
        self.renderer = renderer
        self.secret = KeyRing.of(secret)  # the current secret signs; any in the ring verifies (rotation)
        self.public_url = public_url.rstrip("/")
        self.template_globals = dict(template_globals)
        self.clock = clock
        self.facturx_tenants = parse_tenants(facturx_tenants)  # HERALD_FACTURX_TENANTS

    def facturx(self, d: Dispatch) -> bool:
        """Whether the dispatch's invoice goes out as Factur-X (its tenant is in HERALD_FACTURX_TENANTS)."""
        return wants_facturx(self.facturx_tenants, d.tenant)

    def has_document(self, event_type: str) -> bool:
        root, locale = self.renderer.root, self.renderer.default_locale
        return (root / event_type / f"email.{locale}.pdf.j2").is_file()

    def link_for(self, d: Dispatch) -> str | None:
        """A signed link to the dispatch's document, valid until the message expires; None without one."""
        if d.channel == "email" or d.expires_at is None or not self.has_document(d.event_type):
            return None
        expires = str(int(d.expires_at.timestamp()))
        signature = self.secret.sign("document", d.message_id, expires)
        return f"{self.public_url}/documents/{d.message_id}.pdf?e={expires}&s={signature}"

    async def remember(self, d: Dispatch) -> None:
        """Keep the dispatch until it expires (durably: the link goes out in the message right after)."""
        await self.store.put(d.message_id, d.model_dump_json().encode(), durable=True)

    def verify(self, message_id: str, expires: str, signature: str) -> bool:
        """Whether a link is Herald's and has not expired. Never raises, whatever the link holds: `e` must be ASCII
        digits (`²` passes `isdigit()` but not `int()`), and `s` is compared as bytes (`compare_digest` refuses
        non-ASCII text)."""
        seconds = unix_seconds(expires)
        if seconds is None or seconds < self.clock().timestamp():
            return False
        return self.secret.verify(signature, "document", message_id, expires)

    async def pdf(self, message_id: str) -> bytes | None:
        """The document as PDF bytes, or None when there is none (unknown, or expired and deleted)."""
        raw = self.store.get(message_id)
        if raw is None:
            return None
        try:
            d = Dispatch.model_validate_json(raw)
        except ValidationError:
            return None
        rendered = self.renderer.render(d.event_type, "email", locale=d.to.locale, timezone=d.to.timezone,
                                        context={**self.template_globals, "to": d.to.model_dump(mode="json"),
                                                 "payload": d.payload, "message_id": d.message_id,
                                                 "event_id": d.event_id, "tenant": d.tenant})
        return await asyncio.to_thread(document_pdf, rendered["pdf"], d.payload, title=rendered["subject"],
                                       created_at=d.event_time, facturx=self.facturx(d))
