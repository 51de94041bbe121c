"""The README's examples run as written: its Python blocks are programs (they compile as a script, their imports
resolve, the event they send passes the catalog check), every `herald` command line of its shell blocks parses,
and its `herald publish` example passes the check `publish` runs before sending."""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from consumers.app import load_catalog
from consumers.cli import commands as cli
from consumers.cli import publish
from consumers.cli.checks import check_event
from schemas.settings import Settings

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELLS = {"bash", "sh", "shell", "console"}
HERALD_COMMAND = re.compile(r"(^|[\s/])herald(\s|$)")


def blocks(*languages: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(README.read_text()) if m.group(1) in languages]


def herald_lines() -> list[list[str]]:
    """Every `herald …` command of the shell blocks, as argv after `herald`: continuations joined, comments and
    leading VAR=value assignments dropped."""
    found = []
    for block in blocks(*SHELLS):
        for line in block.replace("\\\n", " ").splitlines():
            if not HERALD_COMMAND.search(line):  # other commands' lines (a curl body across lines) are not split
                continue
            words = shlex.split(line, comments=True)
            at = next((i for i, w in enumerate(words) if w.rsplit("/", 1)[-1] == "herald"), None)
            if at is not None and all("=" in w for w in words[:at]):
                found.append(words[at + 1:])
    return found


def parse_only(args: list[str]) -> None:
    """Parse a command line down to its subcommand's options, without running it (click raises on a mistake)."""
    command = typer.main.get_command(cli.app)
    ctx = command.make_context("herald", list(args))
    while isinstance(command, TyperGroup):
        # The subcommand and its arguments, read the way TyperGroup.invoke reads them.
        name, sub, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert name is not None and sub is not None
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)


def test_readme__has_the_examples_these_tests_read() -> None:
    assert blocks("python") and any(line[:1] == ["publish"] for line in herald_lines())


@pytest.mark.parametrize("code", blocks("python"), ids=lambda code: code.splitlines()[0][:40])
def test_readme_python__compiles_as_a_script_and_its_imports_resolve(code: str) -> None:
    where = "README.md, a python block"
    tree = compile(code, where, "exec", flags=ast.PyCF_ONLY_AST)
    compile(tree, where, "exec")  # a top-level `await` is a SyntaxError here, as when the block is run as a script
    modules = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    modules += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    assert [m for m in modules if importlib.util.find_spec(m) is None] == []


def test_readme_python__the_event_the_producer_example_sends_passes_the_catalog_check() -> None:
    [event] = [ast.literal_eval(node.value) for code in blocks("python") for node in ast.walk(ast.parse(code))
               if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["event"]]
    assert check_event(load_catalog(Settings()), event) == []


@pytest.mark.parametrize("args", herald_lines(), ids=lambda args: " ".join(args)[:50])
def test_readme_shell__every_herald_command_line_parses(args: list[str]) -> None:
    parse_only(args)


def test_readme_shell__the_publish_example_passes_the_check_and_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []

    class Producer:
        def __init__(self, *args: object) -> None:
            pass

        async def __aenter__(self) -> Producer:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def publish(self, event: dict[str, Any], *, wait: bool = False) -> None:
            sent.append(event)

    monkeypatch.setattr(publish, "EventProducer", Producer)
    for args in (line for line in herald_lines() if line[:1] == ["publish"]):
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 0, result.output
    assert sent


@pytest.mark.parametrize("args", [["status", "--bogus"], ["publish"], ["no-such-command"], ["dlq", "nope"]])
def test_parse_only__refuses_what_the_cli_would_refuse(args: list[str]) -> None:
    with pytest.raises(typer.TyperException):
        parse_only(args)
