"""The health page in a real browser: a row with a breaker badge for every configured provider, latency
percentiles per lane from the stack's traffic, and the numbers refreshing themselves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from channels.registry import parse_provider_spec
from tests.browser.conftest import PHONE, ConsoleStack

pytestmark = [pytest.mark.integration, pytest.mark.browser]

DURATION = re.compile(r"^\d+(\.\d+)? (ms|s)$")


def test_health__every_provider_has_a_breaker_and_the_lanes_have_percentiles(console: Page,
                                                                             console_stack: ConsoleStack,
                                                                             screenshots: Path) -> None:
    console.get_by_role("navigation", name="Console").get_by_role("link", name="Health").click()
    expect(console.get_by_role("heading", name="Health", level=1)).to_be_visible()
    configured = [f"{channel}/{vendor}" for channel, vendors in
                  parse_provider_spec(console_stack.settings.providers).items() for vendor in vendors]
    assert len(configured) == 8  # email=smtp,sendgrid; sms=twilio,vonage; voice, whatsapp, push, webhook
    for key in configured:
        badge = console.locator(f'tr[data-provider="{key}"] .badge.breaker')
        expect(badge).to_have_text(re.compile(r"^(closed|half-open|open)$"))
    for lane in ("normal", "critical"):
        for p in (50, 95, 99):
            value = console.locator(f'[data-lane="{lane}"] [data-percentile="{p}"]').inner_text()
            assert DURATION.match(value), f"{lane} p{p}: {value!r}"
    console.screenshot(path=screenshots / "health.png", full_page=True)


def test_health__the_numbers_refresh_themselves(console: Page, console_stack: ConsoleStack) -> None:
    console.clock.install()  # the page's 10-second timer, run forward instead of waited for
    console.goto(f"{console_stack.url}/health?window=5m")
    box = console.locator("[data-health]")
    assert box.get_attribute("data-updated") is None
    with console.expect_response(lambda r: "/console/health/fragment?window=5m" in r.url) as fetched:
        console.clock.run_for(10_000)
    assert fetched.value.status == 200
    expect(box).to_have_attribute("data-updated", re.compile(r"^\d+$"))
    expect(box.locator('tr[data-provider="email/smtp"]')).to_be_visible()


def test_health__readable_on_a_phone(phone: Page, console_stack: ConsoleStack, screenshots: Path) -> None:
    phone.goto(f"{console_stack.url}/health")
    expect(phone.locator('tr[data-provider="email/smtp"]')).to_be_attached()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=screenshots / "health-phone.png", full_page=True)
