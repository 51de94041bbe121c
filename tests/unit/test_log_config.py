"""What the worker's logging configuration lets through, whatever HERALD_LOG_LEVEL says."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator

import pytest

from consumers.observe.logs import logging_config

pytestmark = pytest.mark.unit


@pytest.fixture
def configured() -> Iterator[None]:
    names = ["", "httpx", "httpcore", "aiokafka", "faust", "mode", "aiohttp.access", "consumers"]
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in names}
    try:
        logging.config.dictConfig(logging_config("debug"))
        yield
    finally:
        for name, (level, handlers) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.handlers[:] = handlers


@pytest.mark.parametrize(("logger", "lowest"), [
    ("httpx", logging.WARNING),  # each request's full URL at info: a webhook URL may carry a token
    ("httpcore", logging.WARNING),
    ("aiokafka", logging.WARNING),
    ("faust", logging.INFO),  # whole records at debug
    ("mode", logging.INFO),
    ("aiohttp.access", logging.INFO),
    ("consumers.pipeline.delivery", logging.DEBUG),  # Herald's own: as asked
])
def test_logs__at_debug_libraries_that_log_urls_or_records_stay_quiet(configured: None, logger: str,
                                                                         lowest: int) -> None:
    assert logging.getLogger(logger).getEffectiveLevel() == lowest
