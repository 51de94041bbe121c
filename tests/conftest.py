"""Fixtures shared by every suite: settings that never collide between tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from consumers.app import BUNDLED_CATALOG
from consumers.broker import free_port
from schemas.settings import Settings


def always_open_catalog(directory: Path) -> Path:
    """The bundled catalog with quiet hours off for every type, written to `directory`.

    Workers read the wall clock, so a test that is not about quiet hours would otherwise schedule its messages
    for the morning whenever it runs in the recipient's night. Quiet hours are tested on injected clocks.
    """
    catalog = yaml.safe_load(BUNDLED_CATALOG.read_text(encoding="utf-8"))
    for entry in catalog["types"].values():
        entry["quiet_hours"] = "ignore"
    path = directory / "catalog.always-open.yaml"
    path.write_text(yaml.safe_dump(catalog, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def unique_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings with a topic prefix, app id and ports of their own."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = dict(topic_prefix=f"t{tag}.", app_id=f"herald-{tag}", data_dir=tmp_path,
                                     smtp_port=free_port(), web_port=free_port(), secret="test-secret",
                                     smtp_host="127.0.0.1", log_level="info",
                                     catalog=always_open_catalog(tmp_path))
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unique_settings(tmp_path)
