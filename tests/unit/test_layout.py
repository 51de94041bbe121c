"""The layout's rules, read from the imports themselves: dependencies point one way (consumers -> channels ->
schemas), each package of consumers imports only what its `__init__` docstring allows, and the development stack
is imported by no production module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
OURS = ("schemas", "channels", "consumers")

# Package -> packages of ours it must never import (at module level or inside a function).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "schemas": ("channels", "consumers"),
    "channels": ("consumers",),
    "consumers.observe": ("consumers.pipeline", "consumers.state", "consumers.inbound", "consumers.cli",
                          "consumers.dev", "channels"),
    "consumers.state": ("consumers.pipeline", "consumers.inbound", "consumers.cli", "consumers.dev"),
    "consumers.pipeline": ("consumers.inbound", "consumers.cli", "consumers.dev", "consumers.hooks",
                           "consumers.app"),
    "consumers.inbound": ("consumers.cli", "consumers.dev", "consumers.hooks", "consumers.app"),
    "consumers.console": ("consumers.cli", "consumers.dev", "consumers.hooks", "consumers.app"),
}
# The only production modules that reach the development stack: the CLI's `herald dev|demo|sim|broker`, lazily.
DEV_STACK_USERS = {"consumers.cli.commands"}


def modules() -> dict[str, Path]:
    found = {}
    for top in OURS:
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] in OURS}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


MODULES = modules()


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layout__a_package_never_imports_what_its_rules_forbid(package: str) -> None:
    crossings = sorted(f"{module} -> {name}" for module, path in MODULES.items() if within(module, package)
                       for name in imports(path) for banned in FORBIDDEN[package] if within(name, banned))
    assert crossings == []


def test_layout__the_development_stack_is_imported_by_no_production_module() -> None:
    users = {module for module, path in MODULES.items() if not within(module, "consumers.dev")
             and any(within(name, "consumers.dev") for name in imports(path))}
    assert users == DEV_STACK_USERS


def test_layout__every_package_says_what_belongs_there_and_what_it_may_import() -> None:
    for path in [*ROOT.glob("*/__init__.py"), *ROOT.glob("*/*/__init__.py")]:
        if path.parts[-3] in OURS or path.parts[-2] in OURS:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            assert len(doc) > 80, f"{path.relative_to(ROOT)} has no docstring describing the package"


def test_layout__the_rules_see_the_imports() -> None:
    # The check must be able to fail: a known import is found.
    assert "consumers.pipeline.outlets" in imports(MODULES["consumers.pipeline.delivery"])
