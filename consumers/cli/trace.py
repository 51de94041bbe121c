"""`herald trace ID | --event ID | --key KEY`: a message's statuses as a timeline, read from herald.status.

It reads the topic itself (the window `--since`, default `HERALD_TIMELINE_RETENTION`) into a throw-away copy of
the index a worker keeps (consumers/observe/timeline.py), so it needs no running worker and no admin token, and
prints what `GET /messages/…` on the admin port answers, as one table per message.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from consumers.cli.base import EXIT_UNAVAILABLE, EXIT_USAGE, console, fail, read_settings
from consumers.cli.statusview import STYLES
from schemas.settings import Settings

if TYPE_CHECKING:  # imported when used: `herald --help` does not load Kafka's client
    from consumers.observe.timeline import MessageTimeline
    from schemas.status import DeliveryStatus

DURATION = re.compile(r"(\d+)\s*([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
READ_TIMEOUT = 300.0  # seconds to read the window; a week of a busy topic takes a while


def parse_since(value: str) -> timedelta:
    """`30m`, `12h`, `7d` or a number of seconds."""
    text = value.strip().lower()
    if text.isdigit():
        return timedelta(seconds=int(text))
    if (match := DURATION.fullmatch(text)) and int(match[1]) > 0:
        return timedelta(**{UNITS[match[2]]: int(match[1])})
    raise typer.BadParameter(f"{value!r} is not a duration such as 30m, 12h or 7d", param_hint="--since")


def timeline_table(timeline: MessageTimeline) -> Table:
    """One row per status: time (UTC), status, channel, provider, attempt and detail (`error: detail`)."""
    title = " ".join(escape(part) for part in (timeline.message_id, timeline.event_type or "",
                                                f"event {timeline.event_id}" if timeline.event_id else "") if part)
    # No vertical rules: the width goes to the detail, the one column that may wrap.
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False, collapse_padding=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("channel")
    table.add_column("provider")
    table.add_column("try", justify="right")
    table.add_column("detail", overflow="fold")
    for status in timeline.statuses:
        table.add_row(*status_cells(status))
    return table


def status_cells(s: DeliveryStatus) -> tuple[str, ...]:
    style = STYLES.get(s.status.value, "white")
    detail = ": ".join(part for part in (s.error, s.detail) if part)
    return (s.at.strftime("%Y-%m-%d %H:%M:%S.") + f"{s.at.microsecond // 1000:03d}",
            f"[{style}]{s.status.value}[/{style}]", escape(s.channel or "-"), escape(s.provider or "-"),
            str(s.attempt), escape(detail))


def print_timelines(timelines: list[MessageTimeline], out: Console) -> None:
    for n, timeline in enumerate(timelines):
        if n:
            out.print()
        out.print(timeline_table(timeline))


async def find(settings: Settings, since: timedelta, *, message_id: str | None, event_id: str | None,
               key: str | None, tenant: str | None) -> list[MessageTimeline]:
    """Read herald.status over `since` into a temporary index and look the message(s) up."""
    from consumers.identity import key_message_ids
    from consumers.observe.timeline import StatusTimeline
    from consumers.topics import kafka_client_kwargs

    with tempfile.TemporaryDirectory(prefix="herald-trace-") as directory:
        timeline = StatusTimeline(settings.topic("status"), kafka_client_kwargs(settings),
                                  Path(directory) / "timeline.sqlite", retention=since, poll_ms=200)
        try:
            await asyncio.wait_for(timeline.catch_up(), READ_TIMEOUT)
            index = timeline.index
            if message_id is not None:
                found = index.message(message_id)
                return [found] if found else []
            if event_id is not None:
                return index.by_event(event_id)
            assert key is not None
            return index.by_key(key, key_message_ids, tenant)
        finally:
            timeline.close()


def trace(
    message_id: Annotated[str | None, typer.Argument(help="A message id (msg-…).", show_default=False)] = None,
    event: Annotated[str | None, typer.Option("--event", help="Every message of this event id.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Every message of the events with this idempotency "
                                            "key.")] = None,
    tenant: Annotated[str | None, typer.Option(help="With --key: only this tenant's events.")] = None,
    since: Annotated[str | None, typer.Option(help="How far back to read, e.g. 12h or 7d; default "
                                              "HERALD_TIMELINE_RETENTION.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The admin endpoint's JSON instead of tables.")] = False,
) -> None:
    """A message's statuses in time order: by message id, by event id (--event) or by idempotency key (--key)."""
    if sum(x is not None for x in (message_id, event, key)) != 1:
        fail("give one of: a message id, --event ID or --key KEY", EXIT_USAGE)
    if tenant is not None and key is None:
        fail("--tenant goes with --key", EXIT_USAGE)
    settings = read_settings()
    window = parse_since(since) if since is not None else settings.timeline_retention
    what = (f"message {message_id}" if message_id is not None else f"event {event}" if event is not None
            else f"idempotency key {key}")
    try:  # Kafka errors are reported by the command line itself (consumers/cli/base.py: exit code 3)
        found = asyncio.run(find(settings, window, message_id=message_id, event_id=event, key=key, tenant=tenant))
    except TimeoutError:
        fail(f"{settings.topic('status')} could not be read to its end in {READ_TIMEOUT:g} s; try a shorter "
             "--since", EXIT_UNAVAILABLE)
    if not found:
        days = window.total_seconds() / 86400
        fail(f"no status of {what} in {settings.topic('status')} over the last {days:g} days")
    if as_json:
        from consumers.observe.timeline import MessageTimelines

        single = message_id is not None
        sys.stdout.write((found[0] if single else MessageTimelines(messages=found)).model_dump_json() + "\n")
        return
    print_timelines(found, console)


def register(app: typer.Typer) -> None:
    """Add `herald trace` to the command line."""
    app.command("trace")(trace)
