"""The hosted preference page (consumers/inbound/preference_page.py): its signed, expiring link, the form in the
person's language with what cannot be turned off locked, and a POST that must carry the token and a fresh nonce
of a form this page served, from this site, before it writes the tenant's document."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import faust
import httpx
import pytest
from aiohttp.test_utils import TestServer

from channels.rendering.render import Renderer
from consumers.app import BUNDLED_CATALOG
from consumers.identity import KeyRing
from consumers.inbound.preference_page import (
    PreferencePage,
    page_token,
    preferences_link,
    read_token,
    register_preference_page,
)
from consumers.inbound.web import harden_responses
from consumers.observe.metrics import Metrics
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import PreferenceLedger
from schemas.catalog import Catalog
from schemas.preferences import TopicChoice
from tests.fakes import FakeClock

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KEYS = KeyRing(b"page-secret-current", (b"page-secret-previous",))
PUBLIC = "https://herald.example.com"
CATALOG = Catalog.load(BUNDLED_CATALOG)
# Every box a person may tick, as the bundled catalog's topics give them (read off the page: other types may join).
EVERYTHING_ON: list[str] = []


def token(recipient_id: str = "user-42", *, tenant: str | None = "acme", locale: str | None = "es",
          expires: datetime = NOW + timedelta(days=90), keys: KeyRing = KEYS) -> str:
    return page_token(keys, tenant=tenant, recipient_id=recipient_id, locale=locale,
                      expires=int(expires.timestamp()))


def boxes(html: str) -> list[str]:
    """The values of the form's checkboxes a person may change."""
    return re.findall(r'<input type="checkbox" name="on" value="([^"]+)"(?: checked)?>', html)


class Page:
    def __init__(self) -> None:
        self.clock = FakeClock(NOW)
        self.store = MemoryStore()
        self.ledger = PreferenceLedger(self.store, clock=self.clock)
        self.metrics = Metrics()
        self.page = PreferencePage(self.ledger, CATALOG, KEYS, self.metrics, brand="Shop", public_url=PUBLIC,
                                   clock=self.clock)

    async def form(self, link: str) -> tuple[int, str, str]:
        """GET: status, HTML and the form's nonce."""
        answer = await self.page.get(link)
        found = re.search(r'name="nonce" value="([^"]+)"', answer.html)
        return answer.status, answer.html, found.group(1) if found else ""

    async def post(self, link: str, on: list[str], *, nonce: str | None = None, form_token: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, str]:
        if nonce is None:
            nonce = (await self.form(link))[2]
        fields = [("token", link if form_token is None else form_token), ("nonce", nonce), *(("on", v) for v in on)]
        answer = await self.page.post(link, urlencode(fields).encode(), headers or {})
        return answer.status, answer.html

    def acme(self) -> dict[str, TopicChoice]:
        document = self.ledger.get("user-42", tenant="acme")
        return {} if document is None else document.topics


@pytest.fixture(autouse=True)
async def every_box() -> None:
    if not EVERYTHING_ON:
        EVERYTHING_ON.extend(boxes((await Page().page.get(token())).html))
        assert {"promotions/sms", "promotions/email", "shipping/email", "shipping/sms"} <= set(EVERYTHING_ON)
        assert not any(v.startswith(("account/", "orders/")) for v in EVERYTHING_ON)


# --- the link --------------------------------------------------------------------------------------------------------


def test_token__names_tenant_recipient_language_and_expiry_and_verifies_under_an_older_secret() -> None:
    link = token("user-42/ñ", tenant="a/b", expires=NOW + timedelta(days=1))
    found = read_token(KEYS, link)
    assert found is not None and (found.tenant, found.recipient_id, found.locale) == ("a/b", "user-42/ñ", "es")
    assert not found.expired(NOW) and found.expired(NOW + timedelta(days=2))
    old = token(keys=KeyRing(b"page-secret-previous"))
    assert read_token(KEYS, old) is not None  # signed before a rotation: still a link
    assert read_token(KeyRing(b"someone-else"), link) is None


def test_token__is_refused_for_another_recipient_or_tenant() -> None:
    mine, theirs = token("user-42"), token("user-7")
    forged = theirs.split(".")[0] + "." + mine.split(".")[1]  # user-7's payload under user-42's signature
    assert read_token(KEYS, forged) is None
    other_tenant = token(tenant="globex").split(".")[0] + "." + mine.split(".")[1]
    assert read_token(KEYS, other_tenant) is None


@pytest.mark.parametrize("hostile", ["", ".", "abc", "abc.def", "!!!.x", "a" * 2000 + ".x", "\udce9.\udce9",
                                     "W10." + KEYS.sign("preferences-page", "W10")])
def test_token__hostile_text_is_no_token_and_never_raises(hostile: str) -> None:
    assert read_token(KEYS, hostile) is None  # "W10" is `[]` signed: valid signature, wrong shape


