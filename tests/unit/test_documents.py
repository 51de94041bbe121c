"""Signed, expiring document links: what an SMS points to instead of an attachment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from channels.rendering.render import BUNDLED_TEMPLATES, Renderer
from consumers.state.documents import Documents
from consumers.state.kvstore import MemoryStore
from schemas.catalog import Catalog
from schemas.dispatch import Dispatch
from schemas.events import Recipient

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
INVOICE = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml").types["invoice.issued"].sample  # schemas/documents.py


def dispatch(event_type: str = "invoice.issued", channel: str = "sms") -> Dispatch:
    return Dispatch(message_id="msg-doc", event_id="evt-1", event_type=event_type, event_time=NOW, channel=channel,
                    category="transactional", priority="normal", idempotency_key="k",
                    to=Recipient(id="u1", phone="+34600111222", locale="de-DE"), payload=INVOICE,
                    expires_at=NOW + timedelta(days=30))


def documents(now: datetime = NOW) -> tuple[Documents, MemoryStore]:
    store = MemoryStore()
    return Documents(store, Renderer(), b"secret", "https://herald.example.com/",
                     template_globals={"brand": "Shop", "document_url": None}, clock=lambda: now), store


def parts(link: str) -> tuple[str, str, str]:
    url = urlparse(link)
    query = parse_qs(url.query)
    return url.path.removeprefix("/documents/").removesuffix(".pdf"), query["e"][0], query["s"][0]


async def test_documents__sms_of_a_type_with_a_pdf_gets_a_signed_link_that_serves_it() -> None:
    docs, store = documents()
    link = docs.link_for(dispatch())
    assert link is not None and link.startswith("https://herald.example.com/documents/msg-doc.pdf?e=")
    assert len(link) < 110  # it has to fit in an SMS next to the text
    await docs.remember(dispatch())
    message_id, expires, signature = parts(link)
    assert docs.verify(message_id, expires, signature)
    pdf = await docs.pdf(message_id)
    assert pdf is not None and pdf.startswith(b"%PDF")
    assert "msg-doc" in set(store.list_keys())


@pytest.mark.parametrize(("event_type", "channel"), [("order.confirmed", "sms"), ("invoice.issued", "email")],
                         ids=["type_without_pdf", "email_attaches_instead"])
def test_documents__no_link_where_there_is_no_document_or_it_is_attached(event_type: str, channel: str) -> None:
    docs, _ = documents()
    assert docs.link_for(dispatch(event_type, channel)) is None


def test_documents__tampered_or_expired_links_are_refused() -> None:
    docs, _ = documents()
    message_id, expires, signature = parts(docs.link_for(dispatch()) or "")
    assert not docs.verify("msg-other", expires, signature)
    assert not docs.verify(message_id, str(int(expires) + 1), signature)
    assert not docs.verify(message_id, expires, signature[:-1] + ("A" if signature[-1] != "A" else "B"))
    later, _ = documents(NOW + timedelta(days=31))
    assert not later.verify(message_id, expires, signature)


async def test_documents__unknown_message_is_none() -> None:
    docs, _ = documents()
    assert await docs.pdf("msg-missing") is None
