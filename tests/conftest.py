"""Fixtures shared by every suite: settings that never collide between tests."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from consumers.dev.broker import DEFAULT_PORTS, free_port
from consumers.dev.samples import always_open_catalog
from schemas.settings import Settings


def _parallel_process() -> None:
    """Under pytest-xdist each test process hands out ports from a slice of its own (and so does every worker or
    `herald dev` it starts): processes walking one range side by side for minutes would meet. xdist also starts
    its processes with COLUMNS=80 and LINES=24, which rich reads once, when the CLI's console is made: the CLI
    tests set their own width per run."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if worker is None or count is None:
        return
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
    if "HERALD_DEV_PORTS" in os.environ:
        return
    width = len(DEFAULT_PORTS) // int(count)
    start = DEFAULT_PORTS.start + int(worker.removeprefix("gw")) * width
    os.environ["HERALD_DEV_PORTS"] = f"{start}-{start + width}"


_parallel_process()


def unique_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings with a topic prefix, app id and ports of their own."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = dict(topic_prefix=f"t{tag}.", app_id=f"herald-{tag}", data_dir=tmp_path,
                                     smtp_port=free_port(), web_port=free_port(), admin_port=free_port(),
                                     secret="test-secret",
                                     smtp_host="127.0.0.1", log_level="info",
                                     catalog=always_open_catalog(tmp_path))
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unique_settings(tmp_path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests share one stack and one Chromium (package-scoped, ~15 s to start): under pytest-xdist's
    `--dist loadgroup` they all run in one process, one after another."""
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.xdist_group("browser"))