async def test_page__an_expired_link_says_so_in_the_person_s_language() -> None:
    page = Page()
    answer = await page.page.get(token(expires=NOW - timedelta(seconds=1)))
    assert answer.status == 410 and "Este enlace ha caducado" in answer.html and 'lang="es"' in answer.html
    bad = await page.page.get(token()[:-2] + "xx")
    assert bad.status == 403 and "This link is not valid." in bad.html


def test_link__promotional_templates_carry_it_for_the_message_s_recipient_tenant_and_language() -> None:
    renderer = Renderer()
    link = preferences_link(KEYS, PUBLIC, timedelta(days=90), lambda: NOW)
    offer = CATALOG.types["offer.loyalty"].sample
    context = {"brand": "Shop", "document_url": None, "preferences_url": link, "tenant": "acme",
               "to": {"id": "user-42", "locale": "es-ES", "name": "Ana"}, "payload": offer, "message_id": "m",
               "event_id": "e"}
    sms = renderer.render("offer.loyalty", "sms", locale="es-ES", context=context)["text"]
    found = re.search(rf"Preferencias: {re.escape(PUBLIC)}/preferences/(\S+) o responde BAJA", sms)
    assert found, sms
    named = read_token(KEYS, found.group(1))
    assert named is not None and (named.tenant, named.recipient_id, named.locale) == ("acme", "user-42", "es")
    assert named.expires == int((NOW + timedelta(days=90)).timestamp())
    for part in ("html", "text"):
        email = renderer.render("offer.loyalty", "email", locale="de", context=context)[part]
        assert f"{PUBLIC}/preferences/" in email and "Einstellungen" in email
    # Where Herald's globals are not given (`herald templates check`), the message reads as before.
    plain = {k: v for k, v in context.items() if k != "preferences_url"}
    assert "/preferences/" not in renderer.render("offer.loyalty", "sms", locale="en", context=plain)["text"]


# --- the form --------------------------------------------------------------------------------------------------------


async def test_page__renders_in_spanish_with_required_topics_locked() -> None:
    page = Page()
    await page.ledger.update("user-42", lambda p: p.model_copy(update={"topics": {
        "promotions": TopicChoice(channels={"sms": False})}}), source="api", tenant="acme")
    status, html, nonce = await page.form(token(locale="es-MX"))
    assert status == 200 and nonce
    assert '<html lang="es">' in html and "Tus preferencias de mensajes" in html and "Guardar mis preferencias" in html
    assert "Ofertas y promociones" in html and "Estado de tus envíos" in html and "Mensaje de texto (SMS)" in html
    assert re.search(r'<fieldset disabled>\s*<legend>Cuenta y seguridad <span class="muted">\(siempre activo\)', html)
    assert 'value="promotions/sms">' in html  # off: not checked
    assert 'value="promotions/email" checked>' in html and 'value="shipping/sms" checked>' in html
    assert "webhook" not in html  # a business endpoint is no person's channel
    assert html.index("Ofertas y promociones") < html.index("Cuenta y seguridad")  # what may change comes first


async def test_page__the_person_s_locale_in_the_ledger_wins_over_the_link_s() -> None:
    page = Page()
    await page.ledger.update("user-42", lambda p: p.model_copy(update={"locale": "de-DE"}), source="cli")
    _, html, _ = await page.form(token(locale="es"))
    assert '<html lang="de">' in html and "Ihre Nachrichteneinstellungen" in html
    _, html, _ = await page.form(token(locale="fr"))
    assert '<html lang="de">' in html
    _, html, _ = await Page().form(token(locale="fr"))
    assert '<html lang="en">' in html


async def test_page__post_turns_a_topic_channel_off_and_confirms() -> None:
    page, link = Page(), token()
    status, html = await page.post(link, [v for v in EVERYTHING_ON if v != "promotions/sms"])
    assert status == 200 and "Tus preferencias se han guardado." in html
    assert page.acme() == {"promotions": TopicChoice(channels={"sms": False})}
    document = page.ledger.get("user-42", tenant="acme")
    assert document is not None and document.source == "page" and document.tenant == "acme"
    assert 'value="promotions/sms">' in html  # the page shows what is now stored
    assert page.metrics.preference_updates.labels("page")._value.get() == 1


async def test_page__every_channel_of_a_topic_unticked_turns_the_topic_off_and_ticking_one_back_turns_it_on() -> None:
    page, link = Page(), token()
    await page.post(link, [v for v in EVERYTHING_ON if not v.startswith("shipping/")])
    assert page.acme() == {"shipping": TopicChoice(enabled=False)}
    await page.post(link, [v for v in EVERYTHING_ON if v != "shipping/sms"])
    assert page.acme() == {"shipping": TopicChoice(channels={"sms": False})}


