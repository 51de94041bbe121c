"""The HTTP trigger API (`POST /v1/events`, consumers/inbound/api.py), served in-process by the real Faust view over
a recording publisher and an in-memory answer store: accepts, refuses with reasons, de-duplicates, picks the lane."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import httpx
import orjson
import pytest
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from consumers.app import BUNDLED_CATALOG, create_app, retention_rules
from consumers.identity import message_id
from consumers.inbound.api import PATH, register_api_view
from consumers.pipeline.router import Router
from consumers.state.conversations import Conversations
from consumers.state.kvstore import MemoryStore
from consumers.state.retention import Janitor
from consumers.state.stores import State
from consumers.topics import STATE_TOPICS
from schemas.catalog import Catalog, Channel, Priority
from schemas.settings import Settings
from tests.fakes import FakeClock, RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ACME = "acme-api-key-0123456789abcdef"
GLOBEX = "globex-api-key-fedcba9876543210"
CATALOG = Catalog.load(BUNDLED_CATALOG)
CHANNELS = [c.value for c in Channel]
TO = {"id": "user-42", "email": "ana@example.com", "phone": "+34600111222", "push_token": "tok-1",
      "webhook_url": "https://hooks.acme.example/herald", "locale": "es-ES", "timezone": "Europe/Madrid"}


def event(event_type: str = "order.confirmed", *, to: Mapping[str, Any] = TO, **fields: Any) -> dict[str, Any]:
    """A valid structured CloudEvent of `event_type` with the catalog's sample payload; `fields` override."""
    entry = CATALOG.types[event_type]
    body = {"specversion": "1.0", "id": f"evt-{uuid.uuid4().hex[:8]}", "source": "shop/checkout",
            "type": event_type, "time": NOW.isoformat(), "data": {"to": dict(to), "payload": dict(entry.sample)}}
    body.update(fields)
    return body


@dataclass
class Api:
    settings: Settings
    publisher: RecordingPublisher
    answers: MemoryStore
    clock: FakeClock[datetime]
    server: TestServer

    async def post(self, body: Any, *, key: str | None = ACME, headers: Mapping[str, str | bytes] | None = None
                   ) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent: dict[str, str | bytes] = {"Content-Type": "application/json", **(headers or {})}
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        async with httpx.AsyncClient() as client:
            return await client.post(str(self.server.make_url(PATH)), content=content, headers=sent)

    def published(self) -> list[tuple[str, bytes | None, dict[str, Any]]]:
        return [(r.topic, r.key, orjson.loads(r.value)) for r in self.publisher.records]


async def serve_api(publisher: Any = None, **overrides: Any) -> Api:
    settings = Settings(**{"secret": "http-api-test-secret", "api_keys": {"acme": ACME, "globex": GLOBEX},
                           "api_max_batch": 5, "api_max_bytes": 64 * 1024, "max_event_bytes": 4096, **overrides})
    publisher = publisher or RecordingPublisher()
    answers, clock = MemoryStore(), FakeClock(NOW)
    app = faust.App(f"test-api-{uuid.uuid4().hex[:8]}", broker="memory://", autodiscover=False)
    register_api_view(app, settings, catalog=CATALOG, channels=CHANNELS, publisher=publisher, answers=answers,
                      clock=clock)
    server = TestServer(app.web.web_app, host="127.0.0.1")  # type: ignore[attr-defined]
    await server.start_server()
    return Api(settings, publisher, answers, clock, server)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    served = await serve_api()
    yield served
    await served.server.close()


# --- accepted ---------------------------------------------------------------------------------------------------

async def test_api__one_event_is_published_keyed_by_recipient_with_its_message_ids(api: Api) -> None:
    sent = event(idempotencykey="order-1001-confirmed")
    answer = await api.post(sent)
    assert answer.status_code == 202, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    ids = {c: message_id("acme", "order-1001-confirmed", c) for c in ("email", "push", "sms", "webhook")}
    assert answer.json() == {"events": [{"index": 0, "event_id": sent["id"], "message_ids": ids}]}
    # The event as sent, with the key's tenant filled in, on the normal lane, keyed by the recipient id.
    assert api.published() == [("events", b"user-42", {**sent, "tenant": "acme"})]


