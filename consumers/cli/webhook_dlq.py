"""`herald dlq webhooks list|replay`: statuses a tenant's endpoint did not take (`herald.webhooks.deadletter`),
listed with why, and replayed through the status outbox (consumers/pipeline/webhook_deadletters.py)."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from rich.table import Table

from consumers.cli.base import EXIT_USAGE, console, fail, read_settings, warn
from consumers.pipeline.webhook_deadletters import WebhookDeadLetter
from schemas.settings import Settings

webhooks_app = typer.Typer(help="Statuses a tenant's webhook endpoint did not take: list them, replay chosen ones.",
                           no_args_is_help=True)


async def webhook_dead_letters(settings: Settings) -> tuple[list[WebhookDeadLetter], int]:
    """Every readable dead letter, partition by partition in offset order, and how many records were not ones."""
    from consumers.cli.publish import read_topic
    from consumers.pipeline.status_outbox import DEAD_LETTER_TOPIC
    from consumers.pipeline.webhook_deadletters import webhook_dead_letter

    letters, foreign = [], 0
    async for record in read_topic(settings, DEAD_LETTER_TOPIC):
        letter = webhook_dead_letter(record)
        if letter is None:
            foreign += 1
        else:
            letters.append(letter)
    return sorted(letters, key=lambda d: (d.partition, d.offset)), foreign


def chosen(letters: list[WebhookDeadLetter], *, offsets: set[str], tenant: str | None, reason: str | None,
           everything: bool) -> list[WebhookDeadLetter]:
    """The dead letters a replay names: by position, or all of a tenant and/or a reason, or all."""
    return [d for d in letters if d.where in offsets or everything
            or ((tenant is not None or reason is not None) and tenant in (None, d.tenant)
                and reason in (None, d.reason))]


async def requeue(settings: Settings, letters: list[WebhookDeadLetter]) -> None:
    """Put each back in the status outbox, in its status record's partition under its webhook-id; awaited."""
    from aiokafka import AIOKafkaProducer

    from consumers.cli.publish import start_or_close
    from consumers.clock import utcnow
    from consumers.pipeline.webhook_deadletters import OUTBOX_TOPIC
    from consumers.topics import kafka_client_kwargs

    producer = AIOKafkaProducer(**kafka_client_kwargs(settings))
    await start_or_close(producer)
    try:
        for letter in letters:
            entry = letter.outbox_entry(utcnow())
            await producer.send_and_wait(settings.topic(OUTBOX_TOPIC), entry.model_dump_json().encode(),
                                         key=letter.webhook_id.encode(), partition=entry.partition)
    finally:
        await producer.stop()


def letters_table(letters: list[WebhookDeadLetter]) -> Table:
    table = Table(title=f"{len(letters)} status webhook dead letters", header_style="bold")
    for column in ("offset", "at", "tenant", "host", "status", "reason", "tries", "webhook-id", "detail"):
        table.add_column(column)
    for d in letters:
        table.add_row(d.where, d.at.strftime("%m-%d %H:%M:%S"), d.tenant, d.url_host, d.status or "", d.reason,
                      str(d.attempts), d.webhook_id, d.detail[:60])
    return table


@webhooks_app.command("list")
def webhooks_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
                  reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
                  as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False) -> None:
    """Show every status webhook dead letter: tenant, endpoint host, status, reason, attempts, webhook-id."""
    letters, foreign = asyncio.run(webhook_dead_letters(read_settings()))
    letters = [d for d in letters if tenant in (None, d.tenant) and reason in (None, d.reason)]
    if as_json:
        for d in letters:
            sys.stdout.write(d.model_dump_json() + "\n")
    else:
        console.print(letters_table(letters))
    if foreign:
        warn(f"{foreign} record{'s' if foreign != 1 else ''} without the outbox's headers left out")


@webhooks_app.command("replay")
def webhooks_replay(
    offsets: Annotated[list[str] | None, typer.Argument(help="Dead letters to replay as PARTITION/OFFSET "
                                                               "(the first column of `dlq webhooks list`).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Replay every dead letter of this tenant.")] = None,
    reason: Annotated[str | None, typer.Option(help="Replay every dead letter with this reason.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
) -> None:
    """Deliver chosen statuses again: each goes back to the status outbox under its webhook-id, and the worker that
    owns its partition posts it within seconds. Run it once the endpoint is fixed (or registered again)."""
    from consumers.cli.dlq import parse_offsets

    if not (offsets or tenant or reason or all_):
        fail("say which: PARTITION/OFFSET …, --tenant T, --reason R or --all", EXIT_USAGE)
    try:
        wanted = parse_offsets(offsets or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="OFFSETS") from None
    settings = read_settings()
    letters, _ = asyncio.run(webhook_dead_letters(settings))
    picked = chosen(letters, offsets=wanted, tenant=tenant, reason=reason, everything=all_)
    if not picked:
        fail("nothing replayed: no status webhook dead letter matches")
    asyncio.run(requeue(settings, picked))
    console.print(f"replayed {len(picked)} status webhook dead letter{'s' if len(picked) != 1 else ''}")
    missing = sorted(wanted - {d.where for d in picked})
    if missing:
        warn(f"no status webhook dead letter at {', '.join(missing)}")


def register(dlq_app: typer.Typer) -> None:
    """Add `webhooks list|replay` to `herald dlq`."""
    dlq_app.add_typer(webhooks_app, name="webhooks")
