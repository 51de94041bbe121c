"""Find a message (the console's home) and a message's page: its timeline.

One field takes a message id, an event id, an idempotency key or the recipient's address; Herald works out which.
The clear address never reaches a URL, the server's log or the browser's history: the form is POSTed (with its
CSRF field), an address is hashed on the server the way `herald.status` keys recipients (every channel it could
be, every secret of the ring), and the browser is redirected to `/console/find?r=<hash>&r=…`: hashes only, the
same pseudonymous values the message page shows. A lookup by id redirects to `?q=<id>` (or straight to the
message), and only once the id was found, so a mistyped address is never put in a link either. `GET ?q=` looks up
ids only: an address typed into a URL by hand is not searched (nor echoed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from aiohttp import web

from consumers.console import search
from consumers.console.auth import PREFIX, csrf_valid
from consumers.console.search import MessageSummary
from consumers.console.views import context, page
from consumers.observe.timeline import StatusTimeline, TopicReader
from consumers.observe.timeline_index import TimelineIndex
from schemas.content import MessageContent

T = TypeVar("T")
TITLE = "Find a message"
NOTHING = "No status of what you typed in the last {days:g} days (as a message id, event id, idempotency key or " \
          "recipient address)."


def _timeline(request: web.Request) -> StatusTimeline:
    timeline = context(request).timeline
    assert timeline is not None  # the console answers 503 everywhere without one
    return timeline


async def _read(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """A query of the index in a thread: the admin server shares the worker's event loop with the sends."""
    return await asyncio.to_thread(fn, _timeline(request).index, *args)


async def _content(request: web.Request, message_id: str) -> MessageContent | None:
    """What the message said: kept (herald.content) only for types whose catalog entry sets `show_content`, and
    shown only while HERALD_CONSOLE_PERSONAL_DATA is on."""
    ctx = context(request)
    contents = ctx.extras.get("contents")
    if not ctx.settings.console_personal_data or not isinstance(contents, TopicReader):
        return None
    found = await asyncio.to_thread(contents.index.content, message_id)
    return found if isinstance(found, MessageContent) else None


async def _addressed(request: web.Request, hashes: list[str], tenant: str | None) -> bool:
    """Whether any message went to one of `hashes`."""
    return bool(await _read(request, search.by_recipients, hashes, tenant))


def _tenant(value: object) -> str | None:
    return value.strip()[:search.MAX_QUERY] if isinstance(value, str) and value.strip() else None


def _find_page(request: web.Request, *, status: int = 200, query: str = "", tenant: str | None = None,
               results: list[MessageSummary] | None = None, heading: str = "", notice: str = "",
               hashes: list[str] | None = None) -> web.Response:
    response = page(request, "find.html", status=status, title=TITLE, query=query, tenant=tenant or "",
                    results=results, heading=heading, notice=notice, hashes=hashes or [],
                    capped=results is not None and len(results) >= search.MAX_RESULTS)
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response


def _nothing(request: web.Request, tenant: str | None, notice: str = "", *, query: str = "") -> web.Response:
    """404, or 503 while the index is still reading the topic (not found *yet*)."""
    timeline = _timeline(request)
    if not timeline.caught_up:
        return _find_page(request, status=503, query=query, tenant=tenant, notice="Nothing found yet: this worker "
                          "is still catching up on herald.status. Try again in a few seconds.")
    days = timeline.retention.total_seconds() / 86400
    return _find_page(request, status=404, query=query, tenant=tenant, notice=notice or NOTHING.format(days=days))


def _by_id(found: tuple[str, list[str]], text: str, tenant: str | None) -> web.HTTPSeeOther:
    kind, ids = found
    if kind == "message":
        return web.HTTPSeeOther(f"{PREFIX}/messages/{quote(ids[0], safe='')}")
    return web.HTTPSeeOther(f"{PREFIX}/find?" + urlencode({"q": text, **({"tenant": tenant} if tenant else {})}))


def _by_hashes(hashes: list[str], tenant: str | None) -> web.HTTPSeeOther:
    params = [("r", h) for h in hashes] + ([("tenant", tenant)] if tenant else [])
    return web.HTTPSeeOther(f"{PREFIX}/find?" + urlencode(params))


async def _home(request: web.Request) -> web.Response:
    return _find_page(request)


