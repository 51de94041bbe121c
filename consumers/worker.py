"""`herald worker`: create missing topics, build the app, run a Faust worker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import ctypes
import sys
import threading
import time
from collections.abc import Callable

import faust

from channels.production import production_problems
from consumers.app import create_app
from consumers.observe.logs import logging_config
from consumers.topics import ensure_topics, kafka_client_kwargs
from schemas.settings import Settings

CONFIGURATION_ERROR_EXIT = 2
TRIM_EVERY = 10.0  # seconds between giving the C allocator's free pages back (`start_memory_trim`)


def preflight_problems(settings: Settings) -> list[str]:
    """What would stop this worker, found before it connects to anything: in production, enabled providers on
    development credentials; anywhere, Kafka TLS files that do not load."""
    problems = production_problems(settings)
    try:
        kafka_client_kwargs(settings)
    except ValueError as exc:
        problems.append(str(exc))
    return problems


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def start_memory_trim(interval: float = TRIM_EVERY,
                      trim: Callable[[int], int] | None = None) -> threading.Thread | None:
    """Every `interval` seconds, hand the pages the C allocator holds free back to the system.

    glibc keeps memory that was freed (a burst of fetched records, a sweep's pages) mapped for reuse, and returns
    it only from the top of its heaps, so a worker's resident memory creeps up with every peak it has been through
    (issue 13: 20 to 30 MB more after 100,000 events, none of it in use). `malloc_trim(0)` releases the free pages
    wherever they are; it takes milliseconds, in a thread of its own (ctypes lets go of the GIL meanwhile).
    Returns the thread, or None where there is nothing to call."""
    trim = trim or malloc_trim()
    if trim is None:
        return None

    def run() -> None:
        while True:
            time.sleep(interval)
            trim(0)

    thread = threading.Thread(target=run, name="herald-malloc-trim", daemon=True)
    thread.start()
    return thread


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
    start_memory_trim()
    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level, redirect_stdouts=False,
                          logging_config=logging_config(settings.log_level), quiet=True)
    worker.execute_from_commandline()
