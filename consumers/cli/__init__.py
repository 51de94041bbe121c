"""consumers/cli: the `herald` command (`commands`, a typer app; `base` turns every mistake into one line on stderr
and an exit code) and the tools behind its subcommands: checking and publishing events, reading statuses, the
dead-letter queue and template checks. May import anything in consumers, channels and schemas; nothing in a worker
imports it. Only `main` and `app` are exposed here, lazily, for the console script `consumers.cli:main` and
`python -m consumers`; `import consumers.cli.publish` stays light.
"""

from __future__ import annotations

from typing import Any


def main() -> None:
    from consumers.cli.commands import main as run

    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        from consumers.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
