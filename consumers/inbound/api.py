"""The HTTP trigger API: `POST /v1/events` on the public port, for services without a Kafka producer.

It takes the structured-mode CloudEvent Herald reads from `herald.events` (one JSON object, or a JSON array of them),
refuses at the door what the router would refuse without state (its own `parse_event`, `check_event` and
`candidates`: envelope, recipient, catalog type, required payload fields, times, a channel to send on), and publishes
each event to its lane (`event_lane`), keyed by recipient id, as a producer would. Answers, in order:

- 404: no `HERALD_API_KEYS`, the API is off (the view is not registered at all);
- 401: no `Authorization: Bearer <key>`, or a key that is none of them (the body is not read);
- 413: a body over `HERALD_API_MAX_BYTES`, or a batch of more than `HERALD_API_MAX_BATCH` events;
- 400: a body that is not JSON, not an object or an array of them, an empty array, or a malformed Idempotency-Key;
- 422: `{"errors": [{index, error, detail}]}`, one per refused event; an event naming another tenant than its key's
  is one of them (`wrong_tenant`), so a batch's answer lists every reason at once. A batch is all or nothing: when
  any event is refused, none is published. Also `idempotency_key_reused` (the key came with another body);
- 503: the broker did not acknowledge every event in time: some may be published; a retry is safe (below);
- 202: `{"events": [{index, event_id, message_ids}]}`, once the broker has every event.

The key decides the tenant: an event without `tenant` gets the key's. `message_ids` is, per channel the router may
choose first for the event (the catalog's, narrowed by the event's `channels`, with a sender and an address), the id
the message gets if it goes there; the router picks one at routing time from consent and the person's preferred
channel, so which one is only known then (on `herald.status`, by `event_id`). A later fallback to another channel
is a message of its own (its id derived from the first's). For a type with several reminders (`schedule`) it is
null: how many are still ahead, and so their ids, is decided when the event is routed.

`Idempotency-Key` (per tenant): the first 202 is remembered in `herald.state.api_requests` (replicated: a retry may
reach any worker) for `HERALD_DEDUPE_WINDOW`, and a request with the same key and body gets it again, with
`Idempotent-Replayed: true`, publishing nothing. Refusals are not remembered (a corrected request may reuse the
key). Beneath it, republishing is harmless anyway: the router drops an event whose `idempotencykey` (else
`source`+`id`) it has seen within the window, and message ids derive from it, so a retry after a 503, or the same
key reaching two workers at once, still sends each message once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from consumers.identity import message_id
from consumers.inbound.web import BodyTooLarge, read_body, text_headers
from consumers.pipeline.records import PENDING_ACKS, Publisher
from consumers.pipeline.router import Rejection, candidates, check_event, parse_event
from consumers.state.keyvalue import KeyValueStore
from consumers.topics import event_lane
from schemas.catalog import Catalog
from schemas.settings import Settings

log = logging.getLogger(__name__)

PATH = "/v1/events"
MAX_IDEMPOTENCY_KEY = 255  # characters, printable ASCII (a UUID is 36)
PUBLISH_TIMEOUT = 10.0  # seconds for the broker to acknowledge a request's events before the answer is 503
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer of the API: a status and a JSON body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, error: str, detail: str, **headers: str) -> Answer:
    return Answer(status, {"error": error, "detail": detail}, headers)


error_answer = _error  # the HTTP API's error shape, for its other views (preferences, status webhooks)


def json_object(body: bytes) -> dict[str, Any] | Answer:
    """A request body that must be one JSON object: the object, or the 400 that says what it is instead."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _error(400, "invalid_json", "the body is not JSON")
    if not isinstance(parsed, dict):
        return _error(400, "invalid_body", "the body must be a JSON object")
    return parsed


@dataclass(frozen=True, slots=True)
class _Ready:
    """An event that passed every check, as it will be published."""

    topic: str
    key: bytes
    value: bytes
    summary: dict[str, Any]


