"""A local SMTP sink (aiosmtpd) for dev and tests: keeps every message, as `.eml` files or in memory."""

from __future__ import annotations

import itertools
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

# aiosmtpd comes with the `devstack` extra, which the production image does not install: importing this module
# must not need it (only starting a sink does).
if TYPE_CHECKING:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session


class MailSink:
    """aiosmtpd handler: stores each message it accepts; `messages` is safe to read from another thread."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.raw: list[bytes] = []
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), first recipient), for latency benchmarks
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        if folder:
            folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        with self._lock:
            self.raw.append(raw)  # parsed only when asked for: parsing costs more than receiving
            self.arrivals.append((time.monotonic(), envelope.rcpt_tos[0] if envelope.rcpt_tos else ""))
            n = next(self._seq)
        if self.folder:
            (self.folder / f"{n:06d}.eml").write_bytes(raw)
        return "250 OK queued"

    def __len__(self) -> int:
        return len(self.raw)

    def snapshot(self) -> list[EmailMessage]:
        """Every message received so far, parsed."""
        with self._lock:
            raws = list(self.raw)
        return [message_from_bytes(r, policy=policy.default) for r in raws]


def start_mail_sink(port: int, folder: Path | None = None, host: str = "127.0.0.1") -> tuple[Controller, MailSink]:
    """Start an SMTP server in a background thread; call `controller.stop()` to end it."""
    from aiosmtpd.controller import Controller

    sink = MailSink(folder)
    controller = Controller(sink, hostname=host, port=port, data_size_limit=25 * 1024 * 1024)
    controller.start()
    return controller, sink
