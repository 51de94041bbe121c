"""The status webhook registration API (consumers/inbound/webhooks_api.py), served in-process by the real Faust views
over an in-memory store: each tenant's key reaches only its own registration, the secret is shown once and kept
sealed, rotation signs with both secrets for a day."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import httpx
import orjson
import pytest
from aiohttp.test_utils import TestServer

import consumers.inbound.webhooks_api as webhooks_api
from channels.providers.webhook import WebhookSettings
from channels.signatures import standard_webhook_signature
from consumers.app import BUNDLED_CATALOG, create_app
from consumers.identity import KeyRing
from consumers.inbound.webhooks_api import PATH, ROTATE_PATH, register_status_webhook_views
from consumers.state.keyvalue import MemoryStore
from consumers.state.status_webhooks import Registrations, SecretBox, SecretUnreadable
from consumers.state.stores import State
from schemas.catalog import Catalog
from schemas.settings import Settings
from schemas.subscriptions import StatusWebhookRequest
from tests.fakes import FakeClock
from tests.unit.test_status_webhooks import reference_verify

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ACME, GLOBEX = "acme-api-key-0123456789abcdef", "globex-api-key-fedcba9876543210"
URL = "https://hooks.acme.example/herald/status"


@dataclass
class Api:
    store: MemoryStore
    registrations: Registrations
    clock: FakeClock[datetime]
    server: TestServer

    async def call(self, method: str, body: Any = None, *, key: str | None = ACME, path: str = PATH,
                   raw: bytes | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        content = raw if raw is not None else (None if body is None else orjson.dumps(body))
        async with httpx.AsyncClient() as client:
            return await client.request(method, str(self.server.make_url(path)), content=content, headers=headers)


async def serve(*, allow_private: bool = False, store: MemoryStore | None = None) -> Api:
    settings = Settings(secret="status-webhook-api-secret", api_keys={"acme": ACME, "globex": GLOBEX})
    store, clock = store or MemoryStore(), FakeClock(NOW)
    registrations = Registrations(store, KeyRing.from_settings(settings), clock)
    app = faust.App(f"test-hooks-{uuid.uuid4().hex[:8]}", broker="memory://", autodiscover=False)
    register_status_webhook_views(app, settings, registrations, catalog=Catalog.load(BUNDLED_CATALOG), clock=clock,
                                  config=WebhookSettings(allow_private=allow_private))
    server = TestServer(app.web.web_app, host="127.0.0.1")  # type: ignore[attr-defined]
    await server.start_server()
    return Api(store, registrations, clock, server)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    served = await serve()
    yield served
    await served.server.close()


async def test_status_webhooks_api__secret_is_generated_and_shown_once(api: Api) -> None:
    created = await api.call("PUT", {"url": URL, "statuses": ["sent", "failed"], "description": "analytics"})
    assert created.status_code == 201, created.text
    assert created.headers["Cache-Control"] == "no-store"
    body = created.json()
    secret = body.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert body == {"url": URL, "statuses": ["sent", "failed"], "event_types": [], "description": "analytics",
                    "created_at": "2026-11-24T10:00:00Z", "updated_at": "2026-11-24T10:00:00Z",
                    "secret_created_at": "2026-11-24T10:00:00Z", "previous_secret_expires_at": None}
    shown = await api.call("GET")
    assert shown.status_code == 200 and shown.json() == body
    api.clock.advance(60)
    changed = await api.call("PUT", {"url": URL + "/v2"})
    assert changed.status_code == 200 and "secret" not in changed.json()
    assert changed.json()["url"] == URL + "/v2" and changed.json()["statuses"] == []
    assert changed.json()["updated_at"] == "2026-11-24T10:01:00Z"
    for answer in (shown, changed, await api.call("GET")):
        assert secret not in answer.text and "whsec_" not in answer.text
    registration = api.registrations.get("acme")
    assert registration is not None and api.registrations.signing_secrets(registration) == [secret]  # kept


async def test_status_webhooks_api__a_tenant_sees_and_changes_only_its_own(api: Api) -> None:
    assert (await api.call("PUT", {"url": URL})).status_code == 201
    assert (await api.call("GET", key=GLOBEX)).status_code == 404
    assert (await api.call("DELETE", key=GLOBEX)).status_code == 404
    assert (await api.call("POST", key=GLOBEX, path=ROTATE_PATH)).status_code == 404
    theirs = await api.call("PUT", {"url": "https://globex.example/hook"}, key=GLOBEX)
    assert theirs.status_code == 201  # its own, new, with its own secret
    assert (await api.call("GET")).json()["url"] == URL
    assert (await api.call("DELETE", key=GLOBEX)).status_code == 204
    assert (await api.call("GET")).json()["url"] == URL
    assert (await api.call("GET", key=GLOBEX)).status_code == 404


@pytest.mark.parametrize("key", [None, "not-a-key", ACME + "x"])
@pytest.mark.parametrize(("method", "path"), [("GET", PATH), ("PUT", PATH), ("DELETE", PATH),
                                              ("POST", ROTATE_PATH)])
async def test_status_webhooks_api__without_a_valid_key_nothing_is_read_or_changed(
        api: Api, key: str | None, method: str, path: str) -> None:
    await api.registrations.put("acme", StatusWebhookRequest(url=URL))
    before = dict(api.store.data)
    answer = await api.call(method, {"url": "https://evil.example/"} if method == "PUT" else None, key=key, path=path)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == 'Bearer realm="herald"'
    assert "url" not in answer.json()
    assert api.store.data == before


async def test_status_webhooks_api__delete_then_it_is_gone(api: Api) -> None:
    await api.call("PUT", {"url": URL})
    deleted = await api.call("DELETE")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await api.call("GET")).status_code == 404
    assert (await api.call("DELETE")).status_code == 404
    assert api.store.data == {}


@pytest.mark.parametrize(("body", "field", "error"), [
    ({"url": "http://hooks.acme.example/x"}, "url", "invalid_url"),
    ({"url": "https://hooks.acme.example:8080/x"}, "url", "invalid_url"),
    ({"url": "https://user:pw@hooks.acme.example/x"}, "url", "invalid_url"),
    ({"url": "https://10.1.2.3/x"}, "url", "invalid_url"),
    ({"url": "https://[::1]/x"}, "url", "invalid_url"),
    ({"url": "https://localhost/x"}, "url", "invalid_url"),
    ({"url": "not a url"}, "url", "invalid_url"),
    ({"url": URL, "statuses": ["sent", "teleported"]}, "statuses.1", "enum"),
    ({"url": URL, "event_types": ["order.confirmed", "no.such.type"]}, "event_types", "unknown_type"),
    ({"url": URL, "tenant": "globex"}, "tenant", "extra_forbidden"),
    ({}, "url", "missing"),
])
async def test_status_webhooks_api__invalid_registration_is_refused_with_reasons(
        api: Api, body: dict[str, Any], field: str, error: str) -> None:
    answer = await api.call("PUT", body)
    assert answer.status_code == 422, answer.text
    assert [(e["field"], e["error"]) for e in answer.json()["errors"]] == [(field, error)]
    assert api.store.data == {}


@pytest.mark.parametrize(("raw", "status"), [(b"{not json", 400), (b"[]", 400), (b"x" * (17 * 1024), 413)])
async def test_status_webhooks_api__unreadable_body_is_refused(api: Api, raw: bytes, status: int) -> None:
    assert (await api.call("PUT", raw=raw)).status_code == status


async def test_status_webhooks_api__plain_http_and_loopback_are_allowed_in_private_mode() -> None:
    served = await serve(allow_private=True)
    try:
        answer = await served.call("PUT", {"url": "http://127.0.0.1:8123/hook"})
        assert answer.status_code == 201, answer.text
    finally:
        await served.server.close()


async def test_status_webhooks_api__rotation_signs_with_both_secrets_for_a_day(api: Api) -> None:
    old = (await api.call("PUT", {"url": URL})).json()["secret"]
    api.clock.advance(3600)
    rotated = await api.call("POST", path=ROTATE_PATH)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and new.startswith("whsec_")
    expires = NOW + timedelta(hours=25)
    assert rotated.json()["previous_secret_expires_at"] == expires.isoformat().replace("+00:00", "Z")
    assert "whsec_" not in (await api.call("GET")).text
    registration = api.registrations.get("acme")
    assert registration is not None
    assert api.registrations.signing_secrets(registration) == [new, old]
    # A delivery's webhook-signature holds one signature per secret: either verifies on its own.
    body, ts = b'{"status":"sent"}', int(NOW.timestamp())
    headers = httpx.Headers({"webhook-id": "hst_1", "webhook-timestamp": str(ts), "webhook-signature": " ".join(
        standard_webhook_signature(s, "hst_1", ts, body) for s in api.registrations.signing_secrets(registration))})
    assert reference_verify(new, headers, body) and reference_verify(old, headers, body)
    api.clock.advance(hours=24, seconds=1)
    assert api.registrations.signing_secrets(registration) == [new]
    assert (await api.call("GET")).json()["previous_secret_expires_at"] is None


async def test_status_webhooks_api__secret_is_sealed_at_rest_and_opened_by_the_secret_ring(api: Api) -> None:
    secret = (await api.call("PUT", {"url": URL})).json()["secret"]
    stored = api.store.data["acme"]
    assert secret.encode() not in stored and secret.removeprefix("whsec_").encode() not in stored
    sealed = orjson.loads(stored)["secrets"][0]["sealed"]
    with pytest.raises(SecretUnreadable):
        SecretBox(KeyRing(b"another-herald-secret")).open("acme", sealed)
    with pytest.raises(SecretUnreadable):  # bound to its tenant: copied to another one, it opens nowhere
        SecretBox(KeyRing(b"status-webhook-api-secret")).open("globex", sealed)
    rotated = KeyRing(b"the-new-herald-secret", (b"status-webhook-api-secret",))
    assert SecretBox(rotated).open("acme", sealed) == secret


class UnreadStore(MemoryStore):
    """A replicated store still reading its topic (a worker just started)."""

    async def ready(self, partition: int | None = None) -> None:
        await asyncio.Event().wait()


async def test_status_webhooks_api__store_not_read_yet_answers_503_and_replaces_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks_api, "READY_WITHIN", 0.05)
    store = UnreadStore()
    served = await serve(store=store)
    try:
        await served.registrations.put("acme", StatusWebhookRequest(url=URL))
        before = dict(store.data)
        for method, path in (("PUT", PATH), ("GET", PATH), ("DELETE", PATH), ("POST", ROTATE_PATH)):
            answer = await served.call(method, {"url": URL + "/new"} if method == "PUT" else None, path=path)
            assert (answer.status_code, answer.headers["Retry-After"]) == (503, "1"), method
            assert "whsec_" not in answer.text
        assert store.data == before
    finally:
        await served.server.close()


async def test_status_webhooks_api__paths_answer_404_without_api_keys() -> None:
    app = create_app(Settings(secret="status-webhook-api-secret"), state=State.in_memory())
    server = TestServer(app.web.web_app, host="127.0.0.1")  # type: ignore[attr-defined]
    await server.start_server()
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(str(server.make_url(PATH)), headers={"Authorization": f"Bearer {ACME}"})
        assert answer.status_code == 404
    finally:
        await server.close()

