"""Open and click tracking for email: the HTML rewriting, the signed links, the views, the types never tracked, and
the `opened`/`clicked` statuses that travel as receipts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from channels.rendering.render import BUNDLED_TEMPLATES, Rendered, Renderer
from channels.rendering.tracking import pixel_tag, track_html, trackable
from consumers import hooks
from consumers.identity import KeyRing
from consumers.inbound.tracking import PIXEL, Tracking, TrackingLinks, location
from consumers.inbound.web import register_tracking_views
from consumers.observe.metrics import Metrics
from consumers.pipeline.delivery import DeliveryHooks, DeliveryStage
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import Record
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.status import Receipt
from consumers.state.documents import Documents
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import address_key
from consumers.state.sends import SendLedger
from schemas.catalog import NOT_TRACKED, Catalog, CatalogEntry
from schemas.catalog import Tracking as TypeTracking
from schemas.dispatch import Dispatch
from schemas.events import Recipient
from schemas.status import Status
from tests.fakes import FakeClock, RecordingPublisher, ScriptedSender

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PUBLIC = "https://herald.example.com"
SECRET = b"tracking-secret"
CATALOG = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml")
TTL = timedelta(days=30)


def wrap(url: str) -> str:
    return "T(" + url + ")"


# --- rewriting the HTML (channels/rendering/tracking.py) -----------------------------------------------------------

def test_track_html__wraps_http_and_https_links_with_the_href_a_browser_follows() -> None:
    html = ('<p><a href="https://shop.example.com/o?a=1&amp;b=2" class="btn">Order</a> '
            "<A HREF=http://shop.example.com/x>x</A></p>")
    out = track_html(html, click=wrap)
    assert out == ('<p><a href="T(https://shop.example.com/o?a=1&amp;b=2)" class="btn">Order</a> '
                   '<a href="T(http://shop.example.com/x)">x</A></p>')


@pytest.mark.parametrize("href", ["mailto:ana@example.com", "tel:+34600111222", "#top", "/relative/path",
                                  "javascript:alert(1)", "ftp://files.example.com/f", "https://",
                                  "https://shop.example.com/a b", "https://shop.example.com/\nx",
                                  "https://shop.example.com/unsubscribe?u=1",
                                  f"{PUBLIC}/unsubscribe/u1?c=email&s=x"],
                         ids=["mailto", "tel", "fragment", "relative", "javascript", "ftp", "no_host", "space",
                              "newline", "unsubscribe", "herald_unsubscribe"])
def test_track_html__leaves_links_that_are_not_http_or_are_unsubscribe_links(href: str) -> None:
    html = f'<a href="{href}">x</a>'
    calls: list[str] = []
    assert track_html(html, click=lambda u: calls.append(u) or wrap(u)) == html
    assert calls == []


def test_track_html__a_link_marked_notrack_or_declined_by_the_caller_stays() -> None:
    html = '<a data-herald-notrack href="https://a.example/">a</a><a href="https://b.example/">b</a>'
    assert track_html(html, click=lambda u: None) == html
    assert track_html(html, click=wrap) == ('<a data-herald-notrack href="https://a.example/">a</a>'
                                            '<a href="T(https://b.example/)">b</a>')


def test_track_html__ignores_hrefs_in_comments_styles_and_scripts() -> None:
    html = ('<!-- <a href="https://c.example/">c</a> --><style>a[href="https://s.example/"]{}</style>'
            '<script>var a = \'<a href="https://j.example/">\';</script><a title="href=https://t.example/">t</a>')
    assert track_html(html, click=wrap) == html


def test_track_html__changes_nothing_but_the_anchors_and_the_pixel() -> None:
    html = ("<!DOCTYPE html>\r\n<html>\n<head><title>Ünïcode &amp; co</title></head>\n<body style='x'>\n"
            "<p>Tom &amp; Jerry <b>bold</b></p>\n<a href='https://a.example/é'>a</a>\n</body>\n</html>\n")
    out = track_html(html, click=wrap, pixel="P")
    expected = html.replace("<a href='https://a.example/é'>", '<a href="T(https://a.example/é)">') \
        .replace("</body>", pixel_tag("P") + "</body>")
    assert out == expected
    assert track_html(html) == html  # neither clicks nor pixel: byte for byte the same


def test_track_html__one_pixel_before_the_last_body_end_else_html_end_else_the_end() -> None:
    pixel = pixel_tag("https://h.example/t/o/m.gif?e=1&s=2")
    assert '&amp;s=2"' in pixel and 'width="1"' in pixel and 'alt=""' in pixel
    twice = "<body>a</body><body>b</body></html>"
    assert track_html(twice, pixel="https://h.example/t/o/m.gif?e=1&s=2") == \
        f"<body>a</body><body>b{pixel}</body></html>"
    assert track_html("<p>no body</p></html>", pixel="https://h.example/t/o/m.gif?e=1&s=2") == \
        f"<p>no body</p>{pixel}</html>"
    assert track_html("<p>fragment</p>", pixel="https://h.example/t/o/m.gif?e=1&s=2") == f"<p>fragment</p>{pixel}"
    assert track_html("<p>fragment</p>", pixel="P").count("<img") == 1


def test_track_html__self_closed_anchor_and_attribute_without_value() -> None:
    html = '<a download href="https://a.example/f.pdf" />'
    assert track_html(html, click=wrap) == '<a download href="T(https://a.example/f.pdf)"/>'


@given(st.text(max_size=60))
def test_track_html__any_href_text_never_raises_and_only_trackable_urls_are_wrapped(href: str) -> None:
    seen: list[str] = []
    html = "<body><a href='" + href.replace("'", "&#39;") + "'>x</a></body>"
    track_html(html, click=lambda u: seen.append(u) or wrap(u), pixel="P")
    assert all(trackable(u) for u in seen)


# --- signed links (consumers/inbound/tracking.py TrackingLinks) ----------------------------------------------------

def dispatch(event_type: str = "signup.welcome", **overrides: object) -> Dispatch:
    values: dict[str, object] = dict(
        message_id="msg-0123456789abcdef01234567", event_id="evt-1", event_type=event_type,
        event_time=NOW - timedelta(seconds=1), channel="email", tenant="acme", category="transactional",
        priority="normal", idempotency_key="k", to=Recipient(id="u1", email="Ana@Example.com", locale="en"),
        payload=dict(CATALOG.types[event_type].sample), expires_at=NOW + timedelta(days=7))
    values.update(overrides)
    return Dispatch(**values)  # type: ignore[arg-type]


def links(secret: bytes | KeyRing = SECRET, now: datetime = NOW) -> TrackingLinks:
    return TrackingLinks(secret, PUBLIC + "/", ttl=TTL, clock=lambda: now)


def click_query(link: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(link)
    assert parts.path.startswith("/t/c/")
    return parts.path.removeprefix("/t/c/"), {k: v[0] for k, v in parse_qs(parts.query).items()}


def open_query(link: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(link)
    assert parts.path.startswith("/t/o/") and parts.path.endswith(".gif")
    return parts.path.removeprefix("/t/o/").removesuffix(".gif"), {k: v[0] for k, v in parse_qs(parts.query).items()}


TARGET = "https://shop.example.com/account?next=/orders&x=a+b%2Fc#top"


def test_tracking_links__expire_the_ttl_after_the_message_the_same_on_every_attempt() -> None:
    d = dispatch()
    assert links().expiry(d) == str(int((d.expires_at + TTL).timestamp()))  # type: ignore[operator]
    assert links().expiry(d.model_copy(update={"attempt": 3})) == links().expiry(d)


def test_tracking_links__a_click_link_verifies_for_its_exact_url_only() -> None:
    ring = links()
    expires = ring.expiry(dispatch())
    link = ring.click_link("msg-1", expires, TARGET)
    assert link.startswith(f"{PUBLIC}/t/c/msg-1?u=")
    message_id, q = click_query(link)
    assert q["u"] == TARGET
    assert ring.check_click(message_id, q["e"], q["u"], q["s"]) == "ok"
    assert ring.check_click(message_id, q["e"], "https://evil.example/", q["s"]) == "forbidden"  # tampered url
    assert ring.check_click(message_id, q["e"], TARGET + "x", q["s"]) == "forbidden"
    assert ring.check_click("msg-2", q["e"], q["u"], q["s"]) == "forbidden"  # tampered id
    assert ring.check_click(message_id, str(int(q["e"]) + 1), q["u"], q["s"]) == "forbidden"  # tampered expiry
    assert ring.check_click(message_id, q["e"], q["u"], "") == "forbidden"  # unsigned
    assert ring.check_click(message_id, q["e"], q["u"], q["s"][:-1] + "A") == "forbidden"
    assert links(b"another-secret").check_click(message_id, q["e"], q["u"], q["s"]) == "forbidden"  # wrong key


def test_tracking_links__expired_links_are_told_apart_from_forged_ones() -> None:
    expires = str(int(NOW.timestamp()) - 1)
    message_id, q = click_query(links().click_link("msg-1", expires, TARGET))
    assert links().check_click(message_id, q["e"], q["u"], q["s"]) == "expired"
    opened, o = open_query(links().open_link("msg-1", expires))
    assert links().check_open(opened, o["e"], o["s"]) == "expired"
    later = links(now=NOW + TTL + timedelta(days=8))
    fresh = later.expiry(dispatch())
    message_id, q = click_query(links().click_link("msg-1", fresh, TARGET))
    assert later.check_click(message_id, q["e"], q["u"], q["s"]) == "expired"


def test_tracking_links__signed_before_a_rotation_still_verify_and_new_ones_use_the_new_secret() -> None:
    old = links(b"old-secret")
    rotated = links(KeyRing(b"new-secret", (b"old-secret",)))
    expires = old.expiry(dispatch())
    message_id, q = click_query(old.click_link("msg-1", expires, TARGET))
    assert rotated.check_click(message_id, q["e"], q["u"], q["s"]) == "ok"
    opened, o = open_query(old.open_link("msg-1", expires))
    assert rotated.check_open(opened, o["e"], o["s"]) == "ok"
    _, new = click_query(rotated.click_link("msg-1", expires, TARGET))
    assert links(b"new-secret").check_click(message_id, new["e"], new["u"], new["s"]) == "ok"
    assert old.check_click(message_id, new["e"], new["u"], new["s"]) == "forbidden"


def test_tracking_links__an_open_signature_is_no_click_signature_and_odd_input_is_forbidden() -> None:
    ring = links()
    expires = ring.expiry(dispatch())
    _, o = open_query(ring.open_link("msg-1", expires))
    assert ring.check_click("msg-1", o["e"], TARGET, o["s"]) == "forbidden"
    assert ring.check_open("msg-1", "²³", o["s"]) == "forbidden"
    assert ring.check_open("msg|1", o["e"], o["s"]) == "forbidden"
    assert ring.check_open("msg-\udce9", o["e"], "\udce9") == "forbidden"
    signed = ring.click_link("msg-1", expires, "javascript:alert(1)")  # Herald never signs one; if it did…
    message_id, q = click_query(signed)
    assert ring.check_click(message_id, q["e"], q["u"], q["s"]) == "forbidden"


def test_location__non_ascii_is_percent_encoded_everything_else_is_as_signed() -> None:
    assert location(TARGET) == TARGET
    assert location("https://shop.example.com/ñ?q=é") == "https://shop.example.com/%C3%B1?q=%C3%A9"


# --- the views (Tracking, and through Faust's web server) ---------------------------------------------------------

class Heard:
    """The receipts the views route, and a way to make routing fail or hang."""

    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.fail: BaseException | None = None
        self.hang = False

    async def __call__(self, receipt: Receipt) -> None:
        if self.fail is not None:
            raise self.fail
        if self.hang:
            await asyncio.sleep(3600)
        self.receipts.append(receipt)


def tracking(now: datetime = NOW) -> tuple[Tracking, Heard, Metrics, FakeClock[float]]:
    heard, metrics, monotonic = Heard(), Metrics(), FakeClock(1000.0)
    return (Tracking(links(now=now), heard, metrics, repeat_window=60.0, publish_timeout=0.05,
                     monotonic=monotonic), heard, metrics, monotonic)


def counted(metrics: Metrics, kind: str, result: str) -> float:
    return metrics.tracking.labels(kind, result)._value.get()  # type: ignore[no-any-return]


async def test_tracking__open_serves_the_pixel_and_routes_one_opened_per_window() -> None:
    view, heard, metrics, monotonic = tracking()
    message_id, q = open_query(links().open_link("msg-1", links().expiry(dispatch())))
    answer = await view.open(message_id, q)
    assert (answer.status, answer.content_type, answer.body) == (200, "image/gif", PIXEL)
    assert PIXEL.startswith(b"GIF89a") and len(PIXEL) == 43
    [receipt] = heard.receipts
    assert (receipt.message_id, receipt.status, receipt.channel, receipt.heard_at) == (
        "msg-1", Status.OPENED, "email", NOW)
    assert receipt.provider is None  # the owner's send record names the provider that carried the email
    monotonic.advance(59)
    assert (await view.open(message_id, q)).status == 200  # an image proxy fetching it again
    assert len(heard.receipts) == 1 and counted(metrics, "open", "repeated") == 1
    monotonic.advance(2)
    await view.open(message_id, q)
    assert len(heard.receipts) == 2 and counted(metrics, "open", "ok") == 2


async def test_tracking__click_redirects_to_the_exact_url_and_routes_clicked() -> None:
    view, heard, metrics, _ = tracking()
    message_id, q = click_query(links().click_link("msg-1", links().expiry(dispatch()), TARGET))
    answer = await view.click(message_id, q)
    assert (answer.status, answer.location, answer.body) == (302, TARGET, b"")
    [receipt] = heard.receipts
    assert (receipt.status, receipt.detail) == (Status.CLICKED, "shop.example.com")  # the host, never the query
    _, other = click_query(links().click_link("msg-1", q["e"], "https://shop.example.com/other"))
    await view.click(message_id, other)  # another link of the same message is another click
    await view.click(message_id, q)  # a scanner following the first again within the window
    assert [r.status for r in heard.receipts] == [Status.CLICKED, Status.CLICKED]
    assert counted(metrics, "click", "ok") == 2 and counted(metrics, "click", "repeated") == 1


async def test_tracking__bad_links_are_403_with_no_redirect_and_no_status() -> None:
    view, heard, metrics, _ = tracking()
    expires = links().expiry(dispatch())
    message_id, q = click_query(links().click_link("msg-1", expires, TARGET))
    for query in ({**q, "u": "https://evil.example/"}, {**q, "s": "forged"}, {"u": q["u"], "e": q["e"]}, {},
                  {**q, "e": "never"}):
        answer = await view.click(message_id, query)
        assert (answer.status, answer.location) == (403, None)
        assert b"evil" not in answer.body and b"shop.example.com" not in answer.body
    assert (await view.click("msg-2", q)).status == 403
    opened, o = open_query(links().open_link("msg-1", expires))
    assert (await view.open(opened, {**o, "s": "forged"})).status == 403
    assert (await view.open("msg-2", o)).status == 403
    assert heard.receipts == []
    assert counted(metrics, "click", "forbidden") == 6 and counted(metrics, "open", "forbidden") == 2


async def test_tracking__an_expired_link_is_403_and_names_its_url_as_text_without_redirecting() -> None:
    view, heard, metrics, _ = tracking(now=NOW + timedelta(days=7) + TTL + timedelta(seconds=1))
    expires = links().expiry(dispatch())
    message_id, q = click_query(links().click_link("msg-1", expires, TARGET))
    answer = await view.click(message_id, q)
    assert (answer.status, answer.location, answer.content_type) == (403, None, "text/plain; charset=utf-8")
    assert TARGET in answer.body.decode()
    opened, o = open_query(links().open_link("msg-1", expires))
    assert (await view.open(opened, o)).status == 403
    assert heard.receipts == [] and counted(metrics, "click", "expired") == counted(metrics, "open", "expired") == 1


@pytest.mark.parametrize("problem", ["fails", "hangs"])
async def test_tracking__a_broker_that_fails_or_hangs_never_stops_the_redirect(problem: str) -> None:
    view, heard, metrics, _ = tracking()
    heard.fail, heard.hang = (RuntimeError("broker down"), False) if problem == "fails" else (None, True)
    message_id, q = click_query(links().click_link("msg-1", links().expiry(dispatch()), TARGET))
    answer = await view.click(message_id, q)
    assert (answer.status, answer.location) == (302, TARGET)
    assert counted(metrics, "click", "error") == 1
    heard.fail, heard.hang = None, False
    await view.click(message_id, q)  # not published the first time, so a repeat is not held back
    assert len(heard.receipts) == 1


def web_app(view: Tracking) -> faust.App:
    app = faust.App(f"test-tracking-{id(view)}", broker="memory://", autodiscover=False)
    register_tracking_views(app, view)
    return app


@pytest.mark.parametrize("url", [TARGET, "http://shop.example.com/a%20b?q=%E2%82%AC&r=1;s=2",
                                 "https://shop.example.com/p?u=https%3A%2F%2Fx.example%2F&amp=1"],
                         ids=["query_fragment_plus", "escapes", "nested_url"])
async def test_web__click_link_redirects_to_exactly_the_signed_url(url: str) -> None:
    view, heard, _, _ = tracking()
    link = links().click_link("msg-1", links().expiry(dispatch()), url)
    async with TestClient(TestServer(web_app(view).web.web_app)) as client:  # type: ignore[attr-defined]
        response = await client.get(link.removeprefix(PUBLIC), allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == url
        assert response.headers["Cache-Control"] == "no-store"
    assert [r.status for r in heard.receipts] == [Status.CLICKED]


async def test_web__open_pixel_is_an_uncached_gif() -> None:
    view, heard, _, _ = tracking()
    link = links().open_link("msg-1", links().expiry(dispatch()))
    async with TestClient(TestServer(web_app(view).web.web_app)) as client:  # type: ignore[attr-defined]
        response = await client.get(link.removeprefix(PUBLIC))
        assert response.status == 200 and await response.read() == PIXEL
        assert response.headers["Content-Type"] == "image/gif" and response.headers["Cache-Control"] == "no-store"
    assert [r.status for r in heard.receipts] == [Status.OPENED]


async def test_web__unsigned_tampered_or_raising_links_never_redirect() -> None:
    view, heard, metrics, _ = tracking()
    link = links().click_link("msg-1", links().expiry(dispatch()), TARGET)
    _, q = click_query(link)
    evil = "/t/c/msg-1?u=https%3A%2F%2Fevil.example%2F&e=" + q["e"] + "&s=" + q["s"]
    unsigned = "/t/c/msg-1?u=https%3A%2F%2Fevil.example%2F"

    class Raising(Tracking):
        async def click(self, message_id: str, query: object) -> object:  # type: ignore[override]
            raise ValueError("a bug")

    async with TestClient(TestServer(web_app(view).web.web_app)) as client:  # type: ignore[attr-defined]
        for bad in (evil, unsigned, "/t/c/msg-1", "/t/o/msg-1.gif?e=1&s=x"):
            response = await client.get(bad, allow_redirects=False)
            assert response.status == 403 and "Location" not in response.headers, bad
    raising = Raising(links(), heard, metrics)
    async with TestClient(TestServer(web_app(raising).web.web_app)) as client:  # type: ignore[attr-defined]
        response = await client.get(link.removeprefix(PUBLIC), allow_redirects=False)
        assert response.status == 400 and "Location" not in response.headers
    assert heard.receipts == [] and counted(metrics, "click", "malformed") == 1


# --- which types are tracked (schemas/catalog.py) -----------------------------------------------------------------

@pytest.mark.parametrize("event_type", ["otp.requested", "password.reset", "account.verification"])
def test_catalog__codes_resets_and_verification_links_are_never_tracked(event_type: str) -> None:
    entry = CATALOG.types[event_type]
    assert entry.priority == "critical" and entry.tracking is False and entry.tracks() == NOT_TRACKED
    assert entry.model_copy(update={"tracking": None}).tracks() == NOT_TRACKED  # critical alone is enough


def test_catalog__every_critical_type_is_untracked_and_the_others_tracked_by_default() -> None:
    for name, entry in CATALOG.types.items():
        expected = NOT_TRACKED if entry.priority == "critical" else TypeTracking()
        assert entry.tracks() == expected, name


def entry(**overrides: object) -> CatalogEntry:
    return CatalogEntry.model_validate({"category": "transactional", "priority": "normal", "channels": ["email"],
                                        "ttl": "1d", **overrides})


def test_catalog__tracking_per_type_false_true_or_opens_and_clicks() -> None:
    assert entry().tracks() == TypeTracking(opens=True, clicks=True)
    assert entry(category="promotional").tracks() == TypeTracking()
    assert entry(tracking=False).tracks() == NOT_TRACKED
    assert entry(tracking=True).tracks() == TypeTracking()
    assert entry(tracking={"clicks": False}).tracks() == TypeTracking(opens=True, clicks=False)
    with pytest.raises(ValidationError, match="extra"):
        entry(tracking={"opens": True, "pixels": True})


@pytest.mark.parametrize("tracking", [True, {"opens": True}, {"opens": False, "clicks": True}])
def test_catalog__a_critical_type_may_not_ask_to_be_tracked(tracking: object) -> None:
    with pytest.raises(ValidationError, match="never tracked"):
        entry(priority="critical", tracking=tracking)
    assert entry(priority="critical", tracking={"opens": False, "clicks": False}).tracks() == NOT_TRACKED


# --- at send time (consumers/hooks.py track_email, the delivery stage) --------------------------------------------

def with_type(event_type: str, **overrides: object) -> Catalog:
    types = dict(CATALOG.types)
    types[event_type] = types[event_type].model_copy(update=overrides)
    return CATALOG.model_copy(update={"types": types})


async def sent_email(d: Dispatch, catalog: Catalog = CATALOG, *, enabled: bool = True) -> Rendered:
    publisher, clock, sender = RecordingPublisher(), FakeClock(NOW), ScriptedSender()
    outlets = Outlets.build(publisher, Metrics(), SECRET, clock)
    renderer, globals_ = Renderer(), {"brand": "Shop", "document_url": None}
    stage = DeliveryStage(
        renderer, {"email": sender}, catalog, outlets, sends=SendLedger(MemoryStore(), clock),
        documents=Documents(MemoryStore(), renderer, SECRET, PUBLIC, template_globals=globals_, clock=clock),
        scheduler=Scheduler(MemoryStore(), publisher, outlets.statuses, clock=clock), clock=clock,
        template_globals=globals_,
        hooks=DeliveryHooks(headers=hooks.unsubscribe_headers(SECRET, PUBLIC),
                            track=hooks.track_email(links(), catalog, enabled=enabled)))
    await stage.handle(Record(topic="h.dispatch.email", partition=0, offset=1, key=d.message_id.encode(),
                              value=d.model_dump_json().encode()))
    [message] = sender.sent
    return message.rendered


def untracked(d: Dispatch) -> Rendered:
    return Renderer().render(d.event_type, "email", locale="en", context={
        "brand": "Shop", "document_url": None, "to": d.to.model_dump(mode="json"), "payload": d.payload,
        "message_id": d.message_id, "event_id": d.event_id, "tenant": d.tenant})


async def test_delivery__an_email_goes_out_with_signed_click_links_and_one_pixel() -> None:
    d = dispatch("signup.welcome")
    rendered = await sent_email(d)
    html, plain = rendered["html"], untracked(d)
    login = d.payload["login_url"]
    assert f'href="{login}"' not in html and f'href="{login}"' in plain["html"]
    wrapped = links().click_link(d.message_id, links().expiry(d), login).replace("&", "&amp;")
    assert f'href="{wrapped}"' in html
    pixel = links().open_link(d.message_id, links().expiry(d))
    assert html.count("<img") == plain["html"].count("<img") + 1 and pixel.replace("&", "&amp;") in html
    assert html.index(pixel.replace("&", "&amp;")) < html.index("</body>")
    assert rendered["text"] == plain["text"] and rendered["subject"] == plain["subject"]  # text part untouched


@pytest.mark.parametrize("event_type", ["password.reset", "account.verification"])
async def test_delivery__a_reset_or_verification_link_goes_out_as_written(event_type: str) -> None:
    d = dispatch(event_type, priority="critical")
    assert (await sent_email(d))["html"] == untracked(d)["html"]


async def test_delivery__tracking_off_per_type_in_part_or_everywhere() -> None:
    d = dispatch("signup.welcome")
    plain = untracked(d)["html"]
    assert (await sent_email(d, with_type("signup.welcome", tracking=False)))["html"] == plain
    assert (await sent_email(d, enabled=False))["html"] == plain
    clicks_only = (await sent_email(d, with_type("signup.welcome", tracking=TypeTracking(opens=False))))["html"]
    assert "/t/c/" in clicks_only and "/t/o/" not in clicks_only
    opens_only = (await sent_email(d, with_type("signup.welcome", tracking=TypeTracking(clicks=False))))["html"]
    assert "/t/c/" not in opens_only and "/t/o/" in opens_only


def test_track_email__herald_links_and_other_channels_are_left_alone() -> None:
    track = hooks.track_email(links(), CATALOG)
    d = dispatch("offer.loyalty", category="promotional", priority="bulk")
    own = f'<body><a href="{PUBLIC}/documents/msg-1.pdf?e=1&amp;s=x">pdf</a></body>'
    rendered = Rendered("t", "en", {"subject": "s", "html": own, "text": "t"})
    assert "/documents/msg-1.pdf" in track(d, rendered)["html"] and "/t/c/" not in track(d, rendered)["html"]
    sms = Rendered("t", "en", {"text": "https://shop.example.com/x"})
    assert track(d.model_copy(update={"channel": "sms"}), sms) is sms
    assert track(d.model_copy(update={"event_type": "no.such_type"}), rendered) is rendered


# --- the statuses: receipts, published by the message's owner ------------------------------------------------------

async def test_opened_and_clicked__travel_as_receipts_and_are_published_described_by_the_send_record() -> None:
    publisher, clock = RecordingPublisher(), FakeClock(NOW)
    outlets = Outlets.build(publisher, Metrics(), SECRET, clock)
    sends = SendLedger(MemoryStore(), clock)
    d = dispatch("signup.welcome")
    await sends.pending(d)
    await sends.sent(d, "smtp", "<m1@herald>")
    view = Tracking(links(), hooks.route_receipts(publisher), Metrics())
    expires = links().expiry(d)
    opened, o = open_query(links().open_link(d.message_id, expires))
    clicked, q = click_query(links().click_link(d.message_id, expires, TARGET))
    await view.open(opened, o)
    await view.click(clicked, q)
    receipts = publisher.on("receipts")
    assert [r.key for r in receipts] == [d.message_id.encode()] * 2 and publisher.on("status") == []
    apply = hooks.apply_receipts(sends, outlets)
    for r in receipts:
        await apply(Record(topic="h.receipts", partition=0, offset=0, key=r.key, value=r.value))
    first, second = publisher.statuses()
    assert (first.status, second.status) == (Status.OPENED, Status.CLICKED)
    for status in (first, second):
        assert (status.event_type, status.tenant, status.channel, status.provider, status.provider_message_id,
                status.event_id) == ("signup.welcome", "acme", "email", "smtp", "<m1@herald>", "evt-1")
        assert status.recipient == address_key(SECRET, "email", "ana@example.com")
    assert second.detail == "shop.example.com"
    assert sends.get(d.message_id).state == "delivered"  # type: ignore[union-attr]  # an open proves delivery
