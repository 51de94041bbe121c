"""Open and click tracking for email: signed, expiring links, and what `/t/o/…` and `/t/c/…` answer.

- `GET /t/o/{message_id}.gif?e={expiry}&s={signature}`: a 1x1 transparent GIF (`Cache-Control: no-store`), and an
  `opened` status for the message.
- `GET /t/c/{message_id}?u={url}&e={expiry}&s={signature}`: a 302 to `u`, and a `clicked` status.

The signature (HMAC with the current `HERALD_SECRET`; any secret of the ring verifies, so links survive a rotation)
covers the purpose, the message id, the expiry and, for a click, the exact URL: Herald redirects only to a URL it
put in a message itself, never to one a link's holder chose (no open redirect). A link that is unsigned, tampered
with or expired is answered 403 (400 when it cannot be read), with a plain-text page and never a `Location`.

Statuses travel as receipts (topic `receipts`, consumers/hooks.py `route_receipts`): the worker that owns the
message's send record publishes them, described like every receipt (type, tenant, recipient, provider). The same
open or click of a message is published once per `repeat_window` per worker: image proxies and link scanners fetch
a message's pixel and links several times in a row. Nothing about the request (address, user agent) is kept.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit

from channels.rendering.tracking import trackable
from channels.signatures import unix_seconds
from consumers.identity import KeyRing
from consumers.observe.metrics import Metrics
from consumers.pipeline.status import Receipt
from schemas.dispatch import Dispatch
from schemas.status import Status

log = logging.getLogger(__name__)

OPEN_PATH = "/t/o/{message_id}.gif"
CLICK_PATH = "/t/c/{message_id}"
# The smallest transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
# Herald's message ids are `msg-` and hex; nothing with `|` (the separator of signed parts) can be one.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a tracking view answers (web.py turns it into a response)."""

    status: int
    body: bytes
    content_type: str = _TEXT
    location: str | None = None


def _open_parts(message_id: str, expires: str) -> tuple[str, ...]:
    return ("track-open", message_id, expires)


def _click_parts(message_id: str, expires: str, url: str) -> tuple[str, ...]:
    return ("track-click", message_id, expires, url)  # the URL last: a `|` in it cannot shift the other parts


class TrackingLinks:
    """Signs and checks tracking links. `ttl` is how long after the message's own expiry (`expires_at`, its send
    time plus the type's `ttl`) a link keeps working."""

    def __init__(self, secret: bytes | KeyRing, public_url: str, *, ttl: timedelta,
                 clock: Callable[[], datetime]) -> None:
        self.keys = KeyRing.of(secret)
        self.public_url = public_url.rstrip("/")
        self.ttl = ttl
        self.clock = clock

    def expiry(self, d: Dispatch) -> str:
        """Unix seconds when the message's links stop working: the same on every attempt and resend."""
        return str(int(((d.expires_at or d.event_time) + self.ttl).timestamp()))

    def open_link(self, message_id: str, expires: str) -> str:
        signature = self.keys.sign(*_open_parts(message_id, expires))
        return f"{self.public_url}/t/o/{quote(message_id, safe='')}.gif?e={expires}&s={signature}"

    def click_link(self, message_id: str, expires: str, url: str) -> str:
        """A link that redirects to exactly `url` (the caller checked it is `trackable`)."""
        signature = self.keys.sign(*_click_parts(message_id, expires, url))
        return (f"{self.public_url}/t/c/{quote(message_id, safe='')}?u={quote(url, safe='')}"
                f"&e={expires}&s={signature}")

    def is_own(self, url: str) -> bool:
        """Whether `url` is one of Herald's (unsubscribe, document or tracking links): those are never wrapped."""
        return url == self.public_url or url.startswith(self.public_url + "/")

    def _current(self, expires: str) -> bool | None:
        seconds = unix_seconds(expires)
        return None if seconds is None else seconds >= self.clock().timestamp()

    def check_open(self, message_id: str, expires: str, signature: str) -> str:
        """`ok`, `expired` (signed, but too late) or `forbidden`. Never raises on hostile text."""
        if not _MESSAGE_ID.fullmatch(message_id) or (current := self._current(expires)) is None \
                or not self.keys.verify(signature, *_open_parts(message_id, expires)):
            return "forbidden"
        return "ok" if current else "expired"

    def check_click(self, message_id: str, expires: str, url: str, signature: str) -> str:
        """As `check_open`, for a click link and its URL; a URL Herald would not have wrapped is `forbidden`."""
        if not _MESSAGE_ID.fullmatch(message_id) or not trackable(url) or (current := self._current(expires)) is None \
                or not self.keys.verify(signature, *_click_parts(message_id, expires, url)):
            return "forbidden"
        return "ok" if current else "expired"


