"""The console's find page and message page: what a typed query is, addresses hashed as herald.status keys
recipients (never in a URL), the results, a message's timeline, and 404/503."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, unquote_plus

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from consumers.console import search
from consumers.console.context import ConsoleContext
from consumers.console.search import Kind, classify, recipient_hashes
from consumers.identity import KeyRing, message_id
from consumers.observe.metrics import Metrics
from consumers.pipeline.status import StatusEmitter
from schemas.status import DeliveryStatus
from tests.unit.test_console_auth import TOKEN, client_for, console_context

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
RING = KeyRing(b"current-secret-for-find", (b"older-secret-for-find",))
EMAIL = "Ana.Lopez@Example.com"
PHONE = "+34600111222"
MSG_EMAIL = "msg-" + "a" * 24
MSG_SMS = "msg-" + "b" * 24
MSG_OLD = "msg-" + "c" * 24  # to the same address, hashed with the older secret (before a rotation)


def emitter(secret: bytes) -> StatusEmitter:
    """The writer of herald.status: its `recipient` is the rule the search must meet."""
    return StatusEmitter(cast(Any, None), Metrics(), secret, lambda: T0)


def status(message: str, state: str = "sent", *, seconds: float = 0, **fields: Any) -> bytes:
    values: dict[str, Any] = {"message_id": message, "status": state, "at": T0 + timedelta(seconds=seconds),
                              "event_id": "evt-1", "event_type": "order.confirmed", "tenant": "demo",
                              "channel": "email", **fields}
    return DeliveryStatus.model_validate(values).model_dump_json().encode()


def index_statuses(ctx: ConsoleContext, *values: bytes) -> None:
    assert ctx.timeline is not None
    start = ctx.timeline.index.count()
    ctx.timeline.index.add([(0, start + n, v) for n, v in enumerate(values)], {0: start + len(values)})


def sample_messages(ctx: ConsoleContext) -> None:
    """An email and an SMS of event evt-1 (idempotency key order-1001), and an older email of another event."""
    mail_to = emitter(RING.current).recipient("email", EMAIL)
    text_to = emitter(RING.current).recipient("sms", PHONE)
    old_to = emitter(RING.previous[0]).recipient("email", EMAIL)
    key_email = message_id("demo", "order-1001", "email")
    index_statuses(
        ctx,
        status(MSG_OLD, "accepted", seconds=-3600, event_id="evt-0", recipient=old_to),
        status(MSG_OLD, "delivered", seconds=-3500, event_id="evt-0", provider="smtp"),
        status(MSG_EMAIL, "accepted", recipient=mail_to),
        status(MSG_EMAIL, "retrying", seconds=1, attempt=1, provider="smtp", recipient=mail_to,
               error="provider_unavailable", detail="421"),
        status(MSG_EMAIL, "sent", seconds=2.5, attempt=2, provider="smtp", provider_message_id="smtp-77",
               latency_ms=1500, recipient=mail_to, locale="es", template="order.confirmed/email"),
        status(MSG_SMS, "sent", seconds=3, channel="sms", provider="twilio", recipient=text_to),
        status(key_email, "failed", seconds=4, event_id="evt-2", provider="smtp", error="invalid_recipient"),
    )


@pytest.fixture
def ctx(tmp_path: Path) -> ConsoleContext:
    context = console_context(tmp_path)
    context.keys = RING
    assert context.timeline is not None
    context.timeline.caught_up = True
    sample_messages(context)
    return context


@pytest.fixture
async def client(ctx: ConsoleContext) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    c = await client_for(ctx)
    await c.post("/console/login", data={"token": TOKEN})
    yield c
    await c.close()


async def csrf(client: TestClient) -> str:
    text = await (await client.get("/console/")).text()
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', text)
    assert found
    return found.group(1)


async def find(client: TestClient, query: str, **form: str) -> Any:
    return await client.post("/console/find", data={"q": query, "csrf": await csrf(client), **form},
                             allow_redirects=False)


@pytest.mark.parametrize(("text", "kind"), [
    ("msg-3f2a9c0d1e2f3a4b5c6d7e8f", Kind.ID),
    ("evt-81ac", Kind.ID),
    ("0b6f6a52-7c1e-4d8f-9a55-2f0f2a7c9e11", Kind.ID),
    ("order-1001-confirmed", Kind.ID),
    ("12345", Kind.ID),  # too short for a phone number
    ("fcm-token-jonas-1", Kind.ID),
    ("ana@example.com", Kind.EMAIL),
    ("  Ana.Lopez@Example.COM ", Kind.EMAIL),
    ("mailto:ana@example.com", Kind.EMAIL),
    ("Ana López <ana@example.com>", Kind.EMAIL),
    ("+34600111222", Kind.PHONE),
    ("+34 600 111 222", Kind.PHONE),
    ("+34-600-111-222", Kind.PHONE),
    ("0034 600 111 222", Kind.PHONE),
    ("34600111222", Kind.PHONE),
    ("+1 (415) 555-0100", Kind.PHONE),
    ("+44 7911.123456", Kind.PHONE),
    ("whatsapp:+34600111222", Kind.PHONE),
    ("tel:+34-600-111-222", Kind.PHONE),
    ("https://erp.example.com/hooks/herald", Kind.URL),
])
def test_find__a_query_is_classified_by_what_it_looks_like(text: str, kind: Kind) -> None:
    assert classify(text) is kind


def test_find__an_email_is_hashed_as_herald_hashes_recipients_with_every_ring_secret() -> None:
    hashes = recipient_hashes(f" {EMAIL.upper()} ", Kind.EMAIL, RING)
    for secret in RING.all:
        for channel in ("email", "push", "webhook"):
            assert emitter(secret).recipient(channel, EMAIL) in hashes
    assert len(hashes) == len(RING.all)  # email, push and webhook normalise alike: one hash per secret


@pytest.mark.parametrize("typed", ["+34600111222", "+34 600 111 222", "0034 600-111-222", "34600111222",
                                   "whatsapp:+34600111222", "tel:+34 600 111 222", "(+34) 600 11 12 22"])
def test_find__a_phone_number_in_any_common_format_is_hashed_for_every_phone_channel_and_secret(typed: str) -> None:
    assert classify(typed) is Kind.PHONE
    hashes = recipient_hashes(typed, Kind.PHONE, RING)
    for secret in RING.all:
        for channel in ("sms", "voice", "whatsapp"):
            assert emitter(secret).recipient(channel, PHONE) in hashes
    assert all(search.HASH.fullmatch(h) for h in hashes)


async def test_find__an_address_is_redirected_to_by_its_hashes_never_in_the_clear(client: TestClient) -> None:
    response = await find(client, EMAIL)
    assert response.status == 303
    location = response.headers["Location"]
    url = URL(location)
    assert url.path == "/console/find" and url.query.getall("r") == recipient_hashes(EMAIL, Kind.EMAIL, RING)
    for form in (EMAIL, EMAIL.lower(), quote(EMAIL), quote(EMAIL.lower()), "Lopez", "lopez"):
        assert form not in location and form not in unquote_plus(location)
    page = await client.get(location)
    text = await page.text()
    assert page.status == 200
    assert "lopez" not in text.lower()
    # Both messages to the address: the one hashed with the current secret and the one from before the rotation.
    assert f"/console/messages/{MSG_EMAIL}" in text and f"/console/messages/{MSG_OLD}" in text
    assert MSG_SMS not in text
    assert text.index(MSG_EMAIL) < text.index(MSG_OLD)  # newest first
    assert '<span class="badge ok">sent</span>' in text


@pytest.mark.parametrize("typed", ["+34 600 111 222", "0034600111222", "whatsapp:+34600111222"])
async def test_find__a_phone_number_finds_the_sms_to_it(client: TestClient, typed: str) -> None:
    response = await find(client, typed)
    assert response.status == 303 and "600" not in response.headers["Location"]
    text = await (await client.get(response.headers["Location"])).text()
    assert MSG_SMS in text and MSG_EMAIL not in text


async def test_find__a_message_id_opens_the_message(client: TestClient) -> None:
    response = await find(client, f" {MSG_EMAIL} ")
    assert response.status == 303 and response.headers["Location"] == f"/console/messages/{MSG_EMAIL}"


async def test_find__an_event_id_lists_the_messages_of_the_event(client: TestClient) -> None:
    response = await find(client, "evt-1")
    assert response.status == 303 and response.headers["Location"] == "/console/find?q=evt-1"
    text = await (await client.get(response.headers["Location"])).text()
    assert "Messages of event evt-1" in text
    assert MSG_EMAIL in text and MSG_SMS in text and MSG_OLD not in text
    assert text.index(MSG_SMS) < text.index(MSG_EMAIL)  # the SMS's last status is the newer


async def test_find__an_idempotency_key_lists_its_messages_within_the_tenant(client: TestClient) -> None:
    response = await find(client, "order-1001", tenant="demo")
    assert response.headers["Location"] == "/console/find?q=order-1001&tenant=demo"
    text = await (await client.get(response.headers["Location"])).text()
    assert message_id("demo", "order-1001", "email") in text and '<span class="badge bad">failed</span>' in text
    assert (await find(client, "order-1001", tenant="acme")).status == 404


async def test_find__an_event_id_that_looks_like_an_address_is_still_found(ctx: ConsoleContext,
                                                                           client: TestClient) -> None:
    index_statuses(ctx, status("msg-" + "d" * 24, event_id="42@orders.example.com"))
    response = await find(client, "42@orders.example.com")
    assert response.status == 303
    assert URL(response.headers["Location"]).query == {"q": "42@orders.example.com"}


async def test_find__nothing_found_answers_404_without_echoing_an_address(client: TestClient) -> None:
    response = await find(client, "nobody@example.org")
    assert response.status == 404
    text = await response.text()
    assert "nobody" not in text and "No status of what you typed" in text


async def test_find__nothing_found_while_catching_up_is_503(ctx: ConsoleContext, client: TestClient) -> None:
    assert ctx.timeline is not None
    ctx.timeline.caught_up = False
    response = await find(client, "evt-unknown")
    assert response.status == 503 and response.headers["Retry-After"] == "5"
    assert "still catching up" in await response.text()


async def test_find__the_form_without_its_csrf_field_is_refused(client: TestClient) -> None:
    response = await client.post("/console/find", data={"q": EMAIL}, allow_redirects=False)
    assert response.status == 403
    assert "Location" not in response.headers


async def test_find__an_address_in_a_link_is_neither_searched_nor_echoed(client: TestClient) -> None:
    response = await client.get("/console/find", params={"q": EMAIL}, allow_redirects=False)
    assert response.status == 400
    text = await response.text()
    assert "lopez" not in text.lower() and MSG_EMAIL not in text


async def test_find__a_recipient_link_with_a_hash_lists_its_messages(client: TestClient) -> None:
    hashed = emitter(RING.current).recipient("sms", PHONE)
    response = await client.get("/console/find", params={"r": hashed})
    assert response.status == 200 and MSG_SMS in await response.text()
    refused = await client.get("/console/find", params={"r": PHONE}, allow_redirects=False)  # not a hash
    assert refused.status == 303 and refused.headers["Location"] == "/console/"


async def test_message__the_timeline_shows_every_status_in_order_with_its_facts(client: TestClient) -> None:
    response = await client.get(f"/console/messages/{MSG_EMAIL}")
    assert response.status == 200
    text = await response.text()
    order = [text.index(f'<span class="badge {t}">{s}</span>', text.index("Timeline"))
             for t, s in (("", "accepted"), ("warn", "retrying"), ("ok", "sent"))]
    assert order == sorted(order)
    for shown in ("smtp-77", "1.50 s", "<code>provider_unavailable</code>: 421", "order.confirmed/email",
                  ">es<", ">demo<", emitter(RING.current).recipient("email", EMAIL)):
        assert shown in text
    assert 'href="/console/find?q=evt-1">All messages of this event' in text
    assert "All messages to this recipient" in text
    assert "data-message-content" not in text  # no content given: the content section is not rendered


async def test_message__an_unknown_message_is_404_and_503_while_catching_up(ctx: ConsoleContext,
                                                                           client: TestClient) -> None:
    response = await client.get("/console/messages/msg-unknown")
    assert response.status == 404 and "over the last 1 day." in await response.text()
    assert ctx.timeline is not None
    ctx.timeline.caught_up = False
    response = await client.get("/console/messages/msg-unknown")
    assert response.status == 503 and response.headers["Retry-After"] == "5"


async def test_find__the_home_page_has_a_labelled_search_field_that_slash_focuses(client: TestClient) -> None:
    text = await (await client.get("/console/")).text()
    assert "data-search" in text and 'name="csrf"' in text and 'method="post" action="/console/find"' in text
    assert "Message id, event id, idempotency key or recipient address" in text


@pytest.mark.parametrize("personal_data", [True, False])
async def test_message__what_it_said_is_shown_only_with_personal_data_on(ctx: ConsoleContext, tmp_path: Path,
                                                                       personal_data: bool) -> None:
    from consumers.observe.content_index import ContentIndex
    from consumers.observe.timeline import TopicReader
    from schemas.content import MessageContent

    ctx.settings = ctx.settings.model_copy(update={"console_personal_data": personal_data})
    contents = TopicReader("t.content", {}, tmp_path / "content.sqlite", retention=timedelta(days=1),
                           open_index=ContentIndex)
    said = MessageContent(message_id=MSG_EMAIL, event_type="order.confirmed", channel="email", locale="es",
                          template="order.confirmed/email", parts={"subject": "Pedido 1001 confirmado"}, at=T0)
    contents.index.add([(0, 0, said.model_dump_json().encode())], {0: 1})
    ctx.extras["contents"] = contents
    c = await client_for(ctx)
    try:
        await c.post("/console/login", data={"token": TOKEN})
        text = await (await c.get(f"/console/messages/{MSG_EMAIL}")).text()
    finally:
        await c.close()
        contents.close()
    assert ("Pedido 1001 confirmado" in text) is personal_data
