"""Fixtures shared by every suite: settings that never collide between tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from consumers.dev.broker import free_port
from consumers.dev.samples import always_open_catalog
from schemas.settings import Settings


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