async def test_api__batch_is_published_in_order_each_keyed_by_its_recipient(api: Api) -> None:
    batch = [event(to={**TO, "id": f"user-{i}"}) for i in range(5)]  # api_max_batch
    answer = await api.post(batch)
    assert answer.status_code == 202, answer.text
    assert [e["event_id"] for e in answer.json()["events"]] == [e["id"] for e in batch]
    assert [e["index"] for e in answer.json()["events"]] == list(range(5))
    assert [(topic, key, value["id"]) for topic, key, value in api.published()] == [
        ("events", f"user-{i}".encode(), batch[i]["id"]) for i in range(5)]


@pytest.mark.parametrize("event_type", sorted(CATALOG.types))
async def test_api__every_type_goes_to_its_lane_critical_ones_to_the_critical_lane(api: Api, event_type: str) -> None:
    answer = await api.post(event(event_type))
    assert answer.status_code == 202, answer.text
    critical = CATALOG.types[event_type].priority is Priority.CRITICAL
    assert [topic for topic, _, _ in api.published()] == ["events.critical" if critical else "events"]


async def test_api__the_message_ids_are_the_ones_the_router_gives_its_dispatches(api: Api) -> None:
    cases = [event("order.confirmed"), event("password.reset", idempotencykey="reset-1"),
             event("otp.requested", to={"id": "u-7", "phone": "+34600111222"}, channels=["voice", "email"]),
             event("signup.welcome", tenant="acme")]
    answer = await api.post(cases)
    assert answer.status_code == 202, answer.text
    router = Router(CATALOG, CHANNELS, clock=lambda: NOW)
    for summary, record in zip(answer.json()["events"], api.publisher.records, strict=True):
        routed = router.route(record.value)
        assert routed.rejection is None and len(routed.dispatches) == 1
        dispatch = routed.dispatches[0]
        assert summary["message_ids"][dispatch.channel] == dispatch.message_id
        assert dispatch.tenant == "acme"


async def test_api__message_ids_of_a_type_with_several_reminders_are_left_to_routing(api: Api) -> None:
    assert len(CATALOG.types["appointment.reminder"].schedule) > 1
    answer = await api.post([event("appointment.reminder"), event("appointment.cancelled")])
    assert answer.status_code == 202, answer.text
    assert [e["message_ids"] for e in answer.json()["events"]] == [None, {}]  # a cancelling type sends nothing


async def test_api__the_key_decides_the_tenant(api: Api) -> None:
    assert (await api.post(event(), key=GLOBEX)).status_code == 202
    assert (await api.post(event(tenant="acme"))).status_code == 202
    assert [value["tenant"] for _, _, value in api.published()] == ["globex", "acme"]


# --- refused ----------------------------------------------------------------------------------------------------

def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    target = copy
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return copy


REFUSALS: list[tuple[str, Any, int, list[tuple[int | None, str]] | str]] = [
    # (case, body, status, [(index, error)] for 422 or the error word otherwise)
    ("not JSON", b"{not json", 400, "invalid_json"),
    ("JSON but not an event", b"42", 400, "invalid_body"),
    ("an empty batch", [], 400, "empty_batch"),
    ("too many events", [event() for _ in range(6)], 413, "too_many_events"),
    ("unknown type", event() | {"type": "pizza.delivered"}, 422, [(0, "unknown_type")]),
    ("missing required field", _without(event(), "data", "payload", "total"), 422, [(0, "missing_payload_field")]),
    ("missing envelope field", _without(event(), "source"), 422, [(0, "invalid_envelope")]),
    ("bad recipient address", event(to={**TO, "email": "not-an-address"}), 422, [(0, "invalid_recipient")]),
    ("another tenant's event", event(tenant="globex"), 422, [(0, "wrong_tenant")]),
    ("no address on the type's channels", event("password.reset", to={"id": "u-1", "push_token": "t"}), 422,
     [(0, "no_channel")]),
    ("time too far ahead", event(sendat=(NOW + timedelta(days=500)).isoformat()), 422, [(0, "invalid_time")]),
    ("event over HERALD_MAX_EVENT_BYTES", event() | {"subject": "s", "x": "y" * 5000}, 422, [(0, "event_too_large")]),
    ("an element that is no object", [event(), "hello"], 422, [(1, "invalid_envelope")]),
    ("a batch with two bad events among good ones",
     [event(), event() | {"type": "nope.nope"}, event(), _without(event(), "id")], 422,
     [(1, "unknown_type"), (3, "invalid_envelope")]),
]