async def _search(request: web.Request) -> web.StreamResponse:
    """The form: an address is hashed and redirected to by its hashes, an id to its results (POST-redirect-GET)."""
    ctx = context(request)
    form = await request.post()
    assert ctx.token is not None
    sent = form.get("csrf")
    if not csrf_valid(ctx.token, request, sent if isinstance(sent, str) else None):
        return _find_page(request, status=403, notice="This form expired: type your search again.")
    raw, tenant = form.get("q"), _tenant(form.get("tenant"))
    text = search.clean(raw) if isinstance(raw, str) else ""
    if not text or len(text) > search.MAX_QUERY:
        return _find_page(request, status=400, tenant=tenant, notice="Type a message id, event id, idempotency "
                          "key or the recipient's address.")
    kind = search.classify(text)
    hashes = search.recipient_hashes(text, kind, ctx.keys)
    # An address is tried as one first; anything may still be an id (an event id with an @ or only digits) and
    # an id-looking text may be a push token.
    if kind is not search.Kind.ID and await _addressed(request, hashes, tenant):
        raise _by_hashes(hashes, tenant)
    if found := await _read(request, search.resolve_id, text, tenant):
        raise _by_id(found, text, tenant)
    if kind is search.Kind.ID and await _addressed(request, hashes, tenant):
        raise _by_hashes(hashes, tenant)
    return _nothing(request, tenant, query=text if kind is search.Kind.ID else "")


async def _results(request: web.Request) -> web.StreamResponse:
    """`?r=<hash>…` (an address, hashed), `?q=<id>`: the matching messages, newest first."""
    tenant = _tenant(request.query.get("tenant"))
    hashes = [h for h in request.query.getall("r", []) if search.HASH.fullmatch(h)][:search.MAX_HASHES]
    if hashes:
        results = await _read(request, search.by_recipients, hashes, tenant)
        if not results:
            return _nothing(request, tenant, "No message to that address in the index.")
        return _find_page(request, tenant=tenant, results=results, hashes=hashes,
                          heading="Messages to the address you searched for")
    text = request.query.get("q", "").strip()
    if not text or len(text) > search.MAX_QUERY:
        raise web.HTTPSeeOther(f"{PREFIX}/")
    address = search.classify(text) is not search.Kind.ID
    found = await _read(request, search.resolve_id, text, tenant)
    if found is None and address:  # typed into a URL by hand: neither searched as an address nor echoed
        return _find_page(request, status=400, tenant=tenant, notice="That looks like an address: type it in the "
                          "search field, so that it never ends up in a link.")
    if found is None:
        return _nothing(request, tenant, query=text)
    kind, ids = found
    if kind == "message":
        raise _by_id(found, text, tenant)
    what = "event" if kind == "event" else "idempotency key"
    return _find_page(request, query=text, tenant=tenant, results=await _read(request, search.summaries, ids),
                      heading=f"Messages of {what} {text}")


def _first(statuses: list[Any], name: str) -> Any:
    return next((v for s in statuses if (v := getattr(s, name)) not in (None, "")), None)


async def _message(request: web.Request) -> web.Response:
    """A message's timeline: every status in order, and the facts the statuses tell about it."""
    message_id = request.match_info["message_id"]
    timeline = _timeline(request)
    found = await _read(request, TimelineIndex.message, message_id) if len(message_id) <= search.MAX_QUERY else None
    if found is None:
        if not timeline.caught_up:
            response = page(request, "message_missing.html", status=503, title="Still catching up",
                            message_id=message_id, catching_up=True, days=0)
            response.headers["Retry-After"] = "5"
            return response
        return page(request, "message_missing.html", status=404, title="No such message", message_id=message_id,
                    catching_up=False, days=timeline.retention.total_seconds() / 86400)
    statuses = found.statuses
    facts = {name: _first(statuses, name) for name in
             ("event_id", "event_type", "channel", "locale", "template", "tenant", "recipient")}
    rows = [{"status": s, "tone": search.tone(s.status)} for s in statuses]
    content = await _content(request, message_id)
    return page(request, "message.html", title=f"Message {message_id}", message_id=message_id, facts=facts,
                rows=rows, last=rows[-1], content=content,
                event_link=f"{PREFIX}/find?" + urlencode({"q": facts["event_id"]}) if facts["event_id"] else None,
                recipient_link=f"{PREFIX}/find?" + urlencode({"r": facts["recipient"]})
                if facts["recipient"] and search.HASH.fullmatch(facts["recipient"]) else None)


def routes() -> list[web.RouteDef]:
    return [web.get("/", _home), web.post("/find", _search), web.get("/find", _results),
            web.get("/messages/{message_id}", _message)]
