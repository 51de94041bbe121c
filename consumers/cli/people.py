"""`herald prefs get|set` and `herald forget`: what Herald holds about one person, read, changed or erased."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

import typer

from consumers.cli.base import console, read_settings
from schemas.settings import Settings

if TYPE_CHECKING:
    from consumers.state.erasure import Erasure
    from consumers.state.preferences import PreferenceLedger

prefs_app = typer.Typer(help="Read or change a recipient's preferences and consent.", no_args_is_help=True)


@contextlib.asynccontextmanager
async def _open_ledger(settings: Settings) -> AsyncIterator[PreferenceLedger]:
    """The preference ledger over `herald.preferences`, caught up; its store is flushed and stopped on exit."""
    from consumers.state.kvstore import TopicStore
    from consumers.state.preferences import PreferenceLedger
    from consumers.topics import ensure_topics

    await ensure_topics(settings, attempts=1)  # a person at a terminal: say at once that Kafka is not there
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
    settings = read_settings()

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
    settings = read_settings()

    async def go() -> str:
        async with _open_ledger(settings) as ledger:
            prefs = await ledger.update(
                recipient_id, lambda p: edit(p, opt_out=outs, opt_in=ins, promotional=promo,
                                             preferred_channel=preferred, locale=locale, timezone=timezone),
                source="cli")
            return prefs.model_dump_json(indent=2)

    sys.stdout.write(asyncio.run(go()) + "\n")


def forget(recipient_id: Annotated[str, typer.Argument(help="The recipient id, e.g. user-42.")],
           email: Annotated[list[str] | None, typer.Option(help="An email address of theirs to clear too.")] = None,
           phone: Annotated[list[str] | None, typer.Option(help="A phone number of theirs to clear too.")] = None,
           ) -> None:
    """Erase a person from Herald's state (GDPR): preferences, caps, scheduled messages (each `cancelled`),
    send and document records, open questions, and what the console kept of their messages. Run it with the
    workers' HERALD_SECRET (addresses are keyed with it). What it cannot erase is listed in SECURITY.md."""
    settings = read_settings()

    async def go() -> Erasure:
        from consumers.cli.content_erasure import erase_contents
        from consumers.cli.publish import TopicPublisher
        from consumers.clock import utcnow
        from consumers.observe.metrics import Metrics
        from consumers.pipeline.status import StatusEmitter
        from consumers.state.erasure import forget as erase
        from consumers.state.stores import State
        from consumers.topics import ensure_topics
        from schemas.status import Status

        await ensure_topics(settings, attempts=1)
        state = State.on_topics(settings)
        try:
            await state.ready()
            async with TopicPublisher(settings) as publisher:
                secret = settings.secret.get_secret_value().encode()
                statuses = StatusEmitter(publisher, Metrics(), secret, utcnow)
                addresses = [("email", a) for a in email or []] + [
                    (c, p) for p in phone or [] for c in ("sms", "whatsapp", "voice")]
                result = await erase({name: getattr(state, name) for name in (
                    "preferences", "caps", "schedules", "sends", "documents", "contacts", "consent", "digests",
                    "conversions")},
                    recipient_id, secret=secret, addresses=addresses,
                    cancelled=lambda d: statuses.for_dispatch(d, Status.CANCELLED, detail="erased"))
                result.deleted["content"] = await erase_contents(settings, publisher, recipient_id, utcnow())
            for store in state.stores():
                flush = getattr(store, "flush", None)
                if flush is not None:
                    await flush()
            return result
        finally:
            await state.stop()

    result = asyncio.run(go())
    for name, count in result.deleted.items():
        console.print(f"{name:<12} {count} deleted")
    console.print(f"{len(result.cancelled)} scheduled messages cancelled")


def register(app: typer.Typer) -> None:
    """Add `prefs` and `forget` to the `herald` command."""
    app.add_typer(prefs_app, name="prefs")
    app.command()(forget)
