"""Integration fixtures: one Tansu broker per session, a fresh stack (topics, SMTP sink) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from consumers.dev.broker import EmbeddedBroker, free_port
from consumers.dev.mailsink import start_mail_sink
from consumers.dev.simulator.app import SimServer
from tests.conftest import unique_settings
from tests.integration.harness import Stack


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(free_port(), log_path=log) as b:
        yield b


@pytest.fixture
async def stack(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[Stack]:
    settings = unique_settings(tmp_path, kafka_bootstrap=broker.bootstrap)
    controller, sink = start_mail_sink(settings.smtp_port)
    s = Stack(settings=settings, sink=sink)
    await s.create_topics()
    try:
        yield s
    finally:
        s.stop_workers()
        controller.stop()


@pytest.fixture
async def sim_stack(broker: EmbeddedBroker, tmp_path: Path, request: pytest.FixtureRequest
                    ) -> AsyncIterator[tuple[Stack, SimServer]]:
    providers = request.param
    web_port = free_port()
    public = f"http://127.0.0.1:{web_port}"
    sim = SimServer(unique_settings(tmp_path, public_url=public))
    await sim.start()
    settings = unique_settings(tmp_path, kafka_bootstrap=broker.bootstrap, web_port=web_port, public_url=public,
                               sim_url=sim.url, providers=providers)
    controller, sink = start_mail_sink(settings.smtp_port)
    stack = Stack(settings=settings, sink=sink)
    await stack.create_topics()
    try:
        yield stack, sim
    finally:
        stack.stop_workers()
        controller.stop()
        await sim.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed test's report ends with the tail of its workers' logs: a failure seen only in CI (rebalances,
    retries, a slow catch-up) is then explained by the run that had it."""
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        funcargs = getattr(item, "funcargs", {})
        stack = funcargs.get("stack") or (funcargs.get("sim_stack") or (None,))[0]
        if isinstance(stack, Stack):
            report.sections.append(("workers' logs (last 12,000 characters of each)", stack.worker_log(12_000)))
    return report
