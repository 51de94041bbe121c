"""The preferences API (consumers/inbound/preferences_api.py), served in-process by the real Faust views over an
in-memory ledger: a tenant's key reads and writes only that tenant's document of a person; writes are validated
against the catalog (422 with the field), and what cannot be turned off is refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import httpx
import orjson
import pytest
from aiohttp.test_utils import TestServer

from consumers.app import BUNDLED_CATALOG
from consumers.inbound.preferences_api import PATH, register_preferences_api
from consumers.observe.metrics import Metrics
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import PreferenceLedger
from schemas.catalog import Catalog
from schemas.preferences import TopicChoice
from schemas.settings import Settings
from tests.fakes import FakeClock

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ACME, GLOBEX = "acme-api-key-0123456789abcdef", "globex-api-key-fedcba9876543210"
CATALOG = Catalog.load(BUNDLED_CATALOG)


@dataclass
class Api:
    store: MemoryStore
    ledger: PreferenceLedger
    metrics: Metrics
    server: TestServer

    async def call(self, method: str, body: Any = None, *, key: str | None = ACME, recipient: str = "user-42",
                   raw: bytes | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        content = raw if raw is not None else (None if body is None else orjson.dumps(body))
        url = str(self.server.make_url(PATH.format(recipient_id=recipient)))
        async with httpx.AsyncClient() as client:
            return await client.request(method, url, content=content, headers=headers)


async def serve(api_keys: dict[str, str] | None = None) -> Api:
    settings = Settings(secret="preferences-api-secret", api_keys={"acme": ACME, "globex": GLOBEX}
                        if api_keys is None else api_keys)
    store, metrics = MemoryStore(), Metrics()
    ledger = PreferenceLedger(store, clock=FakeClock(NOW))
    app = faust.App(f"test-prefs-{uuid.uuid4().hex[:8]}", broker="memory://", autodiscover=False)
    register_preferences_api(app, settings, ledger=ledger, catalog=CATALOG, metrics=metrics)
    server = TestServer(app.web.web_app, host="127.0.0.1")  # type: ignore[attr-defined]
    await server.start_server()
    return Api(store, ledger, metrics, server)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    served = await serve()
    yield served
    await served.server.close()


async def test_preferences_api__put_then_get_returns_the_tenant_s_document(api: Api) -> None:
    put = await api.call("PUT", {"topics": {"promotions": {"channels": {"sms": False}},
                                            "feedback": {"enabled": False}, "shipping": {"enabled": True}}})
    assert put.status_code == 200, put.text
    assert put.headers["Cache-Control"] == "no-store"
    expected = {"recipient_id": "user-42", "tenant": "acme", "source": "api", "updated_at": NOW.isoformat(),
                "topics": {"feedback": {"enabled": False, "channels": {}},
                           "promotions": {"enabled": True, "channels": {"sms": False}}}}
    assert put.json() == expected  # `shipping` all on is the default: not stored
    got = await api.call("GET")
    assert got.status_code == 200 and got.json() == expected
    assert list(api.store.data) == ["@acme/user-42"]
    assert api.metrics.preference_updates.labels("api")._value.get() == 1


async def test_preferences_api__a_tenant_never_sees_or_changes_another_tenant_s_person(api: Api) -> None:
    await api.call("PUT", {"topics": {"feedback": {"enabled": False}}})
    theirs = await api.call("GET", key=GLOBEX)
    assert theirs.status_code == 200
    assert theirs.json() == {"recipient_id": "user-42", "tenant": "globex", "topics": {}, "updated_at": None,
                             "source": None}
    await api.call("PUT", {"topics": {"shipping": {"enabled": False}}}, key=GLOBEX)
    mine = (await api.call("GET")).json()
    assert mine["topics"] == {"feedback": {"enabled": False, "channels": {}}}
    assert sorted(api.store.data) == ["@acme/user-42", "@globex/user-42"]


async def test_preferences_api__patch_merges_and_null_puts_back_the_default(api: Api) -> None:
    await api.call("PUT", {"topics": {"promotions": {"channels": {"sms": False}}, "feedback": {"enabled": False}}})
    patched = await api.call("PATCH", {"topics": {"promotions": {"channels": {"email": False, "sms": None}},
                                                  "feedback": None, "alerts": {"enabled": False}}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["topics"] == {"alerts": {"enabled": False, "channels": {}},
                                        "promotions": {"enabled": True, "channels": {"email": False}}}
    again = await api.call("PATCH", {"topics": {"alerts": {"channels": {"push": True}}}})
    assert again.json()["topics"]["alerts"] == {"enabled": False, "channels": {"push": True}}


@pytest.mark.parametrize(("method", "body", "field", "error"), [
    ("PUT", {"topics": {"gossip": {"enabled": False}}}, "topics.gossip", "unknown_topic"),
    ("PATCH", {"topics": {"gossip": {"enabled": True}}}, "topics.gossip", "unknown_topic"),
    ("PUT", {"topics": {"account": {"enabled": False}}}, "topics.account", "required_topic"),
    ("PATCH", {"topics": {"orders": {"channels": {"sms": False}}}}, "topics.orders", "required_topic"),
    ("PUT", {"topics": {"shipping": {"channels": {"voice": False}}}}, "topics.shipping.channels.voice",
     "unknown_channel"),
    ("PUT", {"topics": {"shipping": {"channels": {"fax": False}}}}, "topics.shipping.channels.fax.[key]", "enum"),
    ("PUT", {"topics": {"shipping": {"enabled": "false"}}}, "topics.shipping.enabled", "bool_type"),
    ("PUT", {"topics": {}, "locale": "es"}, "locale", "extra_forbidden"),
    ("PUT", {}, "topics", "missing"),
], ids=["unknown-topic", "unknown-topic-patch", "required-off", "required-channel-off", "channel-not-in-topic",
        "not-a-channel", "string-bool", "unknown-field", "no-topics"])
async def test_preferences_api__a_write_the_catalog_refuses_is_422_with_the_field_and_changes_nothing(
        api: Api, method: str, body: dict[str, Any], field: str, error: str) -> None:
    answer = await api.call(method, body)
    assert answer.status_code == 422, answer.text
    assert {"field": field, "error": error} in [{k: e[k] for k in ("field", "error")}
                                                for e in answer.json()["errors"]]
    assert api.store.data == {}


async def test_preferences_api__patch_null_clears_a_topic_the_catalog_no_longer_has(api: Api) -> None:
    await api.ledger.update("user-42", lambda p: p.model_copy(update={"topics": {
        "gossip": TopicChoice(enabled=False), "feedback": TopicChoice(enabled=False)}}), source="api", tenant="acme")
    answer = await api.call("PATCH", {"topics": {"gossip": None}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["topics"] == {"feedback": {"enabled": False, "channels": {}}}


async def test_preferences_api__required_topic_may_be_said_on(api: Api) -> None:
    answer = await api.call("PUT", {"topics": {"account": {"enabled": True, "channels": {"sms": True}}}})
    assert answer.status_code == 200 and answer.json()["topics"] == {}


@pytest.mark.parametrize(("key", "raw", "status", "error"), [
    (None, b"{}", 401, "unauthorized"),
    ("not-a-key", b"{}", 401, "unauthorized"),
    (ACME, b"{", 400, "invalid_json"),
    (ACME, b"[]", 400, "invalid_body"),
    (ACME, b"{" + b" " * (17 * 1024) + b"}", 413, "too_large"),
])
async def test_preferences_api__refusals_before_any_change(api: Api, key: str | None, raw: bytes, status: int,
                                                           error: str) -> None:
    answer = await api.call("PUT", key=key, raw=raw)
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.store.data == {}


async def test_preferences_api__a_recipient_id_longer_than_an_event_s_is_422(api: Api) -> None:
    answer = await api.call("GET", recipient="u" * 201)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "recipient_id"


async def test_preferences_api__off_without_keys() -> None:
    served = await serve(api_keys={})
    try:
        assert (await served.call("GET")).status_code == 404
    finally:
        await served.server.close()
