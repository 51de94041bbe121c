"""Rates in a real browser: the last 24 hours by channel, chosen with the form, with counts beside the rates and
the charts drawn; and the same page on a phone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PHONE, ConsoleStack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def email_sent(page: Page) -> int:
    cell = page.locator('tr[data-group="email"] td[data-count="sent"]')
    return int(cell.inner_text().replace(",", "")) if cell.count() else 0


def test_rates__the_last_day_by_channel_with_counts_and_charts(console: Page, console_stack: ConsoleStack,
                                                               screenshots: Path) -> None:
    console.goto(f"{console_stack.url}/rates")
    console.get_by_role("radio", name="the last 24 hours").check()
    for label, wanted in (("type", False), ("channel", True), ("locale", False)):
        console.get_by_role("checkbox", name=label, exact=True).set_checked(wanted)
    console.get_by_role("button", name="Show").click()
    console.wait_for_url(re.compile(r".*/console/rates\?window=24h.*group=channel"))

    def counted() -> bool:  # the worker's index follows herald.status a moment behind
        if email_sent(console) > 0:
            return True
        console.reload()
        return False

    assert wait_for(counted, timeout=20)
    row = console.locator('tr[data-group="email"]')
    expect(row.locator('td[data-rate="delivery"]')).to_contain_text(re.compile(r"\d+\.\d%"))
    expect(row.locator('td[data-rate="delivery"]')).to_contain_text(re.compile(r"n=\d+"))
    delivery = console.get_by_role("img", name=re.compile("^Delivery rate"))
    expect(delivery).to_be_visible()
    expect(delivery.locator("rect.bar")).to_have_count(console.locator("table.rates-table tbody tr").count())
    expect(console.get_by_role("img", name=re.compile("^Messages sent and failed per hour"))).to_be_visible()
    console.screenshot(path=screenshots / "rates.png", full_page=True)


def test_rates__read_on_a_phone(phone: Page, console_stack: ConsoleStack, screenshots: Path) -> None:
    phone.goto(f"{console_stack.url}/rates?window=24h&group=channel&grouped=1")
    expect(phone.locator("svg.chart").first).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=screenshots / "rates-phone.png", full_page=True)
