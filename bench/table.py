"""`make bench`: every benchmark of issue 13 as one table, each row Herald against the bare client doing the same
work in the same run, with its goal and a mark.

Rows: routing (vs an aiokafka consume -> produce relay), email end to end (vs aiosmtplib on as many connections),
each HTTP channel (vs bare httpx replaying the provider's own request), the critical lane (p50/p99 while a backlog
drains, vs one record's raw Kafka trip), memory (worker RSS after N events vs after N/10, and state keys per store)
and 2 workers vs 1. The defaults finish in about 5 minutes on 2 cores; `--full` runs the acceptance sizes (memory
after 200,000 events, the critical lane behind 100,000: about 25 minutes). Every size is a flag, and each flag's
default can be set in the environment (`HERALD_BENCH_MEMORY_EVENTS=200000 make bench`).

Run: `make bench`, or `.venv/bin/python -m bench [--only routing,email] [--full] [--markdown]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.table import Table

from bench import channel_throughput, critical_latency, email_throughput, memory, routing, scaling
from bench.common import Row

ROWS = ("routing", "email", "channels", "critical", "memory", "scaling")
FULL = {"memory_events": 200_000, "critical_events": 100_000, "codes": 50, "spread": 30.0, "email_events": 5000,
        "routing_events": 20_000, "scaling_events": 10_000}


def env_default(name: str, default: float) -> float:
    return type(default)(os.environ.get(f"HERALD_BENCH_{name.upper()}", default))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes: dict[str, tuple[float, str]] = {
        "routing_events": (5000, "events through the ingest stage"),
        "email_events": (2000, "events publish -> SMTP sink"),
        "channel_sends": (400, "sends per HTTP provider"),
        "channel_concurrency": (16, "HTTP sends in flight"),
        "channel_rounds": (3, "alternating rounds per HTTP provider and side (median kept)"),
        "critical_events": (20_000, "normal backlog behind which the codes go"),
        "codes": (20, "critical events"),
        "spread": (10.0, "seconds over which the codes are published"),
        "before": (5.0, "seconds of normal-lane pace measured before the codes"),
        "memory_events": (20_000, "N: RSS after N events vs after N/10"),
        "scaling_events": (4000, "events per run, 1 worker then 2"),
    }
    for name, (default, text) in sizes.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=env_default(name, default),
                            help=f"{text} (default {default}; HERALD_BENCH_{name.upper()})")
    parser.add_argument("--only", default=",".join(ROWS), help=f"rows to run, comma-separated: {', '.join(ROWS)}")
    parser.add_argument("--full", action="store_true", help="the acceptance sizes: " +
                        ", ".join(f"{k}={v}" for k, v in FULL.items()))
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    if args.full:
        for name, value in FULL.items():
            setattr(args, name, value)
    return args


async def collect(args: argparse.Namespace, console: Console) -> list[Row]:
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(ROWS)
    if unknown:
        raise SystemExit(f"unknown rows: {', '.join(sorted(unknown))} (known: {', '.join(ROWS)})")

    async def critical() -> list[Row]:
        result = await critical_latency.run(args.critical_events, args.codes, args.spread, args.before)
        return [result.row()]

    async def channels() -> list[Row]:
        results = await channel_throughput.run(args.channel_sends, args.channel_concurrency, args.channel_rounds)
        return channel_throughput.rows(results, args.channel_sends, args.channel_concurrency, args.channel_rounds)

    async def email() -> list[Row]:
        return [(await email_throughput.run(args.email_events))[0]]

    async def one(make: Callable[[], Awaitable[Row]]) -> list[Row]:
        return [await make()]

    runners: dict[str, Callable[[], Awaitable[list[Row]]]] = {
        "routing": lambda: one(lambda: routing.run(args.routing_events)),
        "email": email,
        "channels": channels,
        "critical": critical,
        "memory": lambda: one(lambda: memory.run(args.memory_events)),
        "scaling": lambda: one(lambda: scaling.run(args.scaling_events)),
    }
    rows: list[Row] = []
    for name in ROWS:
        if name not in wanted:
            continue
        started = time.monotonic()
        console.print(f"[dim]running {name}…[/dim]")
        try:
            rows += await runners[name]()
        except Exception as exc:  # one broken row must not cost the others
            console.print(f"[red]{name} failed: {type(exc).__name__}: {exc}[/red]")
            console.print(traceback.format_exc(), markup=False)
            rows.append(Row(name, "error", "error", "-", "-", False, [f"{name}: {type(exc).__name__}: {exc}"]))
        console.print(f"[dim]{name} took {time.monotonic() - started:.0f} s[/dim]")
    return rows


def render(rows: list[Row], title: str) -> Table:
    table = Table(title=title)
    for column, justify in (("row", "left"), ("Herald", "right"), ("bare client", "right"), ("ratio", "right"),
                            ("goal", "right"), ("", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        mark = "[green]pass[/green]" if row.passed else "[red]below[/red]"
        table.add_row(row.name, row.herald, row.bare, row.ratio, row.goal, mark)
    return table


def markdown(rows: list[Row]) -> str:
    lines = ["| row | Herald | bare client | ratio | goal | |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.name} | {r.herald} | {r.bare} | {r.ratio} | {r.goal} | {'pass' if r.passed else 'below'} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=160)  # a log file gets the table unwrapped
    started = time.monotonic()
    rows = asyncio.run(collect(args, console))
    cores = os.cpu_count() or 1
    console.print(render(rows, f"Herald vs the bare clients, one run on {cores} cores "
                               f"({time.monotonic() - started:.0f} s)"))
    for row in rows:
        for note in row.notes:
            console.print(f"  {note}", markup=False, highlight=False, soft_wrap=True)
    if args.markdown:
        console.print(markdown(rows), markup=False, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
