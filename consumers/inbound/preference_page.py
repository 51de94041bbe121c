"""The hosted preference page: `GET|POST /preferences/{token}` on the public port, reached from the link every
promotional message carries (`preferences_url()` in templates).

The token is signed with the current `HERALD_SECRET` (any secret of the ring verifies, so links outlive a rotation)
and names the tenant, the recipient id, the message's language and an expiry (`HERALD_PREFERENCE_LINK_TTL` after
the send): `<base64url JSON>.<signature>`. Whoever holds the link may change that person's topic choices and
nothing else; the page shows no address nor id. GET only shows the form: a scanner following the link changes
nothing. The form carries the token and a nonce signed over the token and the time it was served; a POST is
refused unless both check out, the nonce is fresh (`FORM_TTL`) and unused on this worker, and the browser does not
say it came from another site (`Origin`, `Sec-Fetch-Site`): another site cannot make a person's browser submit it.

Choices go to the tenant's document in the ledger (consumers/state/topic_choices.py), `source` `page`. The page
speaks the person's language (their `locale` in the ledger, else the link's; English, Spanish or German) and needs
no script; its responses get the public port's security headers (consumers/inbound/web.py `harden_responses`).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import faust
import jinja2
import orjson
from faust.web import Request, Response, View
from jinja2.runtime import Context

from consumers.identity import KeyRing
from consumers.inbound.preference_strings import STRINGS, language_of
from consumers.inbound.preferences_api import register_preferences_api
from consumers.inbound.web import BodyTooLarge, read_body, text_headers
from consumers.observe.metrics import Metrics
from consumers.state.preferences import AddressConsents, PreferenceLedger
from consumers.state.stores import State
from consumers.state.topic_choices import tidy
from schemas.catalog import Catalog, Channel
from schemas.preferences import Preferences, TopicChoice
from schemas.settings import Settings
from schemas.topics import topic_channels, topic_label, topic_locked, topics

log = logging.getLogger(__name__)

PATH = "/preferences/{token}"
PURPOSE, FORM_PURPOSE = "preferences-page", "preferences-form"
MAX_TOKEN = 1024  # characters; a token names at most a 100-character tenant and a 200-character recipient id
MAX_FORM_BYTES = 16 * 1024
FORM_TTL = timedelta(hours=2)  # how long a served form may be submitted
USED_NONCES = 10_000  # nonces remembered per worker, oldest forgotten first
READY_WITHIN = 10.0
PERSON_CHANNELS = ("email", "sms", "whatsapp", "voice", "push")  # `webhook` reaches businesses, not people
ENVIRONMENT = jinja2.Environment(loader=jinja2.PackageLoader("consumers.inbound", "preference_templates"),
                                 autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                                 lstrip_blocks=True)


@dataclass(frozen=True, slots=True)
class PageToken:
    """What a preference link names."""

    tenant: str | None
    recipient_id: str
    locale: str | None
    expires: int  # Unix seconds

    def expired(self, now: datetime) -> bool:
        return self.expires < now.timestamp()


def page_token(keys: bytes | KeyRing, *, tenant: str | None, recipient_id: str, locale: str | None,
               expires: int) -> str:
    """`<payload>.<signature>`: the payload a base64url JSON array, signed as one part (no separator to shift)."""
    payload = base64.urlsafe_b64encode(orjson.dumps([tenant, recipient_id, locale, expires])).decode().rstrip("=")
    return f"{payload}.{KeyRing.of(keys).sign(PURPOSE, payload)}"


def read_token(keys: bytes | KeyRing, token: str) -> PageToken | None:
    """The token's contents when any secret of the ring signed it (expired or not: see `PageToken.expired`), else
    None. Never raises on hostile text."""
    payload, dot, signature = token.partition(".")
    if len(token) > MAX_TOKEN or not dot or not KeyRing.of(keys).verify(signature, PURPOSE, payload):
        return None
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        tenant, recipient_id, locale, expires = orjson.loads(decoded)
    except (ValueError, TypeError):
        return None
    if not (isinstance(recipient_id, str) and recipient_id and isinstance(expires, int)
            and isinstance(tenant, str | None) and isinstance(locale, str | None)):
        return None
    return PageToken(tenant, recipient_id, locale, expires)


def preferences_link(keys: bytes | KeyRing, public_url: str, ttl: timedelta,
                     clock: Callable[[], datetime]) -> Callable[..., str]:
    """The template global `preferences_url()`: the page's link for the message being rendered (its recipient,
    tenant and language), valid for `ttl`. Templates guard it with `{% if preferences_url is defined %}`, as tools
    that render without Herald's globals (`herald templates check`) do not define it."""
    ring, base = KeyRing.of(keys), public_url.rstrip("/")

    @jinja2.pass_context
    def preferences_url(ctx: Context) -> str:
        to, tenant, locale = ctx.get("to"), ctx.get("tenant"), ctx.get("locale")
        recipient_id = to.get("id") if isinstance(to, Mapping) else None
        if not isinstance(recipient_id, str) or not recipient_id:
            return base
        token = page_token(ring, tenant=tenant if isinstance(tenant, str) else None, recipient_id=recipient_id,
                           locale=locale if isinstance(locale, str) else None,
                           expires=int((clock() + ttl).timestamp()))
        return f"{base}/preferences/{token}"

    return preferences_url