@pytest.mark.parametrize(("body", "status", "expected"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
async def test_api__refuses_with_reasons_and_publishes_nothing(api: Api, body: Any, status: int,
                                                               expected: list[tuple[int | None, str]] | str) -> None:
    answer = await api.post(body)
    assert answer.status_code == status, answer.text
    if isinstance(expected, str):
        assert answer.json()["error"] == expected and answer.json()["detail"]
    else:  # every refused event, with its index and a detail; the good ones are not listed
        errors = answer.json()["errors"]
        assert [(e["index"], e["error"]) for e in errors] == expected
        assert all(e["detail"] for e in errors)
    assert api.publisher.records == []  # all or nothing


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_api__body_over_the_limit_is_413_however_it_arrives(api: Api, framing: str) -> None:
    body = json.dumps(event() | {"x": "y" * 70_000}).encode()  # one event: the size alone refuses it
    assert len(body) > api.settings.api_max_bytes
    content: Any = body
    if framing == "chunked":
        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 8 * 1024):
                yield body[start:start + 8 * 1024]
        content = pieces()
    async with httpx.AsyncClient() as client:
        answer = await client.post(str(api.server.make_url(PATH)), content=content,
                                   headers={"Authorization": f"Bearer {ACME}"})
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"
    assert api.publisher.records == []


@pytest.mark.parametrize("authorization", [None, "", "Bearer", f"Token {ACME}", f"Basic {ACME}", f"Bearer {ACME}x",
                                           f"Bearer {ACME[:-1]}", "Bearer wrong", "Bearer caf\u00e9"])
async def test_api__without_a_valid_key_is_401_and_publishes_nothing(api: Api, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization.encode()}  # bytes: é as UTF-8
    async with httpx.AsyncClient() as client:
        answer = await client.post(str(api.server.make_url(PATH)), json=event(), headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.json()["error"] == "unauthorized"
    assert api.publisher.records == []


async def test_api__bearer_scheme_is_case_insensitive(api: Api) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(str(api.server.make_url(PATH)), json=event(),
                                   headers={"Authorization": f"bearer {ACME}"})
    assert answer.status_code == 202


async def test_api__without_any_key_configured_the_api_is_off() -> None:
    off = await serve_api(api_keys={})
    try:
        answer = await off.post(event())
        assert answer.status_code == 404
        assert off.publisher.records == []
    finally:
        await off.server.close()


@pytest.mark.parametrize(("keys", "served"), [({}, False), ({"acme": ACME}, True)])
def test_api__the_worker_serves_it_on_the_public_port_only_with_keys(keys: dict[str, str], served: bool) -> None:
    app = create_app(Settings(secret="http-api-test-secret", api_keys=keys), state=State.in_memory())
    paths = {r.resource.canonical for r in app.web.web_app.router.routes() if r.resource}  # type: ignore[attr-defined]
    assert (PATH in paths) is served


async def test_api__only_post(api: Api) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.get(str(api.server.make_url(PATH)), headers={"Authorization": f"Bearer {ACME}"})
    assert answer.status_code == 405


class FailingPublisher(RecordingPublisher):
    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Mapping[str, bytes] | None = None, *, durable: bool = False) -> None:
        raise ConnectionError("broker away")


async def test_api__broker_away_is_503_and_the_answer_is_not_remembered() -> None:
    down = await serve_api(publisher=FailingPublisher())
    try:
        answer = await down.post(event(), headers={"Idempotency-Key": "k-1"})
        assert answer.status_code == 503 and answer.json()["error"] == "unavailable"
        assert down.answers.data == {}  # a retry with the same key publishes
    finally:
        await down.server.close()


# --- Idempotency-Key ----------------------------------------------------------------------------------------------

async def test_idempotency__same_key_and_body_get_the_first_answer_and_publish_nothing_again(api: Api) -> None:
    batch = [event(), event("password.reset")]
    first = await api.post(batch, headers={"Idempotency-Key": "req-1"})
    again = await api.post(batch, headers={"Idempotency-Key": "req-1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(api.publisher.records) == 2
    assert list(api.answers.data) != ["req-1"] and all("req-1" not in k for k in api.answers.data)  # hashed


async def test_idempotency__the_same_key_sent_twice_at_once_publishes_once(api: Api) -> None:
    body = [event(), event()]
    answers = await asyncio.gather(*(api.post(body, headers={"Idempotency-Key": "req-2"}) for _ in range(3)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.text for a in answers}) == 1
    assert len(api.publisher.records) == 2


async def test_idempotency__keys_are_per_tenant(api: Api) -> None:
    assert (await api.post(event(), headers={"Idempotency-Key": "req-3"})).status_code == 202
    assert (await api.post(event(), key=GLOBEX, headers={"Idempotency-Key": "req-3"})).status_code == 202
    assert len(api.publisher.records) == 2


async def test_idempotency__a_key_reused_with_another_body_is_422(api: Api) -> None:
    assert (await api.post(event(), headers={"Idempotency-Key": "req-4"})).status_code == 202
    reused = await api.post(event(), headers={"Idempotency-Key": "req-4"})
    assert reused.status_code == 422
    assert [e["error"] for e in reused.json()["errors"]] == ["idempotency_key_reused"]
    assert len(api.publisher.records) == 1


async def test_idempotency__a_refusal_is_not_remembered(api: Api) -> None:
    fixed = event()
    broken = fixed | {"type": "pizza.delivered"}
    assert (await api.post(broken, headers={"Idempotency-Key": "req-5"})).status_code == 422
    assert (await api.post(fixed, headers={"Idempotency-Key": "req-5"})).status_code == 202
    assert len(api.publisher.records) == 1


async def test_idempotency__forgotten_after_the_dedupe_window(api: Api) -> None:
    body = event()
    await api.post(body, headers={"Idempotency-Key": "req-6"})
    api.clock.advance(seconds=api.settings.dedupe_window.total_seconds() - 1)
    await api.post(body, headers={"Idempotency-Key": "req-6"})
    assert len(api.publisher.records) == 1
    api.clock.advance(seconds=1)
    assert "Idempotent-Replayed" not in (await api.post(body, headers={"Idempotency-Key": "req-6"})).headers
    assert len(api.publisher.records) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_idempotency__a_malformed_key_is_400(api: Api, key: str) -> None:
    answer = await api.post(event(), headers={"Idempotency-Key": key.encode()})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_idempotency_key"
    assert api.publisher.records == []


async def test_idempotency__answers_are_swept_by_the_janitor_after_the_window(api: Api) -> None:
    await api.post(event(), headers={"Idempotency-Key": "req-7"})
    assert len(api.answers.data) == 1
    state = State.in_memory()
    state.api_requests = api.answers
    rules = [r for r in retention_rules(state, api.settings, CATALOG, Conversations(MemoryStore(), b"s"))
             if r.name == "state.api_requests"]
    window = api.settings.dedupe_window
    for at, left in ((NOW + window - timedelta(seconds=1), 1), (NOW + window, 0)):
        await Janitor(rules, clock=lambda at=at: at, owns=lambda _k: True).sweep()
        assert len(api.answers.data) == left
    assert "state.api_requests" in STATE_TOPICS


# --- settings ---------------------------------------------------------------------------------------------------

def test_settings__api_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_API_KEYS", f" acme={ACME}==, globex={GLOBEX},acme=second-acme-key ")
    settings = Settings()
    assert {t: [k.get_secret_value() for k in ring] for t, ring in settings.api_keys.items()} == {
        "acme": [f"{ACME}==", "second-acme-key"], "globex": [GLOBEX]}
    assert Settings(**{"api_keys": settings.as_env()["HERALD_API_KEYS"]}).api_keys == settings.api_keys
    assert Settings().as_env()["HERALD_API_KEYS"] == settings.as_env()["HERALD_API_KEYS"]
    monkeypatch.delenv("HERALD_API_KEYS")
    assert Settings().api_keys == {} and Settings().as_env()["HERALD_API_KEYS"] == ""


@pytest.mark.parametrize(("value", "message"), [
    ("acme", "entry 1 is not tenant=key"),
    (f"acme={ACME},=orphan-key", "entry 2 is not tenant=key"),
    (f"acme={ACME},globex={ACME}", "one key is shared by acme, globex"),
])
def test_settings__bad_api_keys_are_refused_without_echoing_a_key(monkeypatch: pytest.MonkeyPatch, value: str,
                                                                   message: str) -> None:
    monkeypatch.setenv("HERALD_API_KEYS", value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert message in str(caught.value)
    assert ACME not in str(caught.value) and "orphan-key" not in str(caught.value)


def test_settings__production_refuses_a_weak_api_key() -> None:
    strong = "Zq3v9Xr2LwT8pN5kJ4hY7mB1cF6dS0aG"
    with pytest.raises(ValidationError) as caught:
        Settings(env="production", secret=strong + "-secret", api_keys={"acme": "letmein"})
    assert "HERALD_API_KEYS (tenant 'acme', key 1) is too weak" in str(caught.value)
    assert Settings(env="production", secret=strong + "-secret", api_keys={"acme": strong}).api_keys
