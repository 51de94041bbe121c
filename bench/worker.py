"""A Herald worker with some agents left out, for benchmarks that measure one stage alone.

`python -m bench.worker --without send_email` runs the worker `herald worker` would run (settings from the
`HERALD_*` environment), minus the named Faust agents: the routing benchmark keeps the delivery agents out, so the
dispatches it counts were produced by the ingest stage with the event loop to itself.
"""

from __future__ import annotations

import argparse
import asyncio

import faust

from consumers.app import create_app
from consumers.observe.logs import logging_config
from consumers.topics import ensure_topics
from schemas.settings import Settings


def main(without: list[str]) -> None:
    settings = Settings()
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings))
    app = create_app(settings)
    for name in without:
        del app.agents[name]  # before the worker starts: the agent never subscribes
    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level, redirect_stdouts=False,
                          logging_config=logging_config(settings.log_level), quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--without", action="append", default=[], help="an agent to leave out (repeatable)")
    main(parser.parse_args().without)
