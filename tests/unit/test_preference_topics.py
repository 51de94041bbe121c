"""Preference topics: what a person turned off, per topic and channel, refuses that topic's messages at routing and
again at send time (`suppressed`, `preference:<topic>/<channel>`), per tenant; critical types and required topics
go whatever was chosen; the catalog refuses topics that do not add up."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from channels.rendering.render import Renderer
from consumers import hooks
from consumers.app import BUNDLED_CATALOG
from consumers.cli.publish import make_event
from consumers.observe.metrics import Metrics
from consumers.pipeline.delivery import DeliveryHooks, DeliveryStage
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import Record
from consumers.pipeline.router import Router
from consumers.pipeline.scheduler import Scheduler
from consumers.state.documents import Documents
from consumers.state.erasure import forget
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import PreferenceLedger, edit
from consumers.state.sends import SendLedger
from consumers.state.stores import State
from consumers.state.topic_choices import ledger_key, split_key, tidy
from schemas.catalog import Catalog, CatalogError
from schemas.dispatch import Dispatch
from schemas.events import Recipient
from schemas.preferences import Preferences, TopicChoice
from schemas.status import Status
from schemas.topics import preference_topic, topic_channels, topic_locked
from tests.fakes import FakeClock, RecordingPublisher, ScriptedSender

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SECRET = b"topics-secret"
CATALOG = Catalog.load(BUNDLED_CATALOG)
# The bundled catalog's critical types are all in the required `account` topic; one in a topic a person may turn off
# shows that a critical type ignores preferences by itself.
CRITICAL_IN_ALERTS = CATALOG.model_copy(deep=True)
CRITICAL_IN_ALERTS.types["otp.requested"].topic = "alerts"
PERSON = {"id": "user-42", "email": "ana@example.com", "phone": "+34600111222", "locale": "es-ES",
          "timezone": "Europe/Madrid", "name": "Ana"}


def choices(**topics: dict[str, Any]) -> dict[str, TopicChoice]:
    return {name: TopicChoice.model_validate(choice) for name, choice in topics.items()}


async def ledger_with(documents: dict[str | None, dict[str, TopicChoice]], *, promotional: tuple[str, ...] = (),
                      opted_out: tuple[str, ...] = ()) -> PreferenceLedger:
    """A ledger where `user-42`'s own document consents to `promotional` and stops `opted_out`, and each tenant's
    document (None: the person's own) holds the given topic choices."""
    ledger = PreferenceLedger(MemoryStore(), clock=lambda: NOW)
    await ledger.update("user-42", lambda p: edit(p, promotional={c: True for c in promotional}, opt_out=opted_out),
                        source="cli")
    for tenant, topics in documents.items():
        await ledger.update("user-42", lambda p, t=topics: p.model_copy(update={"topics": t}), source="api",
                            tenant=tenant)
    return ledger


# (case, documents by tenant, consented promotional channels, stopped channels, catalog, type, channel, event
# tenant, expected refusal)
CASES: list[tuple[str, dict[str | None, dict[str, TopicChoice]], tuple[str, ...], tuple[str, ...], Catalog, str,
                  str, str | None, str | None]] = [
    ("nothing chosen", {}, (), (), CATALOG, "shipping.dispatched", "sms", "acme", None),
    ("topic off", {"acme": choices(shipping={"enabled": False})}, (), (), CATALOG, "shipping.dispatched", "email",
     "acme", "preference:shipping/email"),
    ("topic/channel off: that channel", {"acme": choices(promotions={"channels": {"sms": False}})}, ("sms", "email"),
     (), CATALOG, "offer.loyalty", "sms", "acme", "preference:promotions/sms"),
    ("topic/channel off: other channels go", {"acme": choices(promotions={"channels": {"sms": False}})},
     ("sms", "email"), (), CATALOG, "offer.loyalty", "email", "acme", None),
    ("topic off but one channel on", {"acme": choices(shipping={"enabled": False, "channels": {"email": True}})},
     (), (), CATALOG, "shipping.dispatched", "email", "acme", None),
    ("topic off but one channel on: the rest", {"acme": choices(shipping={"enabled": False,
                                                                          "channels": {"email": True}})},
     (), (), CATALOG, "shipping.dispatched", "whatsapp", "acme", "preference:shipping/whatsapp"),
    ("another topic off", {"acme": choices(feedback={"enabled": False})}, (), (), CATALOG, "shipping.dispatched",
     "email", "acme", None),
    ("required topic stored off is ignored", {"acme": choices(orders={"enabled": False})}, (), (), CATALOG,
     "order.confirmed", "email", "acme", None),
    ("critical type ignores its topic", {"acme": choices(alerts={"enabled": False})}, (), (), CRITICAL_IN_ALERTS,
     "otp.requested", "sms", "acme", None),
    ("non-critical type of the same topic does not", {"acme": choices(alerts={"enabled": False})}, (), (),
     CRITICAL_IN_ALERTS, "alert.weather", "sms", "acme", "preference:alerts/sms"),
    ("another tenant's choice", {"globex": choices(shipping={"enabled": False})}, (), (), CATALOG,
     "shipping.dispatched", "email", "acme", None),
    ("a tenant's choice is not the tenant-less one", {"acme": choices(shipping={"enabled": False})}, (), (), CATALOG,
     "shipping.dispatched", "email", None, None),
    ("the person's own document for tenant-less events", {None: choices(shipping={"enabled": False})}, (), (),
     CATALOG, "shipping.dispatched", "email", None, "preference:shipping/email"),
    ("the person's own topics do not speak for a tenant", {None: choices(shipping={"enabled": False})}, (), (),
     CATALOG, "shipping.dispatched", "email", "acme", None),
    ("no consent is named before the preference", {"acme": choices(promotions={"enabled": False})}, (), (), CATALOG,
     "offer.loyalty", "sms", "acme", "consent"),
    ("a STOP is named before the preference", {"acme": choices(shipping={"enabled": False})}, (), ("sms",), CATALOG,
     "shipping.dispatched", "sms", "acme", "opted_out"),
]


@pytest.mark.parametrize(("documents", "promotional", "opted_out", "catalog", "event_type", "channel", "tenant",
                          "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
async def test_consent_check__topic_choices_decide_as_the_table_says(
        documents: dict[str | None, dict[str, TopicChoice]], promotional: tuple[str, ...], opted_out: tuple[str, ...],
        catalog: Catalog, event_type: str, channel: str, tenant: str | None, expected: str | None) -> None:
    ledger = await ledger_with(documents, promotional=promotional, opted_out=opted_out)
    check = hooks.consent_check(ledger, SECRET, catalog)
    entry = catalog.types[event_type]
    address = PERSON["phone"] if channel in ("sms", "whatsapp", "voice") else PERSON["email"]
    assert check("user-42", entry.category.value, channel, address, event_type=event_type, tenant=tenant) == expected


async def test_consent_check__without_the_catalog_or_the_type_no_topic_applies() -> None:
    ledger = await ledger_with({None: choices(shipping={"enabled": False})})
    assert hooks.consent_check(ledger, SECRET)("user-42", "transactional", "email", PERSON["email"],
                                               event_type="shipping.dispatched") is None
    assert hooks.consent_check(ledger, SECRET, CATALOG)("user-42", "transactional", "email", PERSON["email"]) is None


def test_topics__locked_are_the_required_and_the_all_critical() -> None:
    assert topic_locked(CATALOG, "account") and topic_locked(CATALOG, "orders")
    assert not topic_locked(CATALOG, "shipping") and not topic_locked(CATALOG, "promotions")
    assert preference_topic(CATALOG, CATALOG.types["password.reset"]) is None
    assert preference_topic(CATALOG, CATALOG.types["offer.loyalty"]) == "promotions"
    only_critical = CATALOG.model_copy(deep=True)
    only_critical.types["password.reset"].topic = "security"
    only_critical.preference_topics["security"] = only_critical.preference_topics["alerts"].model_copy()
    assert topic_locked(only_critical, "security")  # every type in it is critical: nothing to turn off
    assert topic_channels(CATALOG, "promotions") == ["email", "push", "sms"]


# --- the catalog ----------------------------------------------------------------------------------------------------


def catalog_with(topics: dict[str, Any], **entry: Any) -> dict[str, Any]:
    return {"preference_topics": topics, "types": {"offer.spring": {
        "category": "promotional", "priority": "bulk", "channels": ["email"], "ttl": "1d", **entry}}}


@pytest.mark.parametrize(("raw", "problem"), [
    (catalog_with({}, topic="news"), "topic 'news' is not one of preference_topics"),
    (catalog_with({"news": {"required": True}}, topic="news"), "promotional type cannot be in required topic"),
    (catalog_with({"News!": {}}), "preference topic names must be lower-case words"),
    (catalog_with({"news": {"label": {"EN": "News"}}}, topic="news"), "label keys must be lower-case language"),
    (catalog_with({"news": {"label": {"en": ""}}}, topic="news"), "labels must be 1 to 80 characters"),
    (catalog_with({"news": {"hidden": True}}, topic="news"), "Extra inputs are not permitted"),
], ids=["undeclared", "promotional-required", "bad-name", "bad-language", "empty-label", "unknown-field"])
def test_catalog__topics_that_do_not_add_up_are_refused_with_the_reason(
        tmp_path: Any, raw: dict[str, Any], problem: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(orjson.dumps(raw).decode())  # JSON is YAML
    with pytest.raises(CatalogError, match=problem):
        Catalog.load(path)


def test_catalog__a_type_without_topic_is_in_its_category_which_needs_no_declaration() -> None:
    catalog = Catalog.model_validate(catalog_with({}))
    assert preference_topic(catalog, catalog.types["offer.spring"]) == "promotional"


# --- the ledger's tenant documents ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("tenant", "recipient_id"), [("acme", "user-42"), ("a/b", "x/y"), (None, "@odd/id"),
                                                      ("ünï cödé", "user@example.com")])
def test_ledger_key__round_trips_and_a_tenant_slash_cannot_shift_the_id(tenant: str | None,
                                                                         recipient_id: str) -> None:
    key = ledger_key(tenant, recipient_id)
    if tenant is None:
        assert key == recipient_id  # the person's own document: the key documents always had
    else:
        assert split_key(key) == (tenant, recipient_id)


def test_tidy__keeps_only_what_differs_from_all_on() -> None:
    assert tidy(choices(a={"enabled": True, "channels": {"sms": True, "email": False}}, b={"enabled": True},
                        c={"enabled": False, "channels": {"sms": False, "email": True}})) == choices(
        a={"channels": {"email": False}}, c={"enabled": False, "channels": {"email": True}})


async def test_ledger__a_tenant_document_is_its_own_and_leaves_the_person_s_alone() -> None:
    store = MemoryStore()
    ledger = PreferenceLedger(store, clock=lambda: NOW)
    await ledger.opt_out("user-42", "sms")
    await ledger.update("user-42", lambda p: p.model_copy(update={"topics": choices(feedback={"enabled": False})}),
                        source="api", tenant="acme")
    own, acme = ledger.get("user-42"), ledger.get("user-42", tenant="acme")
    assert own is not None and own.topics == {} and own.opted_out == ["sms"] and own.tenant is None
    assert acme is not None and acme.tenant == "acme" and acme.source == "api" and acme.opted_out == []
    assert sorted(store.data) == ["@acme/user-42", "user-42"]
    assert ledger.get("user-42", tenant="globex") is None


async def test_erasure__forgetting_a_person_erases_every_tenant_s_document_of_them() -> None:
    state = State.in_memory()
    ledger = PreferenceLedger(state.preferences, clock=lambda: NOW)
    for tenant in (None, "acme", "globex"):
        for who in ("user-42", "user-7"):
            await ledger.update(who, lambda p: p.model_copy(update={"locale": "es"}), source="cli", tenant=tenant)
    stores = {name: getattr(state, name) for name in ("preferences", "caps", "schedules", "sends", "documents",
                                                       "contacts")}
    result = await forget(stores, "user-42", secret=SECRET)
    assert result.deleted["preferences"] == 3
    assert sorted(state.preferences.list_keys()) == ["@acme/user-7", "@globex/user-7", "user-7"]


# --- on the pipeline: at routing, and again at send time -------------------------------------------------------------


class Pipeline:
    """The router and the delivery stage on one ledger, wired with the consent check as `create_app` wires it."""

    def __init__(self, ledger: PreferenceLedger) -> None:
        self.clock = FakeClock(NOW)
        self.publisher = RecordingPublisher()
        self.outlets = Outlets.build(self.publisher, Metrics(), SECRET, self.clock)
        check = hooks.consent_check(ledger, SECRET, CATALOG)
        self.router = Router(CATALOG, ("email", "sms"), clock=self.clock, consent=check, preferences=ledger.get)
        self.sms = ScriptedSender(name="twilio", channel="sms")
        renderer, globals_ = Renderer(), {"brand": "Shop", "document_url": None}
        self.delivery = DeliveryStage(
            renderer, {"sms": self.sms, "email": ScriptedSender(name="smtp", channel="email")}, CATALOG, self.outlets,
            sends=SendLedger(MemoryStore(), self.clock),
            documents=Documents(MemoryStore(), renderer, SECRET, "https://h.example", template_globals=globals_,
                                clock=self.clock),
            scheduler=Scheduler(MemoryStore(), self.publisher, self.outlets.statuses, clock=self.clock),
            clock=self.clock, template_globals=globals_, hooks=DeliveryHooks(consent=check))


async def test_router__a_promotional_sms_turned_off_is_suppressed_with_the_preference_detail() -> None:
    ledger = await ledger_with({"acme": choices(promotions={"channels": {"sms": False}})}, promotional=("sms",))
    pipeline = Pipeline(ledger)
    event = make_event("offer.loyalty", {**PERSON, "email": None}, CATALOG.types["offer.loyalty"].sample,
                       channels=["sms"], tenant="acme")
    event["time"] = NOW.isoformat()
    result = pipeline.router.route(orjson.dumps(event), {})
    assert result.outcome == "suppressed" and result.suppressed == "preference:promotions/sms"
    globex = pipeline.router.route(orjson.dumps({**event, "id": "evt-globex", "tenant": "globex"}), {})
    assert globex.outcome == "accepted"  # acme's choice is acme's


async def test_router__a_channel_turned_off_falls_to_the_topic_s_next_channel() -> None:
    ledger = await ledger_with({"acme": choices(shipping={"channels": {"email": False}})})
    event = make_event("shipping.dispatched", PERSON, CATALOG.types["shipping.dispatched"].sample, tenant="acme")
    event["time"] = NOW.isoformat()
    result = Pipeline(ledger).router.route(orjson.dumps(event), {})
    assert [d.channel for d in result.dispatches] == ["sms"]


async def test_delivery__a_choice_made_while_the_message_waited_stops_it_at_send_time() -> None:
    ledger = await ledger_with({}, promotional=("sms",))
    pipeline = Pipeline(ledger)
    d = Dispatch(message_id=f"msg-{uuid.uuid4().hex[:8]}", event_id="evt-1", event_type="offer.loyalty",
                 event_time=NOW, tenant="acme", channel="sms", category="promotional", priority="bulk",
                 idempotency_key="k", to=Recipient(id="user-42", phone=PERSON["phone"], locale="es-ES"),
                 payload=CATALOG.types["offer.loyalty"].sample, expires_at=NOW + timedelta(days=1))
    await ledger.update("user-42", lambda p: p.model_copy(update={"topics": choices(promotions={"enabled": False})}),
                        source="page", tenant="acme")
    await pipeline.delivery.handle(Record(topic="h.dispatch.sms", partition=0, offset=1, key=d.message_id.encode(),
                                          value=d.model_dump_json().encode()))
    [status] = pipeline.publisher.statuses()
    assert (status.status, status.detail) == (Status.SUPPRESSED, "preference:promotions/sms")
    assert pipeline.sms.sent == []


def test_preferences__documents_written_before_topics_still_read() -> None:
    old = b'{"recipient_id": "user-42", "opted_out": ["sms"], "updated_at": "2026-01-01T00:00:00Z", "source": "cli"}'
    prefs = Preferences.model_validate_json(old)
    assert prefs.topics == {} and prefs.tenant is None
