"""Finding a message in a real browser: by its id and by the recipient's address (which never reaches a URL),
and its timeline, on a desktop and on a phone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Request, expect

from consumers.dev.samples import ANA
from consumers.state.preferences import address_key
from schemas.status import DeliveryStatus, Status
from tests.browser.conftest import PHONE, ConsoleStack

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def sent_email_to_ana(stack: ConsoleStack) -> DeliveryStatus:
    """A `sent` status of an email to Ana (a sample person), found by the hash herald.status keys her with."""
    hashed = address_key(stack.settings.secret.get_secret_value().encode(), "email", ANA["email"])

    def found(seen: list[DeliveryStatus]) -> bool:
        return any(s.recipient == hashed and s.status is Status.SENT for s in seen)

    return next(s for s in stack.statuses(found) if s.recipient == hashed and s.status is Status.SENT)


def search(page: Page, text: str) -> None:
    page.keyboard.press("/")  # the console's shortcut to the search field
    field = page.get_by_label("Message id, event id, idempotency key or recipient address")
    expect(field).to_be_focused()
    field.fill(text)
    field.press("Enter")


def test_find__a_message_by_its_id_shows_its_timeline(console: Page, console_stack: ConsoleStack,
                                                      screenshots: Path) -> None:
    sent = sent_email_to_ana(console_stack)
    search(console, sent.message_id)
    console.wait_for_url(f"**/console/messages/{sent.message_id}")
    expect(console.get_by_role("heading", level=1)).to_have_text(f"Message {sent.message_id}")
    timeline = console.locator("table.timeline")
    row = timeline.locator("tbody tr", has=console.locator(".badge", has_text=re.compile(r"^sent$")))
    expect(row).to_have_count(1)
    expect(row).to_contain_text(str(sent.provider))
    expect(console.locator("dl.facts")).to_contain_text(str(sent.recipient))
    expect(console.get_by_role("link", name="All messages of this event")).to_be_visible()
    console.screenshot(path=screenshots / "message.png", full_page=True)


def test_find__by_the_recipients_address_which_never_reaches_a_url(console: Page, console_stack: ConsoleStack,
                                                                   screenshots: Path) -> None:
    sent = sent_email_to_ana(console_stack)
    urls: list[str] = []

    def remember(request: Request) -> None:
        urls.append(request.url)

    console.on("request", remember)
    search(console, "  Ana@Example.com ")  # as a person might type it
    console.wait_for_url("**/console/find?r=*")
    link = console.get_by_role("link", name=sent.message_id)
    expect(link).to_be_visible()
    expect(console.get_by_role("heading", name="Messages to the address you searched for")).to_be_visible()
    for url in [*urls, console.url]:
        assert not re.search(r"ana(@|%40)", url, re.IGNORECASE), url
    assert console.get_by_label("Message id, event id, idempotency key or recipient address").input_value() == ""
    console.screenshot(path=screenshots / "find.png", full_page=True)
    link.click()
    console.wait_for_url(f"**/console/messages/{sent.message_id}")


def test_find__the_message_page_reads_on_a_phone(phone: Page, console_stack: ConsoleStack,
                                                 screenshots: Path) -> None:
    sent = sent_email_to_ana(console_stack)
    phone.goto(f"{console_stack.url}/messages/{sent.message_id}")
    expect(phone.locator("table.timeline")).to_contain_text("sent")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=screenshots / "message-phone.png", full_page=True)
