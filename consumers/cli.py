"""The `herald` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from schemas.settings import Settings

app = typer.Typer(help="Herald: Kafka-native transactional messaging.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
templates_app = typer.Typer(help="Check and preview templates.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")
console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def broker(port: Annotated[int | None, typer.Option(help="Port; defaults to the one in HERALD_KAFKA_BOOTSTRAP.")]
           = None) -> None:
    """Run the embedded Tansu broker in the foreground with every topic created."""
    from consumers.broker import EmbeddedBroker

    settings = _settings()
    port = port or int(settings.kafka_bootstrap.split(",")[0].rpartition(":")[2])
    b = EmbeddedBroker(port)
    b.start()
    created = asyncio.run(b.create_topics(settings))
    console.print(f"Tansu listening on [bold]{b.bootstrap}[/bold]; {len(created)} topics created. Ctrl-C stops.")
    try:
        assert b.process is not None
        b.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()


@app.command()
def worker() -> None:
    """Run one Faust worker against the configured Kafka (creates missing topics first)."""
    from consumers.worker import run_worker

    run_worker(_settings())


@app.command()
def sim(port: Annotated[int | None, typer.Option(help="Port; defaults to HERALD_SIM_PORT.")] = None,
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1") -> None:
    """Run the provider simulator (Twilio, Vonage, Meta, FCM, SendGrid) that calls Herald's webhooks back."""
    from channels.simulator.app import run_sim

    settings = _settings()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_sim(settings, host, port or settings.sim_port))


@app.command()
def dev() -> None:
    """Start the embedded stack (broker, SMTP sink, worker), publish the sample events, show statuses live."""
    from consumers.devstack import run_dev

    run_dev(_settings(), console)


@app.command()
def demo(timeout: Annotated[float, typer.Option(help="Seconds to wait for final statuses.")] = 60.0) -> None:
    """Start the embedded stack, publish sample events, wait for their outcome, print a summary, exit."""
    from consumers.devstack import run_demo

    raise typer.Exit(run_demo(_settings(), console, timeout=timeout))


def _parse_to(to: str, locale: str | None) -> dict[str, Any]:
    if to.lstrip().startswith("{"):
        recipient = json.loads(to)
    elif "@" in to:
        recipient = {"id": to.split("@")[0], "email": to}
    elif to.startswith("+"):
        recipient = {"id": to, "phone": to}
    else:
        recipient = dict(part.split("=", 1) for part in to.split(","))
    if locale:
        recipient["locale"] = locale
    return recipient


@app.command()
def publish(
    event_type: Annotated[str, typer.Argument(help="Catalog type, e.g. order.confirmed.")],
    to: Annotated[str, typer.Option(help="An email, a +E.164 phone, id=…,email=… pairs or a JSON object.")],
    data: Annotated[str | None, typer.Option(help="Payload JSON; the catalog sample when omitted.")] = None,
    locale: Annotated[str | None, typer.Option(help="Recipient locale, e.g. es-ES.")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Publish one event to the right ingest lane."""
    from consumers.app import load_catalog
    from consumers.publish import EventProducer, make_event

    settings = _settings()
    catalog = load_catalog(settings)
    entry = catalog.get(event_type)
    payload = json.loads(data) if data else (entry.sample if entry else {})
    event = make_event(event_type, _parse_to(to, locale), payload, idempotencykey=idempotency_key, tenant=tenant)

    async def go() -> None:
        async with EventProducer(settings, catalog) as producer:
            await producer.publish(event, wait=True)

    asyncio.run(go())
    console.print(f"published [bold]{event['id']}[/bold] ({event_type})")


@app.command()
def status(follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading new statuses.")] = False,
           as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False) -> None:
    """Read herald.status as a table (or JSON lines)."""
    from consumers.publish import parse_status, read_topic
    from consumers.statusview import status_row, status_table

    settings = _settings()

    async def go() -> None:
        table = status_table()
        async for record in read_topic(settings, "status", follow=follow):
            st = parse_status(record)
            if as_json:
                sys.stdout.write(st.model_dump_json() + "\n")
            elif follow:
                console.print(*status_row(st))
            else:
                table.add_row(*status_row(st))
        if not as_json and not follow:
            console.print(table)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())


@templates_app.command("check")
def templates_check() -> None:
    """Render every template of every catalog type with its sample data, in every shipped locale."""
    from consumers.templatecheck import check_templates

    problems, warnings, count = check_templates(_settings())
    for w in warnings:
        err.print(f"[yellow]warning[/yellow] {w}")
    for p in problems:
        err.print(f"[red]error[/red] {p}")
    console.print(f"{count} renders, {len(problems)} errors, {len(warnings)} warnings")
    raise typer.Exit(1 if problems else 0)


@templates_app.command("preview")
def templates_preview(
    event_type: Annotated[str, typer.Argument()],
    locale: Annotated[str, typer.Option()] = "en",
    channel: Annotated[str, typer.Option()] = "email",
    timezone: Annotated[str, typer.Option()] = "UTC",
    data: Annotated[str | None, typer.Option(help="Payload JSON; the catalog sample when omitted.")] = None,
) -> None:
    """Render one template with sample data and print every part."""
    from consumers.templatecheck import preview

    settings = _settings()
    try:
        rendered = preview(settings, event_type, channel, locale, timezone,
                           json.loads(data) if data else None)
    except LookupError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"[bold]{rendered.template}[/bold] in [bold]{rendered.locale}[/bold]")
    for part, text in rendered.parts.items():
        console.rule(part)
        console.print(text, markup=False, highlight=False)


@app.command()
def schema(write: Annotated[bool, typer.Option(help="Write schemas/jsonschema/*.json instead of printing.")]
           = False) -> None:
    """Print the JSON Schemas of Herald's contracts."""
    from schemas.export import export_schemas, write_schemas

    if write:
        for path in write_schemas(Path(__file__).resolve().parents[1] / "schemas" / "jsonschema"):
            console.print(f"wrote {path}")
        return
    sys.stdout.write(orjson.dumps(export_schemas(), option=orjson.OPT_INDENT_2).decode() + "\n")


def main() -> None:
    app()
