"""What every `herald` subcommand shares: the consoles, and settings read with one clear line per problem."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from schemas.settings import Settings, configuration_errors

console = Console()
err = Console(stderr=True)


def read_settings() -> Settings:
    """The settings from the environment; on a problem, one `configuration error:` line each and exit code 2."""
    try:
        return Settings()
    except ValidationError as exc:
        # One line per problem, naming the variable; pydantic's own text would echo the values (secrets).
        for line in configuration_errors(exc):
            err.print(f"[red]configuration error:[/red] {escape(line)}", soft_wrap=True)
        raise typer.Exit(2) from None
