"""The console's live tail: filters (lane by the catalog's priority), the page's first rows from the index, and
the server-sent event stream (subscribed while open, filtered, bounded, replayed after a reconnection, ended when
the server stops)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from consumers.app import load_catalog
from consumers.console import tail
from consumers.console.app import add_console
from consumers.console.context import ConsoleContext
from consumers.console.statusfeed import Subscriber, TailFilter, critical_types, recent
from consumers.dev.broker import free_port
from consumers.observe.timeline import StatusTimeline
from schemas.status import DeliveryStatus
from tests.unit.test_console_auth import TOKEN, client_for, console_context

pytestmark = pytest.mark.unit

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def now() -> datetime:
    return datetime.now(UTC)


def status(message: str, state: str = "sent", *, at: datetime | None = None, **fields: Any) -> bytes:
    values: dict[str, Any] = {"message_id": message, "status": state, "at": at or now(), "event_id": "evt-1",
                              "event_type": "order.confirmed", "tenant": "demo", "channel": "email",
                              "provider": "smtp", "recipient": "sha256:" + "e" * 64, **fields}
    return DeliveryStatus.model_validate(values).model_dump_json().encode()


def timeline_of(ctx: ConsoleContext) -> StatusTimeline:
    assert ctx.timeline is not None
    return ctx.timeline


def index_statuses(ctx: ConsoleContext, *values: bytes) -> None:
    index = timeline_of(ctx).index
    start = index.count()
    index.add([(0, start + n, v) for n, v in enumerate(values)], {0: start + len(values)})


def publish(ctx: ConsoleContext, *values: bytes) -> None:
    """What the timeline does with a batch it read: index it, then tell its listeners."""
    index_statuses(ctx, *values)
    for listener in list(timeline_of(ctx).listeners):
        listener(list(values))


@pytest.fixture
def ctx(tmp_path: Path) -> ConsoleContext:
    context = console_context(tmp_path)
    context.extras["catalog"] = load_catalog(context.settings)
    timeline_of(context).caught_up = True
    return context


@pytest.fixture
async def client(ctx: ConsoleContext) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    c = await client_for(ctx)
    yield c
    await c.close()


async def next_event(response: aiohttp.ClientResponse, timeout: float = 5) -> tuple[str, str, str]:
    """(event, id, data) of the next event of a stream, comments skipped."""
    event, ident, data = "message", "", []
    async with asyncio.timeout(timeout):
        while True:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line == "" and data:
                return event, ident, "\n".join(data)
            field, _, value = line.partition(": ")
            if field == "event":
                event = value
            elif field == "id":
                ident = value
            elif field == "data":
                data.append(value)
            elif line.startswith("retry:") or line.startswith(":") or line == "":
                continue


def test_tail__the_lane_of_a_type_is_its_catalog_priority(ctx: ConsoleContext) -> None:
    critical = critical_types(ctx.extras["catalog"])
    assert {"otp.requested", "password.reset"} <= critical and "order.confirmed" not in critical
    otp, order = {"event_type": "otp.requested"}, {"event_type": "order.confirmed"}
    assert TailFilter(lane="critical").matches(otp, critical) and not TailFilter(lane="critical").matches(order,
                                                                                                        critical)
    assert TailFilter(lane="normal").matches(order, critical) and TailFilter(lane="normal").matches({}, critical)


def test_tail__blank_filters_show_everything_and_an_unknown_value_is_refused() -> None:
    assert TailFilter.of({"type": "", "channel": "", "status": " ", "lane": ""}) == TailFilter()
    assert TailFilter.of({"channel": "email", "status": "sent"}).query() == {"channel": "email", "status": "sent"}
    with pytest.raises(ValueError):
        TailFilter.of({"channel": "pigeon"})


def test_tail__recent_reads_the_newest_matching_statuses_from_the_index(ctx: ConsoleContext) -> None:
    t0 = now() - timedelta(minutes=5)
    index_statuses(ctx, *(status(f"msg-{n}", at=t0 + timedelta(seconds=n)) for n in range(60)),
                   status("msg-sms", channel="sms", at=t0 + timedelta(seconds=90)),
                   status("msg-otp", event_type="otp.requested", at=t0 + timedelta(seconds=91)))
    critical = critical_types(ctx.extras["catalog"])
    index = timeline_of(ctx).index
    rows = recent(index, TailFilter(channel="email"), critical)
    assert len(rows) == 50 and rows[0].message_id == "msg-otp" and rows[-1].message_id == "msg-11"
    assert [r.message_id for r in recent(index, TailFilter(lane="critical"), critical)] == ["msg-otp"]
    assert [r.message_id for r in recent(index, TailFilter(channel="sms"), critical)] == ["msg-sms"]
    assert recent(index, TailFilter(status="dead_lettered"), critical) == []


async def test_tail__a_subscriber_keeps_the_newest_when_it_overflows_and_counts_what_it_dropped() -> None:
    subscriber = Subscriber(TailFilter(channel="email"), frozenset(), floor=time.time() - 60, capacity=3)
    subscriber.offer([status(f"msg-{n}") for n in range(5)] + [status("msg-sms", channel="sms"), b"not json",
                      status("msg-old", at=now() - timedelta(hours=1))])
    assert await subscriber.wait(0.01)
    values, dropped = subscriber.take()
    assert [DeliveryStatus.model_validate_json(v).message_id for v in values] == ["msg-2", "msg-3", "msg-4"]
    assert dropped == 2
    assert not await subscriber.wait(0.01) and subscriber.take() == ([], 0)


async def test_tail__the_page_shows_the_last_matching_statuses_and_follows_from_the_newest(
        ctx: ConsoleContext, client: TestClient) -> None:
    index_statuses(ctx, status("msg-mail"), status("msg-text", channel="sms", provider="twilio"))
    response = await client.get("/console/tail", params={"channel": "email"}, headers=BEARER)
    text = await response.text()
    assert response.status == 200
    assert "/console/messages/msg-mail" in text and "msg-text" not in text
    assert 'data-stream="/console/tail/stream?channel=email&amp;since=' in text
    assert "sha256:" not in text  # no recipient, not even hashed
    assert '<option value="otp.requested">' in text and '<option value="email" selected>' in text
    assert '<script src="/console/static/tail.js" defer>' in text
    bad = await client.get("/console/tail", params={"status": "lost"}, headers=BEARER)
    assert bad.status == 400


async def test_tail__a_stream_sends_matching_statuses_indexed_after_it_connected(
        ctx: ConsoleContext, client: TestClient) -> None:
    index_statuses(ctx, status("msg-before"))
    response = await client.get("/console/tail/stream", params={"channel": "email", "since": str(time.time())},
                                headers=BEARER)
    assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
    await asyncio.sleep(0.1)
    assert len(timeline_of(ctx).listeners) == 1
    publish(ctx, status("msg-sms", channel="sms"), status("msg-new", provider="ses"))
    event, ident, data = await next_event(response)
    assert event == "status" and "/console/messages/msg-new" in data and ">ses<" in data
    assert "msg-sms" not in data and "msg-before" not in data and "sha256:" not in data
    assert float(ident) == pytest.approx(time.time(), abs=30)
    response.close()


async def test_tail__a_reconnecting_stream_is_sent_what_it_missed(ctx: ConsoleContext, client: TestClient) -> None:
    seen = now() - timedelta(minutes=2)
    index_statuses(ctx, status("msg-seen", at=seen), status("msg-missed", at=seen + timedelta(seconds=30)))
    response = await client.get("/console/tail/stream", headers={**BEARER, "Last-Event-ID": f"{seen.timestamp()}"})
    first = await next_event(response)
    second = await next_event(response)
    assert "msg-seen" in first[2] and "msg-missed" in second[2]  # oldest first; the browser drops the repeat
    response.close()


async def test_tail__a_slow_client_is_told_how_many_statuses_it_missed(ctx: ConsoleContext, client: TestClient,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tail, "Subscriber", lambda *a, **k: Subscriber(*a, **{**k, "capacity": 2}))
    response = await client.get("/console/tail/stream", headers=BEARER)
    await asyncio.sleep(0.1)
    publish(ctx, *(status(f"msg-{n}") for n in range(5)))
    assert await next_event(response) == ("dropped", "", "3")
    response.close()


async def test_tail__a_quiet_stream_sends_heartbeats(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tail, "HEARTBEAT", 0.1)
    monkeypatch.setattr(tail, "TICK", 0.05)
    response = await client.get("/console/tail/stream", headers=BEARER)
    async with asyncio.timeout(5):
        while await response.content.readline() != b": heartbeat\n":
            pass
    response.close()


@contextlib.asynccontextmanager
async def admin_server(ctx: ConsoleContext) -> AsyncIterator[str]:
    """The console served as the worker's AdminServer serves it (aiohttp's test server differs: it cancels a
    handler whose client went away, which the real one does not); yields its address."""
    application = web.Application()
    add_console(application, ctx)
    runner = web.AppRunner(application, access_log=None)  # 60 s grace for handlers on cleanup, no cancellation
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)


async def test_tail__a_stream_unsubscribes_when_the_browser_goes_away(ctx: ConsoleContext,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tail, "TICK", 0.05)
    async with admin_server(ctx) as url, aiohttp.ClientSession() as session:
        response = await session.get(f"{url}/console/tail/stream", headers=BEARER)
        assert (await response.content.readline()) == b"retry: 3000\n"
        assert len(timeline_of(ctx).listeners) == 1 and len(ctx.extras[tail.STREAMS]) == 1
        response.close()
        async with asyncio.timeout(5):
            while timeline_of(ctx).listeners or ctx.extras[tail.STREAMS]:
                await asyncio.sleep(0.05)


async def test_tail__an_open_stream_does_not_hold_up_the_admin_server_stopping(ctx: ConsoleContext) -> None:
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        url = await stack.enter_async_context(admin_server(ctx))  # closed first: the browser is still there
        response = await session.get(f"{url}/console/tail/stream", headers=BEARER)
        assert (await response.content.readline()) == b"retry: 3000\n"
        started = time.monotonic()
        await stack.aclose()
    assert time.monotonic() - started < 5
    assert not timeline_of(ctx).listeners
