"""The live tail: statuses as this worker indexes them, filtered by type, channel, status and lane.

`/console/tail` renders the newest matching statuses (it works without JavaScript: the filters are a GET form, a
reload shows newer ones); static/tail.js then follows `/console/tail/stream`, server-sent events fed by the
timeline's listeners. Each stream has a bounded queue of its own (the oldest dropped, and counted, when a browser
cannot keep up), a heartbeat comment every 15 s, and events with the status's time as their id, so a browser that
reconnects (it sends `Last-Event-ID`) is first sent what it missed, from the index. Streams end when the admin
server stops (`stop_streams`, on the console's shutdown): aiohttp would otherwise wait 60 s for them.
"""

from __future__ import annotations

import asyncio
import math
import time
from urllib.parse import urlencode

from aiohttp import web
from pydantic import ValidationError

from consumers.console.auth import PREFIX
from consumers.console.statusfeed import (
    LANES,
    REPLAY,
    Subscriber,
    TailFilter,
    TailRow,
    critical_types,
    recent,
    to_rows,
)
from consumers.console.views import CONTEXT_KEY, HEADERS, context, fragment, page
from consumers.observe.timeline import StatusTimeline
from schemas.catalog import Catalog, Channel
from schemas.status import Status

HEARTBEAT = 15.0  # seconds of silence before a comment keeps proxies and the browser from closing the stream
TICK = 1.0  # seconds between checks that the browser is still there (aiohttp does not cancel on disconnect)
LIVE_SLACK = 300.0  # statuses recorded this long before a stream opened are still news (clocks, indexing lag)
STREAMS = "tail.streams"  # ctx.extras: the open streams' subscribers, ended by `stop_streams`


def _timeline(request: web.Request) -> StatusTimeline:
    timeline = context(request).timeline
    assert timeline is not None  # the console answers 503 everywhere without one
    return timeline


def _catalog(request: web.Request) -> Catalog | None:
    catalog = context(request).extras.get("catalog")
    return catalog if isinstance(catalog, Catalog) else None


def _since(value: str | None) -> float | None:
    try:
        since = float(value or "")
    except ValueError:
        return None
    return since if math.isfinite(since) else None


async def _tail(request: web.Request) -> web.Response:
    ctx = context(request)
    catalog = _catalog(request)
    try:
        wanted = TailFilter.of(request.query)
    except ValidationError:
        wanted, invalid = TailFilter(), True
    else:
        invalid = False
    critical = critical_types(catalog)
    timeline = _timeline(request)
    rows = await asyncio.to_thread(recent, timeline.index, wanted, critical)
    # The stream starts from the newest row shown (the browser drops the repeats), so nothing falls in between.
    since = rows[0].epoch if rows else ctx.clock().timestamp()
    stream = f"{PREFIX}/tail/stream?" + urlencode({**wanted.query(), "since": f"{since:.6f}"})
    types = sorted({*(catalog.types if catalog else ()), *([wanted.type] if wanted.type else [])})
    return page(request, "tail.html", status=400 if invalid else 200, title="Live tail", rows=rows, wanted=wanted,
                filters=wanted.query(), types=types, channels=[c.value for c in Channel],
                statuses=[s.value for s in Status], lanes=LANES, stream=stream, invalid=invalid,
                catching_up=not timeline.caught_up)


def _event(row: TailRow) -> bytes:
    html = fragment("tail_rows.html", rows=[row])
    data = "".join(f"data: {line}\n" for line in html.strip().splitlines())
    return f"event: status\nid: {row.epoch:.6f}\n{data}\n".encode()


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


async def _stream(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    try:
        wanted = TailFilter.of(request.query)
    except ValidationError:
        raise web.HTTPBadRequest(text="unknown filter value", headers=HEADERS) from None
    timeline = _timeline(request)
    critical = critical_types(_catalog(request))
    now = ctx.clock().timestamp()
    since = _since(request.headers.get("Last-Event-ID")) or _since(request.query.get("since")) or now
    since = max(since, now - timeline.retention.total_seconds())
    subscriber = Subscriber(wanted, critical, floor=now - LIVE_SLACK)
    streams: set[Subscriber] = ctx.extras.setdefault(STREAMS, set())
    timeline.listeners.append(subscriber.offer)  # subscribed before the index is read: nothing falls in between
    streams.add(subscriber)
    response = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")  # the browser reconnects after 3 s
        missed = await asyncio.to_thread(recent, timeline.index, wanted, critical, since=since, limit=REPLAY)
        sent = {row.key for row in missed}
        for row in reversed(missed):  # oldest first: the browser puts each on top
            await response.write(_event(row))
        quiet_since = time.monotonic()
        while not subscriber.closed and _connected(request):
            if not await subscriber.wait(TICK):
                if time.monotonic() - quiet_since >= HEARTBEAT:
                    await response.write(b": heartbeat\n\n")
                    quiet_since = time.monotonic()
                continue
            values, dropped = subscriber.take()
            if dropped:
                await response.write(f"event: dropped\ndata: {dropped}\n\n".encode())
            for row in to_rows(values, critical):
                if row.key not in sent:
                    await response.write(_event(row))
            quiet_since = time.monotonic()
    except ConnectionResetError:  # the browser went away mid-write
        pass
    finally:
        if subscriber.offer in timeline.listeners:
            timeline.listeners.remove(subscriber.offer)
        streams.discard(subscriber)
    return response


async def stop_streams(application: web.Application) -> None:
    """On the console's shutdown: end every open stream, so the admin server stops without waiting for them."""
    for subscriber in list(application[CONTEXT_KEY].extras.get(STREAMS, ())):
        subscriber.close()


def routes() -> list[web.RouteDef]:
    return [web.get("/tail", _tail), web.get("/tail/stream", _stream)]
