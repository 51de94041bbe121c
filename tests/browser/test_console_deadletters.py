"""Dead letters in a real browser: the stack's 3 bad events listed with their reasons, one inspected with nothing
personal on the page, and one replayed after a confirmation. Other tests share the stack (and this file's replay
adds a dead letter), so the assertions look for the records they act on, not at totals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from consumers.dev.samples import SAMPLE_PEOPLE
from tests.browser.conftest import PHONE, ConsoleStack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

BAD_REASONS = ("unknown_type", "missing_payload_field", "invalid_json")


def rows(page: Page, reason: str) -> Locator:
    return page.locator("table.dl-table tbody tr", has=page.locator(".badge", has_text=re.compile(f"^{reason}$")))


def open_list(page: Page, stack: ConsoleStack) -> None:
    page.goto(f"{stack.url}/dead-letters")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dead letters")


def test_dead_letters__the_three_bad_events_with_their_reasons(console: Page, console_stack: ConsoleStack,
                                                               screenshots: Path) -> None:
    open_list(console, console_stack)
    for reason in BAD_REASONS:
        expect(rows(console, reason).first).to_be_visible()
        expect(rows(console, reason).first).to_contain_text("router")
        expect(rows(console, reason).first).to_contain_text(console_stack.settings.topic("events"))
    assert console.locator("table.dl-table tbody tr").count() >= 3
    console.screenshot(path=screenshots / "dead-letters.png", full_page=True)


def test_dead_letter__inspected_shows_headers_and_no_address_or_number_of_anyone(
        console: Page, console_stack: ConsoleStack, screenshots: Path) -> None:
    open_list(console, console_stack)
    rows(console, "unknown_type").first.get_by_role("link").click()
    expect(console.get_by_role("heading", level=1)).to_contain_text("Dead letter")
    expect(console.locator("dl.facts")).to_contain_text("unknown_type")
    expect(console.get_by_role("table")).to_contain_text("herald-source-offset")
    payload = console.locator("pre.dl-payload")
    expect(payload).to_contain_text('"type": "pizza.delivered"')
    expect(payload).to_contain_text('"email": \u2039string, 15 chars\u203a')
    html = console.content()
    for person in SAMPLE_PEOPLE:
        for field in ("email", "phone", "name"):
            if field in person:
                assert str(person[field]) not in html, field
    assert "600111222" not in html
    console.screenshot(path=screenshots / "dead-letter.png", full_page=True)


def test_dead_letters__one_replayed_after_a_confirmation_goes_back_to_its_topic(
        console: Page, console_stack: ConsoleStack, screenshots: Path) -> None:
    open_list(console, console_stack)
    before = rows(console, "invalid_json").count()
    target = rows(console, "invalid_json").last  # the stack's own `{not json`, the oldest of its reason
    where = target.get_attribute("data-letter")
    assert where
    console.get_by_label(f"Choose {where}").check()
    console.get_by_role("button", name="Replay selected…").click()
    console.wait_for_url("**/console/dead-letters/confirm?*")
    plan = console.locator(".dl-plan")
    events = console_stack.settings.topic("events")
    expect(plan).to_contain_text(f"1 dead letter will be sent back: 1 to {events}")
    expect(console.locator("table")).to_contain_text(where)
    console.screenshot(path=screenshots / "replay-confirm.png", full_page=True)
    console.get_by_role("button", name="Replay 1 now").click()
    console.wait_for_url("**/console/dead-letters/replayed/*")
    expect(console.locator(".dl-result")).to_contain_text("1 replayed")
    expect(console.locator(".dl-result")).to_contain_text(f"1 to {events}")
    # Back in the list it is marked; and the copy, still not JSON, fails the same way again: a new dead letter.
    open_list(console, console_stack)
    expect(console.locator(f'tr[data-letter="{where}"] .badge.ok')).to_have_text("replayed")

    def dead_lettered_again() -> bool:
        console.reload()
        return rows(console, "invalid_json").count() > before

    assert wait_for(dead_lettered_again, timeout=30)


def test_dead_letters__the_confirmed_form_sent_twice_replays_once(console: Page, console_stack: ConsoleStack) -> None:
    open_list(console, console_stack)
    where = rows(console, "missing_payload_field").last.get_attribute("data-letter")
    console.goto(f"{console_stack.url}/dead-letters/confirm?letter={where}")
    form = {name: console.locator(f'form[method="post"] input[name="{name}"]').first.get_attribute("value") or ""
            for name in ("csrf", "letter")}
    assert form["letter"] == where
    console.get_by_role("button", name="Replay 1 now").click()
    expect(console.locator(".dl-result")).to_contain_text("1 replayed")
    # The same form again, as a double click or a resubmitted page would send it, in the same session.
    again = console.request.post(f"{console_stack.url}/dead-letters/replay", form=form)
    assert again.ok
    text = again.text()
    assert "<strong>0 replayed</strong>" in text and "already replayed" in text


def test_dead_letters__read_on_a_phone(phone: Page, console_stack: ConsoleStack) -> None:
    open_list(phone, console_stack)
    expect(rows(phone, "unknown_type").first).to_be_attached()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
