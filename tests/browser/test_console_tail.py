"""The live tail in a real browser: a filtered tail that shows a new status without a reload, and not one of
another channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from consumers.app import load_catalog
from consumers.cli.publish import EventProducer, make_event
from consumers.dev.samples import ANA, EMMA
from schemas.status import DeliveryStatus, Status
from tests.browser.conftest import PHONE, ConsoleStack, off_loop

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def publish(stack: ConsoleStack, *events: dict[str, Any]) -> None:
    async def send() -> None:
        async with EventProducer(stack.settings, load_catalog(stack.settings)) as producer:
            for event in events:
                await producer.publish(event, wait=True)

    off_loop(send())


def sent_of(stack: ConsoleStack, event_id: str) -> DeliveryStatus:
    def found(seen: list[DeliveryStatus]) -> bool:
        return any(s.event_id == event_id and s.status is Status.SENT for s in seen)

    return next(s for s in stack.statuses(found) if s.event_id == event_id and s.status is Status.SENT)


def test_tail__a_new_email_appears_without_a_reload_and_an_sms_does_not(console: Page, console_stack: ConsoleStack,
                                                                        screenshots: Path) -> None:
    console.goto(f"{console_stack.url}/tail?channel=email")
    expect(console.get_by_label("Channel")).to_have_value("email")
    state = console.get_by_role("status").filter(has_text="live")
    expect(state).to_be_visible()
    expect(console.locator("table.tail tbody tr").first).to_be_visible()  # the sample traffic, from the index
    console.evaluate("window.tailNotReloaded = true")

    catalog = load_catalog(console_stack.settings)
    email = make_event("order.confirmed", ANA, catalog.types["order.confirmed"].sample, source="herald/browser-test",
                       tenant="demo", channels=["email"])
    sms = make_event("shipping.dispatched", EMMA, catalog.types["shipping.dispatched"].sample,
                     source="herald/browser-test", tenant="demo", channels=["sms"])
    publish(console_stack, sms, email)
    mail, text = sent_of(console_stack, email["id"]), sent_of(console_stack, sms["id"])

    new_row = console.locator("table.tail tbody tr", has=console.get_by_role("link", name=mail.message_id))
    expect(new_row.first).to_be_visible(timeout=15_000)
    expect(new_row.first).to_contain_text("order.confirmed")
    expect(console.get_by_role("link", name=text.message_id)).to_have_count(0)
    assert console.evaluate("window.tailNotReloaded") is True
    channels = console.locator("table.tail tbody tr td:nth-child(4)").all_inner_texts()
    assert channels and set(channels) == {"email"}
    console.screenshot(path=screenshots / "tail.png", full_page=True)


def test_tail__pauses_and_reads_on_a_phone(phone: Page, console_stack: ConsoleStack, screenshots: Path) -> None:
    phone.goto(f"{console_stack.url}/tail")
    expect(phone.get_by_role("status").filter(has_text="live")).to_be_visible()
    pause = phone.get_by_role("button", name="Pause")
    pause.click()
    expect(phone.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
    expect(phone.get_by_role("status").filter(has_text="paused")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=screenshots / "tail-phone.png", full_page=True)