def form_nonce(keys: KeyRing, token: str, now: datetime) -> str:
    issued, nonce = str(int(now.timestamp())), secrets.token_urlsafe(12)
    return f"{issued}.{nonce}.{keys.sign(FORM_PURPOSE, token, issued, nonce)}"


def check_nonce(keys: KeyRing, token: str, value: str, now: datetime) -> str:
    """`ok`, `stale` (signed, but served longer ago than `FORM_TTL`) or `invalid`."""
    issued, _, rest = value.partition(".")
    nonce, _, signature = rest.partition(".")
    if not (issued.isascii() and issued.isdigit() and len(issued) <= 12) \
            or not keys.verify(signature, FORM_PURPOSE, token, issued, nonce):
        return "invalid"
    age = now.timestamp() - int(issued)
    return "ok" if -60 <= age <= FORM_TTL.total_seconds() else "stale"


@dataclass(frozen=True, slots=True)
class PageAnswer:
    status: int
    html: str


class PreferencePage:
    """What `/preferences/{token}` answers, without the web framework."""

    def __init__(self, ledger: PreferenceLedger, catalog: Catalog, keys: bytes | KeyRing, metrics: Metrics, *,
                 brand: str, public_url: str, clock: Callable[[], datetime]) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.keys = KeyRing.of(keys)
        self.metrics = metrics
        self.brand = brand
        parts = urlsplit(public_url)
        self.origin = f"{parts.scheme}://{parts.netloc}".lower()
        self.clock = clock
        self._used: OrderedDict[str, None] = OrderedDict()

    async def get(self, token: str) -> PageAnswer:
        found = self._token(token)
        if isinstance(found, PageAnswer):
            return found
        return await self._form(token, found, status=200, notice=None)

    async def post(self, token: str, body: bytes, headers: Mapping[str, str]) -> PageAnswer:
        found = self._token(token)
        if isinstance(found, PageAnswer):
            return found
        if self._cross_site(headers):
            return self._refused("cross_site", found.locale)
        try:
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=200)
        except ValueError:
            return self._refused("malformed", found.locale)
        fields = dict(reversed(form))  # a repeated field keeps its first value
        if not hmac.compare_digest(fields.get("token", "").encode(), token.encode()):
            return self._refused("token_mismatch", found.locale)
        nonce = fields.get("nonce", "")
        state = check_nonce(self.keys, token, nonce, self.clock())
        if state == "invalid":
            return self._refused("nonce", found.locale)
        if state == "stale":
            return await self._form(token, found, status=400, notice="stale")
        if nonce in self._used:
            return await self._form(token, found, status=409, notice="used")
        self._remember(nonce)  # before the write: a double submit waits for nothing and is told so
        wanted = {value for key, value in form if key == "on"}
        rows = [row for row in self._rows(None, "en") if not row["locked"]]

        def change(p: Preferences) -> Preferences:
            chosen = dict(p.topics)
            for row in rows:
                off = [c["channel"] for c in row["channels"] if c["value"] not in wanted]
                on_some = len(off) < len(row["channels"])
                chosen[row["name"]] = TopicChoice(enabled=on_some, channels={c: False for c in off} if on_some else {})
            return p.model_copy(update={"topics": tidy(chosen)})

        try:
            await asyncio.wait_for(self.ledger.ready(), READY_WITHIN)
            await self.ledger.update(found.recipient_id, change, source="page", tenant=found.tenant, durable=True)
        except Exception:
            self._used.pop(nonce, None)  # nothing was saved: the same form may be sent again
            log.exception("preference page choices not stored", extra={"tenant": found.tenant})
            return await self._form(token, found, status=503, notice="unsaved")
        self.metrics.preference_updates.labels("page").inc()
        log.info("preferences chosen on the page", extra={"tenant": found.tenant})
        return await self._form(token, found, status=200, notice="saved")

    def _token(self, token: str) -> PageToken | PageAnswer:
        found = read_token(self.keys, token)
        if found is None:
            return self._refused("invalid", None)
        if found.expired(self.clock()):
            self.metrics.links_refused.labels("preferences", "expired").inc()
            return self._message(410, "expired", language_of(found.locale))
        return found

    def _cross_site(self, headers: Mapping[str, str]) -> bool:
        """Whether the browser says the form was sent from another site. `Origin: null` is what browsers send for a
        form on a page with `Referrer-Policy: no-referrer` (this one), so it is not refused; tools send neither."""
        site = headers.get("sec-fetch-site", "").lower()
        origin = headers.get("origin", "").lower()
        return site not in ("", "same-origin", "none") or origin not in ("", "null", self.origin)

    def _refused(self, reason: str, locale: str | None) -> PageAnswer:
        self.metrics.links_refused.labels("preferences", reason).inc()
        return self._message(403, "invalid", language_of(locale))

    def _message(self, status: int, key: str, language: str) -> PageAnswer:
        strings = STRINGS[language]
        html = ENVIRONMENT.get_template("page.html").render(
            lang=language, t=strings, message=strings[key].format(brand=self.brand), rows=None)
        return PageAnswer(status, html)

    async def _form(self, token: str, found: PageToken, *, status: int, notice: str | None) -> PageAnswer:
        try:
            await asyncio.wait_for(self.ledger.ready(), READY_WITHIN)
            own = self.ledger.get(found.recipient_id)
            chosen = self.ledger.get(found.recipient_id, tenant=found.tenant) if found.tenant else own
        except Exception:  # not read yet, or a document that does not validate: nothing to show truthfully
            log.exception("preference page could not read the ledger")
            return self._message(503, "unavailable", language_of(found.locale))
        language = language_of(own.locale if own else None, found.locale)
        strings = STRINGS[language]
        rows = self._rows(chosen, language)
        html = ENVIRONMENT.get_template("page.html").render(
            lang=language, t=strings, message=None, rows=rows, token=token,
            nonce=form_nonce(self.keys, token, self.clock()), intro=strings["intro"].format(brand=self.brand),
            notice=strings[notice] if notice else None, ok=notice == "saved",
            any_locked=any(row["locked"] for row in rows), any_open=any(not row["locked"] for row in rows))
        return PageAnswer(status, html)

    def _rows(self, chosen: Preferences | None, language: str) -> list[dict[str, Any]]:
        """Each topic a person gets messages of, with its channels on or off: the ones they may change first."""
        strings = STRINGS[language]
        rows = []
        for name, entries in topics(self.catalog).items():
            used = {c.value for c in topic_channels(self.catalog, name)}
            channels = [Channel(c) for c in PERSON_CHANNELS if c in used]  # one order on every topic
            if not entries or not channels:
                continue
            locked = topic_locked(self.catalog, name)
            choice = chosen.topics.get(name) if chosen is not None else None
            label = topic_label(self.catalog, name, language)
            rows.append({"name": name, "locked": locked,
                         "label": strings.get(name, label) if label == name else label,
                         "channels": [{"channel": c, "value": f"{name}/{c.value}", "label": strings[c.value],
                                       "on": locked or choice is None or choice.allows(c)} for c in channels]})
        return sorted(rows, key=lambda row: row["locked"])  # stable: catalog order within each group

    def _remember(self, nonce: str) -> None:
        self._used[nonce] = None
        while len(self._used) > USED_NONCES:
            self._used.popitem(last=False)


