"""The console's template pages: the matrix of every type x channel x locale, one type's preview with every channel
side by side, the email HTML kept out of the console's origin, the PDF, and the sample rendering they share with
`herald templates check|preview`."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from channels.rendering.preview import matrix_row, preview_channels, shipped_locales, sms_facts
from channels.rendering.render import BUNDLED_TEMPLATES, Renderer
from consumers.cli import templatecheck
from consumers.console.context import ConsoleContext
from schemas.catalog import Catalog
from tests.conftest import unique_settings
from tests.unit.test_console_auth import TOKEN, client_for, console_context

pytestmark = pytest.mark.unit

Client = TestClient[web.Request, web.Application]
BEARER = {"Authorization": f"Bearer {TOKEN}"}
GLOBALS = {"brand": "Herald Shop", "document_url": None}
BROKEN = "{{ payload.no_such_field }} is not in the sample"


def catalog() -> Catalog:
    return Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml")


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A copy of the bundled templates whose English order.confirmed SMS needs a field the sample lacks."""
    root = tmp_path / "templates"
    shutil.copytree(BUNDLED_TEMPLATES, root)
    (root / "order.confirmed" / "sms.en.text.j2").write_text(BROKEN)
    return root


def context_with(tmp_path: Path, root: Path | None = None) -> ConsoleContext:
    ctx = console_context(tmp_path)
    ctx.extras.update(catalog=catalog(), renderer=Renderer(root), template_globals=GLOBALS)
    return ctx


@pytest.fixture
async def client(tmp_path: Path, templates: Path) -> AsyncIterator[Client]:
    c = await client_for(context_with(tmp_path, templates))
    yield c
    await c.close()


async def get(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path, headers=BEARER, allow_redirects=False)
    assert response.status == status, await response.text()
    return await response.text()


def card(html: str, channel: str) -> str:
    """The preview's section of one channel."""
    found = re.search(rf'<section class="card preview" id="{channel}".*?</section>', html, re.S)
    assert found, f"no {channel} card"
    return found.group(0)


# --- the shared sample rendering --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "encoding", "segments"), [
    ("Your Herald Shop code is 482913. It expires in 10 minutes.", "GSM-7", 1),
    ("x" * 160, "GSM-7", 1),
    ("x" * 161, "GSM-7", 2),  # 153 characters per part once split
    ("{}" * 40 + "x", "GSM-7", 2),  # 81 characters, 161 units: braces take two each
    ("Tu pedido 1001 está en camino 🚚", "UCS-2", 1),
    ("Ваш заказ " + "ж" * 60, "UCS-2", 1),  # 70 UCS-2 units fit one segment
    ("Ваш заказ " + "ж" * 61, "UCS-2", 2),
])
def test_sms_facts__encoding_and_segments(text: str, encoding: str, segments: int) -> None:
    facts = sms_facts(text)
    assert (facts.encoding, facts.segments, facts.characters) == (encoding, segments, len(text))


def test_preview_channels__a_failing_channel_says_why_and_the_others_render(templates: Path) -> None:
    entry = catalog().types["order.confirmed"]
    previews = {p.channel: p for p in preview_channels(Renderer(templates), "order.confirmed", entry, "en",
                                                       template_globals=GLOBALS)}
    assert previews["sms"].rendered is None
    assert previews["sms"].error is not None and "order.confirmed/sms.en.text.j2" in previews["sms"].error
    assert "no_such_field" in previews["sms"].error
    assert previews["email"].error is None and "1001" in previews["email"].rendered["subject"]  # type: ignore[index]
    assert previews["webhook"].error is None  # the shared template, with the sample ids


def test_matrix_row__marks_only_the_failing_locale(templates: Path) -> None:
    renderer = Renderer(templates)
    row = matrix_row(renderer, "order.confirmed", catalog().types["order.confirmed"], shipped_locales(renderer),
                     template_globals=GLOBALS)
    states = {(channel, cell.locale): cell.state for channel, cells in row.channels.items() for cell in cells}
    assert states[("sms", "en")] == "error"
    assert states[("sms", "es")] == states[("email", "en")] == states[("webhook", "de")] == "ok"
    assert row.failing


def test_templates_preview__the_webhook_renders_with_the_sample_ids(tmp_path: Path) -> None:
    """`herald templates preview TYPE --channel webhook` failed (TypeError): its shared template names event_id and
    tenant, which the preview did not give it."""
    shown = templatecheck.preview(unique_settings(tmp_path), "order.confirmed", "webhook", "en", "UTC", None)
    body = shown.rendered["json"]
    assert '"event_id": "evt-sample"' in body and '"message_id": "msg-preview"' in body


