"""The preferences API on the public port, authenticated like `POST /v1/events` (HERALD_API_KEYS): the key decides
the tenant, and a recipient id in the path is that tenant's (its document is `@<tenant>/<recipient id>` in
`herald.preferences`, consumers/state/topic_choices.py), so a tenant reads and changes only its own people.

- `GET /v1/recipients/{recipient_id}/preferences`: 200 with the document (`topics` empty, `updated_at` null, when
  the person has chosen nothing);
- `PUT` the same, `{"topics": {topic: {"enabled", "channels": {channel: bool}}}}`: the tenant's whole set of
  choices for the person (a topic not named is on again); 200 with the document;
- `PATCH` the same: a JSON merge patch (RFC 7396) of `topics`: a topic given is changed (`enabled`, and each channel
  named), a topic or channel set to null is back to its default (also a topic the catalog no longer has); 200
  with the document.

A topic is one of the catalog's (`preference_topics`, or a category a type falls back to); a channel one its types
use. Refusals: 401 (no key, or an unknown one), 413 (a body over 16 KiB), 400 (not JSON, not an object), 422
`{"errors": [{field, error, detail}]}` (an unknown field, topic or channel; turning off a topic that cannot be turned
off: `required_topic`, for a topic the catalog marks `required` or whose every type is critical), 503 (the ledger
is not read yet, or the broker did not take the change: retry). A change is answered once the broker has it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from consumers.inbound.api import Answer, ApiKeys, json_object
from consumers.inbound.api import error_answer as _error
from consumers.inbound.web import BodyTooLarge, read_body, text_headers
from consumers.observe.metrics import Metrics
from consumers.state.preferences import PreferenceLedger
from consumers.state.topic_choices import tidy
from schemas.catalog import Catalog, Channel
from schemas.preferences import Preferences, TopicChoice
from schemas.settings import Settings
from schemas.topics import topic_channels, topic_locked, topics

log = logging.getLogger(__name__)

PATH = "/v1/recipients/{recipient_id}/preferences"
MAX_BODY = 16 * 1024
READY_WITHIN = 10.0  # seconds for the ledger to be read whole before an answer is 503
MAX_RECIPIENT_ID = 200  # as an event's `data.to.id`
JSON = "application/json"


class ChoiceIn(BaseModel):
    """One topic's choice in a PUT."""

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool = True
    channels: dict[Channel, StrictBool] = Field(default_factory=dict)


class ChoicePatch(BaseModel):
    """One topic's change in a PATCH: what is given changes, a channel set to null follows `enabled` again."""

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool | None = None
    channels: dict[Channel, StrictBool | None] = Field(default_factory=dict)


class PreferencesPut(BaseModel):
    """The body of a PUT: every choice the tenant keeps for the person."""

    model_config = ConfigDict(extra="forbid")

    topics: dict[str, ChoiceIn]


class PreferencesPatch(BaseModel):
    """The body of a PATCH (a merge patch of `topics`; a topic set to null is on again)."""

    model_config = ConfigDict(extra="forbid")

    topics: dict[str, ChoicePatch | None] = Field(default_factory=dict)



def _unavailable() -> Answer:
    return _error(503, "unavailable", "the preferences could not be read or stored; retry", **{"Retry-After": "1"})


def choice_problems(catalog: Catalog, changes: Mapping[str, ChoiceIn | ChoicePatch | None]) -> list[dict[str, Any]]:
    """What the catalog refuses in a request's topics: unknown topics and channels, and turning off a locked one."""
    known = topics(catalog)
    errors: list[dict[str, Any]] = []
    for name, change in changes.items():
        field = f"topics.{name}"
        if change is None:  # back to the default: always allowed, also for a topic the catalog no longer has
            continue
        if name not in known:
            errors.append({"field": field, "error": "unknown_topic", "detail": f"{name!r} is not a preference topic"})
            continue
        used = set(topic_channels(catalog, name))
        errors += [{"field": f"{field}.channels.{c.value}", "error": "unknown_channel",
                    "detail": f"no type of topic {name!r} uses {c.value}"} for c in change.channels if c not in used]
        if topic_locked(catalog, name) and (change.enabled is False or False in change.channels.values()):
            errors.append({"field": field, "error": "required_topic",
                           "detail": f"topic {name!r} cannot be turned off"})
    return errors


def patched(current: Mapping[str, TopicChoice], patch: Mapping[str, ChoicePatch | None]) -> dict[str, TopicChoice]:
    """`current` with a PATCH's topics merged in (RFC 7396), tidied."""
    merged = dict(current)
    for name, change in patch.items():
        if change is None:
            merged.pop(name, None)
            continue
        was = merged.get(name) or TopicChoice()
        channels = {**was.channels, **{c: on for c, on in change.channels.items() if on is not None}}
        for channel in [c for c, on in change.channels.items() if on is None]:
            channels.pop(channel, None)
        merged[name] = TopicChoice(enabled=was.enabled if change.enabled is None else change.enabled,
                                   channels=channels)
    return tidy(merged)