async def test_page__a_locked_topic_is_never_written_whatever_the_form_says() -> None:
    page = Page()
    await page.post(token(), [*EVERYTHING_ON, "account/made-up"])  # account's boxes absent, a bogus one present
    assert page.acme() == {}


async def test_page__a_tenant_less_link_writes_the_person_s_own_document() -> None:
    page, link = Page(), token(tenant=None)
    await page.post(link, [v for v in EVERYTHING_ON if v != "feedback/email"])
    own = page.ledger.get("user-42")
    assert own is not None and own.topics == {"feedback": TopicChoice(channels={"email": False})}
    assert list(page.store.data) == ["user-42"]


@pytest.mark.parametrize(("case", "kwargs"), [
    ("no nonce", {"nonce": ""}),
    ("forged nonce", {"nonce": f"{int(NOW.timestamp())}.abc.def"}),
    ("another link's nonce", {"nonce": "other"}),
    ("token not in the form", {"form_token": ""}),
    ("another token in the form", {"form_token": "other"}),
    ("from another site", {"headers": {"sec-fetch-site": "cross-site"}}),
    ("from another origin", {"headers": {"origin": "https://evil.example"}}),
], ids=lambda value: value if isinstance(value, str) else "")
async def test_page__a_post_without_this_page_s_own_form_is_403_and_writes_nothing(case: str,
                                                                                   kwargs: dict[str, Any]) -> None:
    page, link = Page(), token()
    if kwargs.get("nonce") == "other" or kwargs.get("form_token") == "other":
        other = token("user-7")
        kwargs = {k: (other if k == "form_token" else (await page.form(other))[2]) if v == "other" else v
                  for k, v in kwargs.items()}
    status, html = await page.post(link, [], **kwargs)
    assert status == 403 and "Este enlace no es válido." in html, case
    assert page.store.data == {}


async def test_page__a_same_site_post_is_taken_with_or_without_an_origin() -> None:
    page, link = Page(), token()
    for headers in ({"origin": "null", "sec-fetch-site": "same-origin"}, {"origin": PUBLIC}, {}):
        status, _ = await page.post(link, [], headers=headers)
        assert status == 200, headers


async def test_page__a_form_left_open_too_long_is_served_again_without_writing() -> None:
    page, link = Page(), token()
    _, _, nonce = await page.form(link)
    page.clock.advance(hours=3)
    status, html = await page.post(link, [], nonce=nonce)
    assert status == 400 and "llevaba mucho tiempo abierta" in html
    assert page.store.data == {}
    fresh = re.search(r'name="nonce" value="([^"]+)"', html)
    assert fresh and (await page.post(link, [], nonce=fresh.group(1)))[0] == 200


async def test_page__a_form_sent_twice_is_written_once() -> None:
    page, link = Page(), token()
    _, _, nonce = await page.form(link)
    assert (await page.post(link, [v for v in EVERYTHING_ON if v != "feedback/push"], nonce=nonce))[0] == 200
    status, html = await page.post(link, [], nonce=nonce)
    assert status == 409 and "ya se enviaron" in html
    assert page.acme() == {"feedback": TopicChoice(channels={"push": False})}


# --- served ----------------------------------------------------------------------------------------------------------


async def test_page__served_with_the_public_port_s_security_headers_get_then_post() -> None:
    page = Page()
    app = faust.App(f"test-page-{uuid.uuid4().hex[:8]}", broker="memory://", autodiscover=False)
    register_preference_page(app, page.page)
    harden_responses(app.web.web_app)  # type: ignore[attr-defined]
    server = TestServer(app.web.web_app, host="127.0.0.1")  # type: ignore[attr-defined]
    await server.start_server()
    link = token()
    url = str(server.make_url(f"/preferences/{link}"))
    try:
        async with httpx.AsyncClient() as client:
            got = await client.get(url)
            assert got.status_code == 200 and got.headers["Content-Type"] == "text/html; charset=utf-8"
            for name, value in {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                "frame-ancestors 'none'", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                                "Cache-Control": "no-store", "X-Robots-Tag": "noindex",
                                "X-Content-Type-Options": "nosniff"}.items():
                assert got.headers[name] == value, name
            nonce = re.search(r'name="nonce" value="([^"]+)"', got.text)
            assert nonce
            form = [("token", link), ("nonce", nonce.group(1)),
                    *(("on", v) for v in EVERYTHING_ON if v != "shipping/email")]
            posted = await client.post(url, content=urlencode(form), headers={
                "Content-Type": "application/x-www-form-urlencoded", "Origin": "null", "Sec-Fetch-Site": "same-origin"})
            assert posted.status_code == 200 and "Tus preferencias se han guardado." in posted.text
            assert (await client.post(url, content=b"x" * (17 * 1024))).status_code == 413
            assert (await client.get(str(server.make_url("/preferences/nope")))).status_code == 403
    finally:
        await server.close()
    assert page.acme() == {"shipping": TopicChoice(channels={"email": False})}
