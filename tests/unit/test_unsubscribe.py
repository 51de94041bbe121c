"""One-click unsubscribe (RFC 8058): signed links that never expire, the headers, and the page's behaviour."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer

from channels.signatures import link_signature
from consumers.inbound.unsubscribe import Unsubscribes, list_unsubscribe_headers, unsubscribe_link, verify_unsubscribe
from consumers.inbound.web import register_views
from consumers.observe.metrics import Metrics
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import PreferenceLedger
from schemas.catalog import Channel

pytestmark = pytest.mark.unit

SECRET = b"unsubscribe-secret"
PUBLIC = "https://herald.example.com/"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def parts(link: str) -> tuple[str, dict[str, str]]:
    split = urlsplit(link)
    return split.path, {k: v[0] for k, v in parse_qs(split.query).items()}


def test_unsubscribe_link__is_the_public_url_with_channel_and_signature() -> None:
    link = unsubscribe_link(SECRET, PUBLIC, "user-42")
    signature = link_signature(SECRET, "unsubscribe", "user-42", "email")
    assert link == f"https://herald.example.com/unsubscribe/user-42?c=email&s={signature}"


def test_unsubscribe_link__quotes_ids_that_are_not_url_safe() -> None:
    path, query = parts(unsubscribe_link(SECRET, PUBLIC, "+34 600/11", channel="sms"))
    assert path == "/unsubscribe/%2B34%20600%2F11" and query["c"] == "sms"
    assert verify_unsubscribe(SECRET, "+34 600/11", "sms", query["s"])


@pytest.mark.parametrize(("secret", "recipient_id", "channel", "valid"), [
    (SECRET, "user-42", "email", True),
    (SECRET, "user-43", "email", False),
    (SECRET, "user-42", "sms", False),
    (b"another-secret", "user-42", "email", False),
], ids=["same", "other_recipient", "other_channel", "other_secret"])
def test_verify_unsubscribe__signature_covers_recipient_channel_and_secret(
        secret: bytes, recipient_id: str, channel: str, valid: bool) -> None:
    _, query = parts(unsubscribe_link(SECRET, PUBLIC, "user-42"))
    assert verify_unsubscribe(secret, recipient_id, channel, query["s"]) is valid


def test_list_unsubscribe_headers__https_then_mailto_and_the_one_click_post() -> None:
    link = unsubscribe_link(SECRET, PUBLIC, "user-42")
    assert list_unsubscribe_headers(link) == {"List-Unsubscribe": f"<{link}>",
                                              "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    with_mail = list_unsubscribe_headers(link, "unsubscribe@example.com?subject=user-42")
    assert with_mail["List-Unsubscribe"] == f"<{link}>, <mailto:unsubscribe@example.com?subject=user-42>"
    assert list_unsubscribe_headers(link, "mailto:u@example.com")["List-Unsubscribe"].endswith(
        "<mailto:u@example.com>")


@pytest.mark.parametrize("uri", ["https://x/u>\r\nBcc: a@b.c", "https://x/u\nX: y", "https://x/<u>"],
                         ids=["crlf_injection", "newline", "angle_brackets"])
def test_list_unsubscribe_headers__refuses_uris_that_could_inject_headers(uri: str) -> None:
    with pytest.raises(ValueError):
        list_unsubscribe_headers(uri)
    with pytest.raises(ValueError):
        list_unsubscribe_headers("https://x/u", uri)


# --- the view's logic ---------------------------------------------------------------------------------------------

async def subscribed() -> tuple[Unsubscribes, PreferenceLedger, Metrics]:
    ledger, metrics = PreferenceLedger(MemoryStore(), clock=lambda: NOW), Metrics()
    await ledger.set_promotional("user-42", "email", True, source="cli")
    await ledger.set_promotional("user-42", "sms", True, source="cli")
    return Unsubscribes(ledger, SECRET, metrics), ledger, metrics


def query_of(recipient_id: str = "user-42", channel: str = "email") -> dict[str, str]:
    return parts(unsubscribe_link(SECRET, PUBLIC, recipient_id, channel))[1]


@pytest.mark.parametrize("body_method", ["POST", "post"], ids=["upper", "lower"])
async def test_unsubscribes__one_click_post_withdraws_promotional_consent_on_that_channel(body_method: str) -> None:
    unsubscribes, ledger, metrics = await subscribed()
    answer = await unsubscribes.handle("user-42", query_of(), body_method)
    assert answer.status == 200 and answer.content_type.startswith("text/plain")
    doc = ledger.get("user-42")
    assert doc is not None and doc.promotional_opt_in == [Channel.SMS] and doc.source == "unsubscribe"
    assert metrics.unsubscribes.labels("email")._value.get() == 1


async def test_unsubscribes__a_second_post_is_still_200() -> None:
    unsubscribes, _, _ = await subscribed()
    await unsubscribes.handle("user-42", query_of(), "POST")
    assert (await unsubscribes.handle("user-42", query_of(), "POST")).status == 200


async def test_unsubscribes__get_shows_a_form_that_posts_and_changes_nothing() -> None:
    unsubscribes, ledger, metrics = await subscribed()
    before = ledger.get("user-42")
    answer = await unsubscribes.handle("user-42", query_of(), "GET")
    page = answer.body.decode()
    assert answer.status == 200 and answer.content_type.startswith("text/html")
    assert '<form method="post"' in page and 'name="List-Unsubscribe" value="One-Click"' in page
    assert f"?c=email&amp;s={query_of()['s']}" in page
    assert ledger.get("user-42") == before
    assert metrics.unsubscribes.labels("email")._value.get() == 0


@pytest.mark.parametrize(("recipient_id", "query"), [
    ("user-43", query_of("user-42")),
    ("user-42", {**query_of(), "c": "sms"}),
    ("user-42", {"c": "email"}),
    ("user-42", {**query_of(), "s": "forged"}),
    ("user-42", {**query_of(), "c": "pigeon"}),
], ids=["other_recipient", "other_channel", "no_signature", "forged_signature", "unknown_channel"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unsubscribes__bad_link_is_403_and_changes_nothing(recipient_id: str, query: dict[str, str],
                                                                 method: str) -> None:
    unsubscribes, ledger, _ = await subscribed()
    before = ledger.get("user-42")
    answer = await unsubscribes.handle(recipient_id, query, method)
    assert answer.status == 403
    assert ledger.get("user-42") == before and ledger.get("user-43") is None


async def test_unsubscribes__channel_defaults_to_email() -> None:
    unsubscribes, ledger, _ = await subscribed()
    answer = await unsubscribes.handle("user-42", {"s": query_of()["s"]}, "POST")
    assert answer.status == 200 and ledger.get("user-42").promotional_opt_in == [Channel.SMS]  # type: ignore[union-attr]


async def test_unsubscribes__other_methods_are_405() -> None:
    unsubscribes, ledger, _ = await subscribed()
    assert (await unsubscribes.handle("user-42", query_of(), "DELETE")).status == 405
    assert ledger.get("user-42").promotional_opt_in == [Channel.EMAIL, Channel.SMS]  # type: ignore[union-attr]


# --- through Faust's web server (aiohttp, no broker) --------------------------------------------------------------

async def test_web__unsubscribe_route_serves_get_post_and_403() -> None:
    app = faust.App("test-unsubscribe", broker="memory://", autodiscover=False)
    ledger = PreferenceLedger(MemoryStore(), clock=lambda: NOW)
    await ledger.set_promotional("+34600111222", "email", True, source="cli")
    register_views(app, Metrics(), None, PUBLIC, ledger=ledger, secret=SECRET)  # type: ignore[arg-type]
    path, query = parts(unsubscribe_link(SECRET, PUBLIC, "+34600111222"))
    async with TestClient(TestServer(app.web.web_app)) as client:  # type: ignore[attr-defined]
        page = await client.get(path, params=query)
        assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
        assert ledger.get("+34600111222").promotional_opt_in == [Channel.EMAIL]  # type: ignore[union-attr]
        forged = await client.post(path, params={**query, "s": "forged"}, data="List-Unsubscribe=One-Click")
        assert forged.status == 403
        done = await client.post(path, params=query, data="List-Unsubscribe=One-Click",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert done.status == 200 and "Location" not in done.headers
    assert ledger.get("+34600111222").promotional_opt_in == []  # type: ignore[union-attr]


def test_web__no_unsubscribe_route_without_a_ledger() -> None:
    app = faust.App("test-no-unsubscribe", broker="memory://", autodiscover=False)
    register_views(app, Metrics(), None, PUBLIC)  # type: ignore[arg-type]
    paths = {route.resource.canonical for route in app.web.web_app.router.routes()}  # type: ignore[attr-defined]
    assert "/webhooks/{channel}/{vendor}" in paths and "/unsubscribe/{recipient_id}" not in paths
