"""`herald worker`: create missing topics, build the app, run a Faust worker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio

import faust

from consumers.app import create_app
from consumers.logs import logging_config
from consumers.topics import ensure_topics
from schemas.settings import Settings


def run_worker(settings: Settings) -> None:
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings))
    app = create_app(settings)
    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level, redirect_stdouts=False,
                          logging_config=logging_config(settings.log_level), quiet=True)
    worker.execute_from_commandline()
