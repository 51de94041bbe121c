"""Structured logs: one logfmt line per record (`ts=… level=… logger=… msg=… key=value`).

Callers pass ids and reasons through `extra=`; bodies, codes and addresses never go into a log line.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    """Formats a record as logfmt, with every `extra=` field as a key."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info and record.exc_info[0] is not None:
            fields["error"] = record.exc_info[0].__name__
            fields["traceback"] = self.formatException(record.exc_info)
        return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


def logging_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping that sends every logger through `LogfmtFormatter`."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"logfmt": {"()": LogfmtFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "logfmt",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        # Faust and mode log whole records at debug (bodies, addresses, codes): never below info, whatever
        # HERALD_LOG_LEVEL says. tests/integration/test_personal_data.py scans a debug run for personal data.
        # httpx logs each request's full URL at info: a customer's webhook URL may carry a token in its path or
        # query, and providers' URLs name accounts. Herald logs its sends itself, with hosts only.
        "loggers": {"aiokafka": {"level": "WARNING"}, "httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"},
                    **{name: {"level": _at_least_info(level)} for name in LIBRARIES_WITH_RECORDS}},
    }


LIBRARIES_WITH_RECORDS = ("faust", "mode", "aiohttp.access")


def _at_least_info(level: str) -> str:
    return level.upper() if logging.getLevelName(level.upper()) >= logging.INFO else "INFO"
