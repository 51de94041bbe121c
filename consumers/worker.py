"""`herald worker`: create missing topics, build the app, run a Faust worker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import sys

import faust

from channels.production import production_problems
from consumers.app import create_app
from consumers.observe.logs import logging_config
from consumers.topics import ensure_topics, kafka_client_kwargs
from schemas.settings import Settings

CONFIGURATION_ERROR_EXIT = 2


def preflight_problems(settings: Settings) -> list[str]:
    """What would stop this worker, found before it connects to anything: in production, enabled providers on
    development credentials; anywhere, Kafka TLS files that do not load."""
    problems = production_problems(settings)
    try:
        kafka_client_kwargs(settings)
    except ValueError as exc:
        problems.append(str(exc))
    return problems


def run_worker(settings: Settings) -> None:
    """Check the configuration, then run one worker; on a problem, one `configuration error:` line each and exit 2."""
    if problems := preflight_problems(settings):
        for problem in problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        raise SystemExit(CONFIGURATION_ERROR_EXIT)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings))
    app = create_app(settings)
    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level, redirect_stdouts=False,
                          logging_config=logging_config(settings.log_level), quiet=True)
    worker.execute_from_commandline()
