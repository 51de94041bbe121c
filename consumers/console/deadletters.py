"""The dead-letter page (`/console/dead-letters`): the newest dead letters with reason and source, filtered by
reason and stage; one inspected, its payload scrubbed; a replay of a selection, confirmed on a page of its own
that lists the exact positions, then POSTed with the CSRF field, then a result page (POST, redirect, GET: a reload
sends nothing again). See `consumers.console.replays` for what stops a second copy."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiokafka.errors import KafkaError

from consumers.console import auth
from consumers.console.replays import NEWEST, desk, replay_positions
from consumers.console.scrub import clear, scrubbed, shareable
from consumers.console.views import context, page
from consumers.pipeline.deadletter_replay import DeadLetter, DeadLetterTail, parse_offsets, plan_replay

PAGE_SIZE = 50
BASE = f"{auth.PREFIX}/dead-letters"


class _Unreadable(Exception):
    """The dead-letter topic could not be read (Kafka unreachable or slow)."""


async def _tail(request: web.Request) -> DeadLetterTail:
    try:
        return await desk(context(request)).source.tail(NEWEST)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise _Unreadable(type(exc).__name__) from exc


def _unreadable(request: web.Request, why: str) -> web.Response:
    return page(request, "deadletters-error.html", status=503, title="Dead letters",
                message=f"The dead-letter topic could not be read ({why}). Try again in a moment.")


def _counts(letters: Sequence[DeadLetter], attribute: str) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for d in letters:
        value = getattr(d, attribute)
        counts[value] = counts.get(value, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _page_number(text: str | None) -> int:
    return int(text) if text and text.isdigit() and int(text) > 0 else 1


def key_shown(key: bytes | None) -> str:
    """A dead letter's key as shown: the recipient id it usually is, or only its size when it looks personal."""
    if key is None:
        return "none"
    text = key.decode(errors="replace")
    return text if shareable(text) else f"\u2039{len(key)} bytes\u203a"


async def _list(request: web.Request) -> web.Response:
    try:
        tail = await _tail(request)
    except _Unreadable as exc:
        return _unreadable(request, str(exc))
    reason, stage = request.query.get("reason", ""), request.query.get("stage", "")
    chosen = [d for d in tail.letters if (not reason or d.reason == reason) and (not stage or d.stage == stage)]
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    number = min(_page_number(request.query.get("page")), pages)
    rows = chosen[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]
    filters = {k: v for k, v in (("reason", reason), ("stage", stage)) if v}
    return page(request, "deadletters.html", title="Dead letters", rows=rows, chosen=len(chosen),
                total=tail.total, read=len(tail.letters), more=tail.more, newest=NEWEST,
                reasons=_counts(tail.letters, "reason"), stages=_counts(tail.letters, "stage"),
                reason=reason, stage=stage, filters=filters, number=number, pages=pages,
                replayed=desk(context(request)).ledger.replayed)


async def _inspect(request: web.Request) -> web.Response:
    ctx = context(request)
    partition, offset = int(request.match_info["partition"]), int(request.match_info["offset"])
    try:
        letter = await desk(ctx).source.one(partition, offset)
    except (KafkaError, TimeoutError, OSError) as exc:
        return _unreadable(request, type(exc).__name__)
    if letter is None:
        return page(request, "deadletters-error.html", status=404, title="Dead letters",
                    message=f"No dead letter at {partition}/{offset} (the topic's retention may have removed it).")
    personal = ctx.settings.console_personal_data
    return page(request, "deadletter.html", title=f"Dead letter {letter.where}", letter=letter,
                key=key_shown(letter.key), headers=sorted(letter.headers.items()),
                payload=clear(letter.value) if personal else "\n".join(scrubbed(letter.value)), personal=personal,
                replayed=desk(ctx).ledger.replayed.get(letter.where))


def _wanted(values: Sequence[str]) -> set[str]:
    try:
        return parse_offsets(values)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def _confirm(request: web.Request) -> web.Response:
    """What a replay would send, and where: the exact positions, which the POST then carries."""
    ctx = context(request)
    wanted = _wanted(request.query.getall("letter", []))
    reason = request.query.get("reason") if request.query.get("all") == "reason" else None
    try:
        tail = await _tail(request)
    except _Unreadable as exc:
        return _unreadable(request, str(exc))
    letters = list(tail.letters)
    for position in sorted(wanted - {d.where for d in letters}):  # chosen on its own page, older than the tail
        partition, _, offset = position.partition("/")
        if (older := await desk(ctx).source.one(int(partition), int(offset))) is not None:
            letters.append(older)
    plan = plan_replay(letters, offsets=wanted, reason=reason or None, everything=False,
                       replayed=desk(ctx).ledger.replayed)
    missing = sorted(wanted - {d.where for d in plan.send} - {d.where for d, _ in plan.refused})
    topics: dict[str, int] = {}
    for d in plan.send:
        topics[d.source_topic] = topics.get(d.source_topic, 0) + 1
    return page(request, "deadletters-confirm.html", title="Replay dead letters", send=plan.send,
                refused=plan.refused, missing=missing, topics=sorted(topics.items()), reason=reason,
                more=tail.more if reason else 0, newest=NEWEST)


async def _replay(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    assert ctx.token is not None  # the console answers 503 without one
    form = await request.post()
    sent = form.get("csrf")
    if not auth.csrf_valid(ctx.token, request, sent if isinstance(sent, str) else None):
        return page(request, "deadletters-error.html", status=403, title="Replay refused",
                    message="This form did not come from this console session (or the session changed): nothing "
                            "was replayed. Go back to the dead letters and confirm the replay again.")
    wanted = _wanted([v for v in form.getall("letter", []) if isinstance(v, str)])
    if not wanted:
        raise web.HTTPBadRequest(text="no dead letter chosen")
    try:
        batch = await replay_positions(desk(ctx), wanted, ctx.clock())
    except (KafkaError, TimeoutError, OSError) as exc:
        return _unreadable(request, type(exc).__name__)
    raise web.HTTPSeeOther(f"{BASE}/replayed/{batch.id}")


async def _replayed(request: web.Request) -> web.Response:
    batch = desk(context(request)).ledger.batches.get(request.match_info["batch"])
    if batch is None:
        return page(request, "deadletters-error.html", status=404, title="Replay",
                    message="This worker has no record of that replay (it may have restarted since).")
    return page(request, "deadletters-replayed.html", title="Replay done", batch=batch,
                topics=sorted(batch.topics.items()))


def routes() -> list[web.RouteDef]:
    return [web.get("/dead-letters", _list), web.get("/dead-letters/confirm", _confirm),
            web.post("/dead-letters/replay", _replay), web.get("/dead-letters/replayed/{batch}", _replayed),
            web.get(r"/dead-letters/{partition:\d+}/{offset:\d+}", _inspect)]
