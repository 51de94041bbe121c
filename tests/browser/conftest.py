"""Browser tests of the console: `make run`'s own stack (embedded broker, SMTP sink, provider simulator, a worker
with every channel) with the sample traffic, and Debian's Chromium driven by Playwright (never Playwright's own
browser download). Screenshots go to `.herald/test-output/console/` (HERALD_TEST_OUTPUT overrides the folder).

The tests are synchronous (Playwright's sync API wants no running event loop). The stack and the browser are shared
by this package's tests (the stack takes about 15 s to start and settle) and closed when they are done: while
Playwright's sync API is open it keeps an event loop running in the test thread, which every asynchronous test of
the other suites would trip over."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from rich.console import Console

from consumers.cli.publish import parse_status, read_topic
from consumers.dev.broker import free_port
from consumers.dev.devstack import _publish_samples, demo_settled, dev_stack
from schemas.settings import Settings
from schemas.status import DeliveryStatus
from tests.conftest import unique_settings

CHROMIUM = os.environ.get("HERALD_CHROMIUM", "/usr/bin/chromium")
# What the probe of this machine kind found Chromium needs here: no sandbox as root, and no background networking
# (its connections are refused by the closed network, many at a time).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TOKEN = "browser-test-admin-token-5f1c0a9d"
OUTPUT = Path(os.environ.get("HERALD_TEST_OUTPUT", Path(__file__).resolve().parents[2] / ".herald" / "test-output"))
PHONE = {"width": 390, "height": 844}
T = TypeVar("T")


@pytest.fixture(scope="package")
def screenshots() -> Path:
    folder = OUTPUT / "console"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def off_loop(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end in a thread of its own: Playwright's sync API keeps an event loop running in
    the test's thread, where `asyncio.run` refuses to start another."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


class ConsoleStack:
    """The running stack: its settings, the console's address, and the statuses published so far."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.admin_port}/console"

    def statuses(self, done: Callable[[list[DeliveryStatus]], bool], timeout: float = 60) -> list[DeliveryStatus]:
        """Every status of herald.status, read until `done(all so far)` holds."""
        seen: list[DeliveryStatus] = []

        async def follow() -> None:
            async for record in read_topic(self.settings, "status", follow=True, idle_timeout=0.3):
                seen.append(parse_status(record))
                if done(seen):
                    return

        off_loop(asyncio.wait_for(follow(), timeout))
        return seen

    def publish_samples(self) -> int:
        """The dev stack's sample events (every type, every channel) and its 3 bad ones; returns how many."""
        return off_loop(_publish_samples(self.settings))


@pytest.fixture(scope="package")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    """`herald dev`'s stack with the admin token set, the samples published and settled."""
    data = tmp_path_factory.mktemp("console-stack")
    settings = unique_settings(data, kafka_bootstrap=f"127.0.0.1:{free_port()}", sim_port=free_port(),
                               admin_token=TOKEN)
    with dev_stack(settings, Console(quiet=True)) as live:
        stack = ConsoleStack(live)
        count = stack.publish_samples()
        stack.statuses(lambda seen: demo_settled(seen, count))
        yield stack


@pytest.fixture(scope="package")
def browser(console_stack: ConsoleStack) -> Iterator[Browser]:
    # After the stack: dev_stack runs asyncio.run, which Playwright's sync API (a running loop) would refuse.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def sign_in(context: BrowserContext, stack: ConsoleStack) -> Page:
    page = context.new_page()
    page.goto(f"{stack.url}/")
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{stack.url}/")
    return page


@pytest.fixture
def console(browser: Browser, console_stack: ConsoleStack) -> Iterator[Page]:
    """A signed-in page on a desktop-sized screen."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield sign_in(context, console_stack)
    context.close()


@pytest.fixture
def phone(browser: Browser, console_stack: ConsoleStack) -> Iterator[Page]:
    """A signed-in page on a phone-sized screen."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    yield sign_in(context, console_stack)
    context.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def admin_get(stack: ConsoleStack, path: str) -> httpx.Response:
    """A console or admin request with the bearer token (no browser)."""
    return httpx.get(f"http://127.0.0.1:{stack.settings.admin_port}{path}",
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
