"""The console's frame in a real browser: signing in, the navigation by keyboard, and a phone-sized screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PHONE, TOKEN, ConsoleStack

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_console__sign_in_then_every_page_is_one_link_away(console: Page, screenshots: Path) -> None:
    nav = console.get_by_role("navigation", name="Console")
    for label in ("Find", "Live tail", "Templates", "Dead letters", "Health", "Rates"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()
    console.screenshot(path=screenshots / "home.png", full_page=True)


def test_console__a_wrong_token_is_refused_in_the_page(browser: Browser, console_stack: ConsoleStack) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{console_stack.url}/health")
    page.get_by_label("Admin token").fill(TOKEN + "-wrong")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("That is not the admin token.")
    assert "/console/login" in page.url
    context.close()


def test_console__the_skip_link_is_the_first_stop_of_the_keyboard(console: Page) -> None:
    console.keyboard.press("Tab")
    focused = console.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"


def test_console__readable_on_a_phone_without_sideways_scrolling(phone: Page, screenshots: Path) -> None:
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    phone.screenshot(path=screenshots / "home-phone.png", full_page=True)