def shown(recipient_id: str, tenant: str, document: Preferences | None) -> dict[str, Any]:
    """The answer's body: the tenant's document for the person (what a tenant may see of the ledger)."""
    topics_ = {} if document is None else {k: v.model_dump(mode="json") for k, v in document.topics.items()}
    return {"recipient_id": recipient_id, "tenant": tenant, "topics": topics_,
            "updated_at": None if document is None else document.updated_at.isoformat(),
            "source": None if document is None else document.source}


class PreferencesApi:
    """The preferences API without the HTTP (see the module docstring); every method answers, none raises."""

    def __init__(self, keys: ApiKeys, ledger: PreferenceLedger, catalog: Catalog, metrics: Metrics) -> None:
        self.keys = keys
        self.ledger = ledger
        self.catalog = catalog
        self.metrics = metrics

    async def _ready(self) -> bool:
        try:
            await asyncio.wait_for(self.ledger.ready(), READY_WITHIN)
        except Exception:
            log.exception("preference ledger not read")
            return False
        return True

    async def get(self, tenant: str, recipient_id: str) -> Answer:
        if bad := _bad_recipient(recipient_id):
            return bad
        if not await self._ready():
            return _unavailable()
        try:
            document = self.ledger.get(recipient_id, tenant=tenant)
        except ValueError:  # a stored document that does not validate: consent fails closed, and so does this
            log.exception("preference document unreadable", extra={"tenant": tenant})
            return _unavailable()
        return Answer(200, shown(recipient_id, tenant, document))

    async def change(self, tenant: str, recipient_id: str, body: bytes, *, partial: bool) -> Answer:
        """PUT (`partial` false) or PATCH (`partial` true)."""
        if bad := _bad_recipient(recipient_id):
            return bad
        parsed = json_object(body)
        if isinstance(parsed, Answer):
            return parsed
        request: PreferencesPut | PreferencesPatch
        try:
            request = (PreferencesPatch if partial else PreferencesPut).model_validate(parsed)
        except ValidationError as exc:
            return Answer(422, {"errors": [{"field": ".".join(str(p) for p in e["loc"]) or None, "error": e["type"],
                                            "detail": e["msg"]} for e in exc.errors(include_input=False)]})
        if errors := choice_problems(self.catalog, request.topics):
            return Answer(422, {"errors": errors})
        if not await self._ready():
            return _unavailable()

        def change(p: Preferences) -> Preferences:
            if isinstance(request, PreferencesPatch):
                return p.model_copy(update={"topics": patched(p.topics, request.topics)})
            given = {name: TopicChoice(enabled=c.enabled, channels=dict(c.channels))
                     for name, c in request.topics.items()}
            return p.model_copy(update={"topics": tidy(given)})

        try:
            document = await self.ledger.update(recipient_id, change, source="api", tenant=tenant, durable=True)
        except Exception:
            log.exception("preferences not stored", extra={"tenant": tenant})
            return _unavailable()
        self.metrics.preference_updates.labels("api").inc()
        return Answer(200, shown(recipient_id, tenant, document))


def _bad_recipient(recipient_id: str) -> Answer | None:
    if 0 < len(recipient_id) <= MAX_RECIPIENT_ID:
        return None
    return Answer(422, {"errors": [{"field": "recipient_id", "error": "invalid_recipient",
                                    "detail": f"a recipient id is 1 to {MAX_RECIPIENT_ID} characters"}]})


def register_preferences_api(app: faust.App, settings: Settings, *, ledger: PreferenceLedger, catalog: Catalog,
                             metrics: Metrics) -> PreferencesApi | None:
    """The views when `HERALD_API_KEYS` names any key; else nothing (the path answers 404)."""
    keys = ApiKeys.from_settings(settings)
    if not keys:
        return None
    api = PreferencesApi(keys, ledger, catalog, metrics)

    async def authorised(view: View, request: Request,
                         then: Callable[[str], Any]) -> Response:
        tenant = api.keys.tenant(text_headers(request.headers).get("authorization"))
        if tenant is None:
            return _respond(view, _error(401, "unauthorized", "send Authorization: Bearer <your API key>",
                                         **{"WWW-Authenticate": 'Bearer realm="herald"'}))
        return _respond(view, await then(tenant))

    async def changed(view: View, request: Request, recipient_id: str, partial: bool) -> Response:
        async def then(tenant: str) -> Answer:
            try:
                body = await read_body(request, MAX_BODY)
            except BodyTooLarge:
                return _error(413, "too_large", f"the body is over {MAX_BODY} bytes")
            return await api.change(tenant, recipient_id, body, partial=partial)
        return await authorised(view, request, then)

    class PreferencesView(View):
        async def get(self, request: Request, recipient_id: str) -> Response:
            return await authorised(self, request, lambda tenant: api.get(tenant, recipient_id))

        async def put(self, request: Request, recipient_id: str) -> Response:
            return await changed(self, request, recipient_id, partial=False)

        async def patch(self, request: Request, recipient_id: str) -> Response:
            return await changed(self, request, recipient_id, partial=True)

    app.page(PATH)(PreferencesView)
    return api


def _respond(view: View, answer: Answer) -> Response:
    return view.bytes(orjson.dumps(answer.body), status=answer.status,
                      headers={"Content-Type": JSON, "Cache-Control": "no-store", **answer.headers})