def register_preference_page(app: faust.App, page: PreferencePage) -> None:
    """`GET|POST /preferences/{token}`: any worker answers (the ledger is replicated)."""

    async def answer(view: View, token: str, run: Callable[[], Any]) -> Response:
        try:
            result: PageAnswer = await run()
        except Exception:  # checking a link changes nothing; what raises here is a bug, answered without detail
            page.metrics.links_refused.labels("preferences", "malformed").inc()
            log.exception("preference page raised")
            return view.text("Please try again later.", status=500)
        return view.bytes(result.html.encode(), status=result.status,
                          headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                                   "X-Robots-Tag": "noindex"})

    class PreferencePageView(View):
        async def get(self, request: Request, token: str) -> Response:
            return await answer(self, token, lambda: page.get(token))

        async def post(self, request: Request, token: str) -> Response:
            try:
                body = await read_body(request, MAX_FORM_BYTES)
            except BodyTooLarge:
                page.metrics.links_refused.labels("preferences", "too_large").inc()
                return self.text("too large", status=413)
            return await answer(self, token, lambda: page.post(token, body, text_headers(request.headers)))

    app.page(PATH)(PreferencePageView)


def preference_ledger(app: faust.App, settings: Settings, catalog: Catalog, state: State, keys: KeyRing,
                      metrics: Metrics, template_globals: MutableMapping[str, Any],
                      clock: Callable[[], datetime]) -> PreferenceLedger:
    """The consent and preference ledger of a worker, with its public views: the preferences API (with
    HERALD_API_KEYS) and the preference page, whose link templates get as `preferences_url()` (call before the
    delivery stage copies `template_globals`)."""
    ledger = PreferenceLedger(state.preferences, clock=clock,
                              addresses=AddressConsents(state.consent, keys, clock=clock))
    template_globals["preferences_url"] = preferences_link(keys, settings.public_url, settings.preference_link_ttl,
                                                           clock)
    register_preferences_api(app, settings, ledger=ledger, catalog=catalog, metrics=metrics)
    register_preference_page(app, PreferencePage(ledger, catalog, keys, metrics, brand=settings.brand_name,
                                                 public_url=settings.public_url, clock=clock))
    return ledger