class ApiKeys:
    """Which tenant a bearer key belongs to. Keys are kept as SHA-256 digests and every one is compared, in
    constant time, whatever matched: the time taken says nothing about any key."""

    def __init__(self, keys: Mapping[str, Iterable[str]]) -> None:
        self._digests = [(tenant, _digest(key)) for tenant, ring in keys.items() for key in ring]

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        return cls({tenant: [k.get_secret_value() for k in ring] for tenant, ring in settings.api_keys.items()})

    def __bool__(self) -> bool:
        return bool(self._digests)

    def tenant(self, authorization: str | None) -> str | None:
        """The tenant of an `Authorization: Bearer <key>` header value, or None."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        given = _digest(credentials.strip())
        found = None
        for tenant, digest in self._digests:
            if hmac.compare_digest(given, digest) and found is None:
                found = tenant
        return found


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def request_key(tenant: str, idempotency_key: str) -> str:
    """The store key of a tenant's Idempotency-Key: a hash, short and saying nothing of either."""
    return hashlib.sha256(f"{tenant}|{idempotency_key}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def answers_expiry(window: timedelta) -> Callable[[str, bytes], datetime | None]:
    """Retention of `state.api_requests` (consumers/state/retention.py): `window` after the first answer."""
    def expiry(_key: str, value: bytes) -> datetime | None:
        return _aware(datetime.fromisoformat(orjson.loads(value)["at"])) + window
    return expiry


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class TriggerApi:
    """`POST /v1/events` without the HTTP: authenticate, then `submit` a body (see the module docstring)."""

    def __init__(self, settings: Settings, catalog: Catalog, channels: Collection[str], publisher: Publisher,
                 answers: KeyValueStore, clock: Callable[[], datetime]) -> None:
        self.keys = ApiKeys.from_settings(settings)
        self.catalog = catalog
        self.channels = set(channels)
        self.publisher = publisher
        self.answers = answers
        self.clock = clock
        self.max_batch = settings.api_max_batch
        self.max_bytes = settings.api_max_bytes
        self.max_event_bytes = settings.max_event_bytes
        self.max_ahead = settings.max_schedule_ahead
        self.window = settings.dedupe_window
        self.publish_timeout = PUBLISH_TIMEOUT
        self._inflight: dict[str, asyncio.Future[None]] = {}

    async def submit(self, tenant: str, body: bytes, idempotency_key: str | None = None) -> Answer:
        """Validate and publish `body` for `tenant` (already authenticated); never raises."""
        if idempotency_key is None:
            return await self._accept(tenant, body)
        if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY or not all(" " <= c <= "~" for c in idempotency_key):
            return _error(400, "invalid_idempotency_key",
                          f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")
        key = request_key(tenant, idempotency_key)
        fingerprint = hashlib.sha256(body).hexdigest()
        async with self._claim(key):  # the same key twice at once: the second waits, then finds the first's answer
            first = self._remembered(key)
            if first is not None:
                if first.get("request") != fingerprint:
                    return Answer(422, {"errors": [{"index": None, "error": "idempotency_key_reused",
                                                    "detail": "this Idempotency-Key came with another body"}]})
                return Answer(202, first["answer"], {"Idempotent-Replayed": "true"})
            answer = await self._accept(tenant, body)
            if answer.status == 202:
                record = {"at": self.clock().isoformat(), "request": fingerprint, "answer": answer.body}
                try:
                    await self.answers.put(key, orjson.dumps(record), durable=True)
                except Exception:  # published already: a retry publishes again, and the router drops the copies
                    log.exception("idempotency answer not stored", extra={"tenant": tenant})
            return answer

    def _remembered(self, key: str) -> dict[str, Any] | None:
        raw = self.answers.get(key)
        if raw is None:
            return None
        try:
            record = orjson.loads(raw)
            fresh = self.clock() - _aware(datetime.fromisoformat(record["at"])) < self.window
            answer = record["answer"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable idempotency answer ignored")
            return None
        return record if fresh and isinstance(answer, dict) else None  # older: the janitor has not swept it yet

    @contextlib.asynccontextmanager
    async def _claim(self, key: str) -> AsyncIterator[None]:
        while (busy := self._inflight.get(key)) is not None:
            await asyncio.wait([busy])
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        try:
            yield
        finally:
            del self._inflight[key]
            done.set_result(None)

    async def _accept(self, tenant: str, body: bytes) -> Answer:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "invalid_json", "the body is not JSON")
        if isinstance(parsed, dict):
            items: list[Any] = [parsed]
        elif isinstance(parsed, list):
            items = parsed
        else:
            return _error(400, "invalid_body", "the body must be a CloudEvent (a JSON object) or an array of them")
        if not items:
            return _error(400, "empty_batch", "the array holds no event")
        if len(items) > self.max_batch:
            return _error(413, "too_many_events", f"a batch holds at most {self.max_batch} events")
        now = self.clock()
        checked = [self._check(index, item, tenant, now) for index, item in enumerate(items)]
        if errors := [c for c in checked if isinstance(c, dict)]:
            return Answer(422, {"errors": errors})  # all or nothing: nothing is published
        ready = [c for c in checked if isinstance(c, _Ready)]
        try:
            await asyncio.wait_for(self._publish(ready), self.publish_timeout)
        except Exception:
            log.exception("api events not acknowledged", extra={"tenant": tenant, "events": len(ready)})
            return _error(503, "unavailable", "the events could not be published; retry (a retry is deduplicated)",
                          **{"Retry-After": "1"})
        return Answer(202, {"events": [r.summary for r in ready]})

    def _check(self, index: int, item: Any, tenant: str, now: datetime) -> _Ready | dict[str, Any]:
        def refused(error: str, detail: str) -> dict[str, Any]:
            return {"index": index, "error": error, "detail": detail}

        if not isinstance(item, dict):
            return refused("invalid_envelope", "an event is a JSON object")
        if item.get("tenant") is None:
            item = {**item, "tenant": tenant}
        value = orjson.dumps(item)
        if len(value) > self.max_event_bytes:
            return refused("event_too_large", f"the event is over {self.max_event_bytes} bytes")
        event = parse_event(value, {})
        if isinstance(event, Rejection):
            return refused(event.reason, event.detail)
        if event.tenant != tenant:
            return refused("wrong_tenant", f"the key is tenant {tenant}'s; the event names another tenant")
        entry = check_event(event, self.catalog, now=now, max_ahead=self.max_ahead)
        if isinstance(entry, Rejection):
            return refused(entry.reason, entry.detail)
        choices = [channel for channel, _ in candidates(event, entry, self.channels)]
        if entry.channels and not choices:  # as the router would refuse it, at the door
            return refused("no_channel", "recipient has no address on any channel this type uses")
        ids = None if len(entry.schedule) > 1 else {c: message_id(event.tenant, event.dedupe_key, c) for c in choices}
        return _Ready(event_lane(self.catalog, event.type), event.data.to.id.encode(), value,
                      {"index": index, "event_id": event.id, "message_ids": ids})

    async def _publish(self, ready: list[_Ready]) -> None:
        """Every event handed to the producer in order, then every acknowledgement awaited at once."""
        acks: list[Awaitable[object]] = []
        token = PENDING_ACKS.set(acks)
        try:
            for item in ready:
                await self.publisher.send(item.topic, item.key, item.value, durable=True)
        finally:
            PENDING_ACKS.reset(token)
        await asyncio.gather(*acks)


def register_api_view(app: faust.App, settings: Settings, *, catalog: Catalog, channels: Collection[str],
                      publisher: Publisher, answers: KeyValueStore,
                      clock: Callable[[], datetime]) -> TriggerApi | None:
    """`POST /v1/events` when `HERALD_API_KEYS` names any key; else nothing (the path answers 404)."""
    if not settings.api_keys:
        return None
    api = TriggerApi(settings, catalog, channels, publisher, answers, clock)

    class EventsView(View):
        async def post(self, request: Request) -> Response:
            headers = text_headers(request.headers)
            tenant = api.keys.tenant(headers.get("authorization"))
            if tenant is None:
                return _respond(self, _error(401, "unauthorized", "send Authorization: Bearer <your API key>",
                                             **{"WWW-Authenticate": 'Bearer realm="herald"'}))
            try:
                body = await read_body(request, api.max_bytes)
            except BodyTooLarge:
                return _respond(self, _error(413, "too_large", f"the body is over {api.max_bytes} bytes"))
            try:
                answer = await api.submit(tenant, body, headers.get("idempotency-key"))
            except Exception:  # `submit` answers every failure itself; what escapes it is a bug, before any publish
                log.exception("api request raised; answered 400", extra={"tenant": tenant})
                answer = _error(400, "unreadable", "the request could not be read")
            return _respond(self, answer)

    app.page(PATH)(EventsView)
    return api


def _respond(view: View, answer: Answer) -> Response:
    return view.bytes(orjson.dumps(answer.body), status=answer.status,
                      headers={"Content-Type": JSON, **answer.headers})
