"""The template pages in a real browser: the matrix of every type, one type's preview with its SMS segments, email
subject, email HTML kept in a sandbox, and the PDF document in its frame."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from channels.rendering.preview import sms_facts
from channels.rendering.render import BUNDLED_TEMPLATES
from schemas.catalog import Catalog
from tests.browser.conftest import PHONE, ConsoleStack

pytestmark = [pytest.mark.integration, pytest.mark.browser]

DOCUMENT_TYPE = "invoice.issued"  # the catalog type whose email attaches a PDF


def test_templates__the_matrix_lists_every_type_and_every_template_renders(console: Page, console_stack: ConsoleStack,
                                                                           screenshots: Path) -> None:
    console.get_by_role("navigation", name="Console").get_by_role("link", name="Templates").click()
    expect(console.get_by_role("heading", name="Templates", level=1)).to_be_visible()
    matrix = console.locator("table.template-matrix")
    for event_type in Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml").types:
        expect(matrix.get_by_role("link", name=event_type, exact=True)).to_be_visible()
    expect(console.get_by_role("status")).to_have_text("Every template renders.")
    expect(matrix.locator(".badge.bad")).to_have_count(0)
    console.screenshot(path=screenshots / "templates.png", full_page=True)


def test_templates__a_preview_shows_sms_segments_the_email_subject_and_the_pdf(
        console: Page, console_stack: ConsoleStack, screenshots: Path) -> None:
    # Tall enough for the whole preview: Chromium's PDF viewer draws nothing it has not shown in the viewport.
    console.set_viewport_size({"width": 1280, "height": 1700})
    console.goto(f"{console_stack.url}/templates")
    console.get_by_role("link", name=DOCUMENT_TYPE, exact=True).click()
    console.get_by_label("Locale").select_option("es")
    with console.expect_response(lambda r: r.url.endswith("/document.pdf?locale=es")) as pdf:
        console.get_by_role("button", name="Show").click()
    # The PDF frame loaded a PDF from the console (Chromium shows it in its viewer: the bytes are fetched again).
    assert pdf.value.status == 200 and pdf.value.headers["content-type"] == "application/pdf"
    assert console.request.get(pdf.value.url).body().startswith(b"%PDF-")
    expect(console.locator("iframe.pdf-frame")).to_be_visible()

    sms = console.locator("section#sms")
    text = sms.locator("pre").inner_text()
    facts = sms_facts(text)
    expect(sms.locator(".sms-segments")).to_have_text(str(facts.segments))
    expect(sms.locator(".sms-encoding")).to_have_text(facts.encoding)
    assert "INV-2026-0042" in text

    email = console.locator("section#email")
    expect(email.locator(".email-subject")).to_contain_text("INV-2026-0042")
    # The email's HTML is in a sandboxed frame of its own: it renders, and the console cannot reach into it (an
    # opaque origin), so neither can it reach the console.
    frame = console.frame_locator("iframe.email-frame")
    expect(frame.locator("body")).to_contain_text("INV-2026-0042")
    assert console.evaluate("document.querySelector('iframe.email-frame').contentDocument") is None
    console.wait_for_timeout(1500)  # the PDF viewer draws the page a moment after it loads
    console.screenshot(path=screenshots / "template-preview.png", full_page=True)


def test_templates__a_preview_is_readable_on_a_phone(phone: Page, console_stack: ConsoleStack) -> None:
    phone.goto(f"{console_stack.url}/templates/appointment.reminder?locale=de")
    expect(phone.locator("section#voice pre").first).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