def location(url: str) -> str:
    """A header-safe `Location` for a checked URL: non-ASCII characters percent-encoded as UTF-8 (what a browser
    does to them before following the link); everything else exactly as signed."""
    return url if url.isascii() else "".join(c if c.isascii() else quote(c, safe="") for c in url)


class Tracking:
    """What `/t/o/…` and `/t/c/…` do, without the web framework (web.py adapts requests to it)."""

    def __init__(self, links: TrackingLinks, on_receipt: Callable[[Receipt], Awaitable[None]], metrics: Metrics,
                 *, repeat_window: float = 60.0, publish_timeout: float = 5.0, max_remembered: int = 100_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.links = links
        self.on_receipt = on_receipt
        self.metrics = metrics
        self.repeat_window = repeat_window
        self.publish_timeout = publish_timeout
        self.max_remembered = max_remembered
        self.monotonic = monotonic
        self._seen: OrderedDict[tuple[str, ...], float] = OrderedDict()  # (kind, message, url) -> when published

    def _count(self, kind: str, result: str) -> None:
        self.metrics.tracking.labels(kind, result).inc()

    async def open(self, message_id: str, query: Mapping[str, str]) -> Answer:
        """The pixel, and `opened` (once per `repeat_window`); 403 and no status for a bad or expired link."""
        verdict = self.links.check_open(message_id, query.get("e", ""), query.get("s", ""))
        if verdict != "ok":
            self._count("open", verdict)
            return Answer(403, b"This link is not valid." if verdict == "forbidden" else b"This link has expired.")
        await self._publish("open", message_id, Status.OPENED, detail="pixel")
        return Answer(200, PIXEL, content_type="image/gif")

    async def click(self, message_id: str, query: Mapping[str, str]) -> Answer:
        """A 302 to the signed URL, and `clicked` (once per `repeat_window` and URL); 403 and no redirect for a
        bad or expired link (an expired one names its URL as text, so the person can still get there)."""
        url = query.get("u", "")
        verdict = self.links.check_click(message_id, query.get("e", ""), url, query.get("s", ""))
        if verdict == "forbidden":
            self._count("click", verdict)
            return Answer(403, b"This link is not valid.")
        if verdict == "expired":  # signed by Herald, so naming the URL redirects nobody anywhere
            self._count("click", verdict)
            return Answer(403, f"This link has expired. It led to:\n\n{url}\n".encode())
        host = urlsplit(url).hostname or ""
        await self._publish("click", message_id, Status.CLICKED, detail=host, url=url)
        return Answer(302, b"", location=location(url))

    async def _publish(self, kind: str, message_id: str, status: Status, *, detail: str, url: str = "") -> None:
        """The status, through `receipts`; a broker that does not answer in time never stops the pixel or the
        redirect (the status is lost, and counted `error`)."""
        key, now = (kind, message_id, url), self.monotonic()
        last = self._seen.get(key)
        if last is not None and now - last < self.repeat_window:
            self._count(kind, "repeated")
            return
        self._seen[key] = now
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_remembered:
            self._seen.popitem(last=False)
        receipt = Receipt(message_id=message_id, status=status, channel="email", detail=detail,
                          heard_at=self.links.clock())
        try:
            await asyncio.wait_for(self.on_receipt(receipt), timeout=self.publish_timeout)
        except Exception:
            self._seen.pop(key, None)  # not published: a repeat may try again
            self._count(kind, "error")
            log.warning("tracking status not published", exc_info=True, extra={"status": status.value})
            return
        self._count(kind, "ok")
