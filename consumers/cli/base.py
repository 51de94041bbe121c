"""What every `herald` subcommand shares: the consoles, settings read with one clear line per problem, and the
error handling (`HeraldGroup`) that turns a mistake into one line on stderr and an exit code, never a traceback.

Exit codes: 0 done; 1 the command ran and failed or refused (a check failed, nothing matched, a template did not
render); 2 the command line or the environment is wrong (an option, an argument, a setting); 3 Kafka could not be
reached or did not answer; 4 an unexpected error (a bug: `herald --debug …` or `HERALD_DEBUG=1` print its
traceback); 130 interrupted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from typer.core import TyperGroup

from schemas.settings import Settings, configuration_errors

console = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERNAL = 4

# Long-running commands keep their own logs; every other command is a client whose library warnings (aiokafka's
# "Unable connect to …") would only repeat, in many lines, the one line the command prints.
SERVICES = frozenset({"broker", "worker", "sim", "dev", "demo"})
DEBUG_FLAG = "--debug"


class CliError(Exception):
    """A mistake or a refusal: reported as one line on stderr with `exit_code`, never as a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, exit_code: int = EXIT_FAILED) -> NoReturn:
    raise CliError(message, exit_code)


def error_line(message: str) -> None:
    """`error: …` on stderr, on one line whatever the message holds."""
    err.print(Text.assemble(("error: ", "bold red"), " ".join(message.split())), soft_wrap=True, highlight=False)


def warn(message: str) -> None:
    """`warning: …` on stderr, on one line."""
    err.print(Text.assemble(("warning: ", "yellow"), " ".join(message.split())), soft_wrap=True, highlight=False)


def read_settings() -> Settings:
    """The settings from the environment; on a problem, one `configuration error:` line each and exit code 2."""
    try:
        return Settings()
    except ValidationError as exc:
        # One line per problem, naming the variable; pydantic's own text would echo the values (secrets).
        for line in configuration_errors(exc):
            err.print(f"[red]configuration error:[/red] {escape(line)}", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None


def kafka_bootstrap() -> str:
    """The bootstrap servers the command used, for messages (read again: the error may come before settings)."""
    return os.environ.get("HERALD_KAFKA_BOOTSTRAP") or str(Settings.model_fields["kafka_bootstrap"].default)


def explain(exc: BaseException) -> tuple[str, int] | None:
    """The line and exit code for an error a user can act on; None for an unexpected one (a bug)."""
    if isinstance(exc, CliError):
        return str(exc), exc.exit_code
    # Only classes already imported can have been raised: the check costs no import.
    kafka = sys.modules.get("aiokafka.errors")
    if kafka is not None and isinstance(exc, kafka.KafkaError):
        where = f"Kafka at {kafka_bootstrap()} (HERALD_KAFKA_BOOTSTRAP)"
        if isinstance(exc, kafka.KafkaConnectionError | kafka.NodeNotReadyError):
            return f"cannot reach {where}: is it running?", EXIT_UNAVAILABLE
        if isinstance(exc, kafka.KafkaTimeoutError | kafka.RequestTimedOutError):
            return f"{where} did not answer in time", EXIT_UNAVAILABLE
        return f"{where}: {type(exc).__name__}: {exc}", EXIT_UNAVAILABLE
    errors = sys.modules.get("channels.errors")
    if errors is not None and isinstance(exc, errors.RenderError):
        return f"cannot render: {exc}", EXIT_FAILED
    catalog = sys.modules.get("schemas.catalog")
    if catalog is not None and isinstance(exc, catalog.CatalogError):
        return f"catalog: {exc}", EXIT_USAGE
    if isinstance(exc, OSError):  # a file, a permission, a socket: the environment, not a bug
        return str(exc) or type(exc).__name__, EXIT_FAILED
    return None


def _take_debug(args: list[str]) -> tuple[list[str], bool]:
    """`--debug` is accepted anywhere before a `--`: after the subcommand is where one types it."""
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != DEBUG_FLAG] + args[end:]
    return kept, len(kept) != len(args)


def _command_name(args: Sequence[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


@contextlib.contextmanager
def _quiet_client_logs(quiet: bool) -> Iterator[None]:
    logger = logging.getLogger("aiokafka")
    level = logger.level
    if quiet:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _usage_line(exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "herald"
    return f"{exc.format_message()} (see '{path} --help')"


class HeraldGroup(TyperGroup):
    """The `herald` command: runs a subcommand and reports what went wrong as one line and an exit code.

    Known errors (`CliError`, click's usage errors, Kafka unreachable, a template that does not render, a bad
    catalog, a file problem) print `error: …`; anything else is a bug and prints one line saying so, or its
    traceback with `--debug` or `HERALD_DEBUG=1`. Works the same under `typer.testing.CliRunner`."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
        argv, debug = _take_debug(list(sys.argv[1:] if args is None else args))
        debug = debug or os.environ.get("HERALD_DEBUG", "").lower() in ("1", "true", "yes", "on")
        with _quiet_client_logs(not debug and _command_name(argv) not in SERVICES):
            sys.exit(self._run(argv, complete_var, windows_expand_args, debug, extra))

    def _run(self, argv: list[str], complete_var: str | None, windows_expand_args: bool, debug: bool,
             extra: dict[str, Any]) -> int:
        try:
            # Not standalone: errors come back here instead of being printed by click; an Exit's code is returned.
            rv = super().main(argv, "herald", complete_var, False, windows_expand_args, **extra)
            return rv if isinstance(rv, int) else 0
        except typer.TyperException as exc:  # click's errors, as typer vendors them: usage, bad parameter
            # `herald`, `herald dlq`: NoArgsIsHelpError has printed the help already (typer's rich_utils tells it
            # by name too, not importing it).
            if type(exc).__name__ != "NoArgsIsHelpError":
                error_line(_usage_line(exc))
            return exc.exit_code
        except typer.Abort:
            error_line("aborted")
            return EXIT_FAILED
        except Exception as exc:
            known = explain(exc)
            if debug:
                traceback.print_exception(exc, file=sys.stderr)
            if known is not None:
                error_line(known[0])
                return known[1]
            error_line(f"unexpected {type(exc).__name__}: {exc}"
                       + ("" if debug else " (run with --debug or HERALD_DEBUG=1 for the traceback)"))
            return EXIT_INTERNAL


def global_options(debug: Annotated[bool, typer.Option(
        DEBUG_FLAG, help="On an unexpected error, print its traceback (also HERALD_DEBUG=1); accepted after the "
        "subcommand too.")] = False) -> None:
    """The `herald` callback: documents the options every subcommand takes (`HeraldGroup` reads them)."""