def test_templates_check__the_bundled_templates_still_pass(tmp_path: Path) -> None:
    problems, _, count = templatecheck.check_templates(unique_settings(tmp_path))
    assert problems == [] and count > 300


# --- the pages --------------------------------------------------------------------------------------------------------

async def test_templates_page__the_matrix_marks_the_failure_and_lists_every_type(client: Client) -> None:
    html = await get(client, "/console/templates")
    for event_type in catalog().types:
        assert f'href="/console/templates/{event_type}"' in html
    assert "1 failing" in html
    failing = re.findall(r'<a class="badge bad" href="(/console/templates/[^"]+)"', html)
    assert failing == ["/console/templates/order.confirmed?locale=en#sms"]
    assert "no_such_field" in html  # the RenderError message, under the mark


async def test_templates_page__a_preview_shows_the_error_and_every_other_channel(client: Client) -> None:
    html = await get(client, "/console/templates/order.confirmed?locale=en")
    assert "Does not render" in card(html, "sms") and "no_such_field" in card(html, "sms")
    email = card(html, "email")
    subject = re.search(r'class="email-subject">([^<]*)<', email)
    assert subject is not None and "1001" in subject.group(1)
    assert "Does not render" not in email
    assert "Does not render" not in card(html, "push") and "Does not render" not in card(html, "webhook")


async def test_templates_page__sms_card_shows_segments_and_encoding(tmp_path: Path) -> None:
    c = await client_for(context_with(tmp_path))
    try:
        html = await get(c, "/console/templates/shipping.dispatched?locale=es")
    finally:
        await c.close()
    sms = card(html, "sms")
    text = re.search(r"<pre>(.*?)</pre>", sms, re.S).group(1)  # type: ignore[union-attr]
    import html as html_module
    facts = sms_facts(html_module.unescape(text))
    assert f'class="sms-segments">{facts.segments}<' in sms and f'class="sms-encoding">{facts.encoding}<' in sms


async def test_templates_page__the_locale_is_chosen_and_a_fallback_is_said(client: Client) -> None:
    spanish = await get(client, "/console/templates/order.confirmed?locale=es")
    assert "order.confirmed/email · es" in spanish and '<option value="es" selected>' in spanish
    french = await get(client, "/console/templates/order.confirmed?locale=fr")
    assert "no fr template for order.confirmed/email; rendered in en" in french
    hostile = await get(client, "/console/templates/order.confirmed?locale=%3Cscript%3E")
    assert "<script>" not in hostile and '<option value="en" selected>' in hostile


async def test_templates_page__the_email_html_never_runs_in_the_console_origin(client: Client) -> None:
    html = await get(client, "/console/templates/order.confirmed?locale=es")
    frame = re.search(r"<iframe class=\"email-frame\"[^>]*>", html, re.S).group(0)  # type: ignore[union-attr]
    assert re.search(r"\ssandbox[\s>]", frame) and "allow-scripts" not in frame and "allow-same-origin" not in frame
    assert 'src="/console/templates/order.confirmed/email.html?locale=es"' in frame
    assert 'role="presentation"' not in html  # the email's own markup is not in the console page
    response = await client.get("/console/templates/order.confirmed/email.html?locale=es", headers=BEARER)
    assert response.status == 200 and response.content_type == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy.split("; ") and "script-src" not in policy
    assert "<table role=\"presentation\"" in await response.text()


async def test_templates_page__the_email_html_needs_a_session(client: Client) -> None:
    response = await client.get("/console/templates/order.confirmed/email.html", allow_redirects=False)
    assert response.status == 303


async def test_templates_page__the_pdf_is_served_as_a_pdf(client: Client) -> None:
    html = await get(client, "/console/templates/invoice.issued?locale=de")
    assert 'src="/console/templates/invoice.issued/document.pdf?locale=de#view=FitH&amp;navpanes=0"' in html
    response = await client.get("/console/templates/invoice.issued/document.pdf?locale=de", headers=BEARER)
    assert response.status == 200 and response.content_type == "application/pdf"
    assert (await response.read()).startswith(b"%PDF-")
    assert response.headers["Content-Disposition"].startswith("inline")
    none = await client.get("/console/templates/order.confirmed/document.pdf", headers=BEARER)
    assert none.status == 404


async def test_templates_page__an_invoice_sms_counts_a_document_link(client: Client) -> None:
    html = await get(client, "/console/templates/invoice.issued?locale=en")
    assert "/documents/msg-000000000000000000000000.pdf?e=" in card(html, "sms")


async def test_templates_page__an_unknown_type_is_404(client: Client) -> None:
    await get(client, "/console/templates/no.such.type", status=404)
    await get(client, "/console/templates/no.such.type/document.pdf", status=404)
