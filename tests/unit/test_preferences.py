"""The consent and preference ledger: documents in a key-value store, the consent decision, `herald prefs`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from consumers.cli import commands as cli
from consumers.cli import people
from consumers.state.kvstore import MemoryStore
from consumers.state.preferences import PreferenceLedger, consent, edit, whatsapp_session_open
from schemas.catalog import Channel
from schemas.preferences import Preferences
from tests.fakes import FakeClock

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
HASH = "sha256:" + "ab" * 32


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.puts = 0
        self.readied = 0

    async def ready(self) -> None:
        self.readied += 1

    async def put(self, key: str, value: bytes) -> None:
        self.puts += 1
        await super().put(key, value)


def ledger(clock: FakeClock[datetime] | None = None) -> tuple[PreferenceLedger, CountingStore]:
    store = CountingStore()
    return PreferenceLedger(store, clock=clock or FakeClock(NOW)), store


def prefs(**fields: object) -> Preferences:
    return Preferences.model_validate({"recipient_id": "user-42", "updated_at": NOW, **fields})


# --- the ledger ---------------------------------------------------------------------------------------------------

async def test_ledger__first_update_creates_a_document_with_time_and_source() -> None:
    led, store = ledger()
    assert led.get("user-42") is None
    doc = await led.update("user-42", lambda p: p.model_copy(update={"locale": "es-ES"}), source="cli")
    assert (doc.recipient_id, doc.locale, doc.updated_at, doc.source) == ("user-42", "es-ES", NOW, "cli")
    stored = orjson.loads(store.data["user-42"])
    assert stored["locale"] == "es-ES" and stored["source"] == "cli"
    assert led.get("user-42") == doc


async def test_ledger__update_reads_the_latest_document_and_stamps_the_new_time() -> None:
    clock = FakeClock(NOW)
    led, _ = ledger(clock)
    await led.opt_out("user-42", "sms")
    clock.now = NOW + timedelta(minutes=5)
    doc = await led.set_promotional("user-42", "email", True, source="cli")
    assert doc.opted_out == [Channel.SMS] and doc.promotional_opt_in == [Channel.EMAIL]
    assert (doc.updated_at, doc.source) == (NOW + timedelta(minutes=5), "cli")


async def test_ledger__waits_for_the_store_before_a_read_modify_write() -> None:
    led, store = ledger()
    await led.ready()
    await led.opt_out("user-42", "sms")
    assert store.readied == 2


async def test_ledger__a_change_that_changes_nothing_writes_nothing() -> None:
    clock = FakeClock(NOW)
    led, store = ledger(clock)
    await led.opt_out("user-42", "sms")
    clock.now = NOW + timedelta(hours=1)
    doc = await led.opt_out("user-42", "sms")
    assert store.puts == 1 and doc.updated_at == NOW


async def test_ledger__stop_then_start_reopens_the_channel_but_not_promotions() -> None:
    led, _ = ledger()
    await led.set_promotional("user-42", "sms", True)
    stopped = await led.opt_out("user-42", "sms")
    assert stopped.opted_out == [Channel.SMS] and stopped.promotional_opt_in == []
    started = await led.opt_in("user-42", "sms")
    assert started.opted_out == [] and started.promotional_opt_in == []
    assert started.source == "reply"


async def test_ledger__opt_out_of_one_channel_leaves_the_others() -> None:
    led, _ = ledger()
    await led.set_promotional("user-42", "email", True)
    doc = await led.opt_out("user-42", "whatsapp")
    assert doc.opted_out == [Channel.WHATSAPP] and doc.promotional_opt_in == [Channel.EMAIL]


async def test_ledger__suppress_keeps_every_address_with_its_latest_reason() -> None:
    led, _ = ledger()
    await led.suppress("user-42", HASH, "bounced")
    await led.suppress("user-42", "sha256:other", "bounced")
    doc = await led.suppress("user-42", HASH, "complained")
    assert doc.suppressed == {HASH: "complained", "sha256:other": "bounced"}
    assert doc.source == "receipt"


async def test_ledger__record_inbound_never_moves_back_in_time() -> None:
    led, store = ledger()
    await led.record_inbound("user-42", "whatsapp", NOW)
    doc = await led.record_inbound("user-42", "whatsapp", NOW - timedelta(minutes=1))  # a late webhook
    assert doc.last_inbound == {Channel.WHATSAPP: NOW} and store.puts == 1
    doc = await led.record_inbound("user-42", "sms", NOW.replace(tzinfo=None) + timedelta(minutes=1))
    assert doc.last_inbound[Channel.SMS] == NOW + timedelta(minutes=1)  # naive means UTC


async def test_ledger__an_unknown_channel_never_reaches_the_store() -> None:
    led, store = ledger()
    with pytest.raises(ValueError):
        await led.opt_out("user-42", "pigeon")
    with pytest.raises(ValidationError):
        await led.update("user-42", lambda p: p.model_copy(update={"opted_out": ["pigeon"]}), source="cli")
    assert store.data == {}


async def test_ledger__a_document_that_does_not_validate_fails_closed() -> None:
    led, store = ledger()
    store.data["user-42"] = b'{"recipient_id": "user-42", "opted_out": ["sms"]}'  # no updated_at
    with pytest.raises(ValueError):
        led.get("user-42")


# --- consent ------------------------------------------------------------------------------------------------------

EMPTY = prefs()
STOPPED_SMS = prefs(opted_out=["sms"])
PROMO_EMAIL = prefs(promotional_opt_in=["email"])
SUPPRESSED = prefs(suppressed={HASH: "bounced"}, promotional_opt_in=["email"])
EVERYTHING = prefs(suppressed={HASH: "complained"}, opted_out=["email"], promotional_opt_in=[])

CONSENT_CASES = [
    # (prefs, category, channel, address hash, reason)
    (None, "transactional", "email", HASH, None),
    (None, "promotional", "email", HASH, "consent"),
    (EMPTY, "transactional", "sms", None, None),
    (EMPTY, "promotional", "sms", None, "consent"),
    (STOPPED_SMS, "transactional", "sms", None, "opted_out"),
    (STOPPED_SMS, "promotional", "sms", None, "opted_out"),
    (STOPPED_SMS, "transactional", "email", None, None),
    (PROMO_EMAIL, "promotional", "email", HASH, None),
    (PROMO_EMAIL, "promotional", "sms", None, "consent"),
    (SUPPRESSED, "transactional", "email", HASH, "suppressed_address"),
    (SUPPRESSED, "promotional", "email", HASH, "suppressed_address"),
    (SUPPRESSED, "transactional", "email", "sha256:another-address", None),
    (SUPPRESSED, "transactional", "email", None, None),
    (EVERYTHING, "promotional", "email", HASH, "suppressed_address"),
    (EVERYTHING, "promotional", "email", "sha256:another-address", "opted_out"),
]


@pytest.mark.parametrize(("document", "category", "channel", "address_hash", "reason"), CONSENT_CASES, ids=[
    "no_document_transactional_goes", "no_document_promotional_needs_consent",
    "empty_transactional_goes", "empty_promotional_needs_consent",
    "stop_stops_transactional", "stop_stops_promotional", "stop_is_per_channel",
    "promotional_with_opt_in_goes", "opt_in_is_per_channel",
    "suppressed_address_transactional", "suppressed_address_promotional", "other_address_goes",
    "unknown_address_goes", "suppression_comes_first", "opt_out_comes_before_consent",
])
def test_consent__decision_table(document: Preferences | None, category: str, channel: str,
                                 address_hash: str | None, reason: str | None) -> None:
    assert consent(document, category=category, channel=channel, address_hash=address_hash) == reason


@pytest.mark.parametrize(("last", "open_"), [
    (None, False), (NOW - timedelta(hours=23, minutes=59), True), (NOW - timedelta(hours=24), False),
    (NOW - timedelta(days=3), False),
], ids=["never_wrote", "within_24h", "exactly_24h", "days_ago"])
def test_whatsapp_session_open__only_within_24_hours_of_the_last_whatsapp_message(
        last: datetime | None, open_: bool) -> None:
    document = prefs(last_inbound={"whatsapp": last} if last else {"sms": NOW})
    assert whatsapp_session_open(document, NOW) is open_


def test_whatsapp_session_open__no_document_is_closed() -> None:
    assert whatsapp_session_open(None, NOW) is False


def test_edit__sets_only_what_is_given() -> None:
    doc = edit(prefs(locale="de", timezone="Europe/Berlin", preferred_channel="sms"), locale="es-ES")
    assert (doc.locale, doc.timezone, doc.preferred_channel) == ("es-ES", "Europe/Berlin", Channel.SMS)


# --- herald prefs -------------------------------------------------------------------------------------------------

@pytest.fixture
def memory_ledger(monkeypatch: pytest.MonkeyPatch) -> PreferenceLedger:
    led = PreferenceLedger(MemoryStore(), clock=FakeClock(NOW))

    @contextlib.asynccontextmanager
    async def fake_open(settings: object) -> AsyncIterator[PreferenceLedger]:
        yield led

    monkeypatch.setattr(people, "_open_ledger", fake_open)
    return led


def test_cli_prefs_get__without_a_document_says_so(memory_ledger: PreferenceLedger) -> None:
    result = CliRunner().invoke(cli.app, ["prefs", "get", "user-42"])
    assert result.exit_code == 0 and "no preferences" in result.output


def test_cli_prefs_set__applies_every_option_then_get_prints_the_json(memory_ledger: PreferenceLedger) -> None:
    runner = CliRunner()
    result = runner.invoke(cli.app, [
        "prefs", "set", "user-42", "--opt-out", "sms", "--opt-out", "WhatsApp", "--promotional", "email=yes",
        "--promotional", "push=no", "--preferred-channel", "email", "--locale", "es-ES",
        "--timezone", "Europe/Madrid"])
    assert result.exit_code == 0, result.output
    doc = memory_ledger.get("user-42")
    assert doc is not None
    assert doc.opted_out == [Channel.SMS, Channel.WHATSAPP] and doc.promotional_opt_in == [Channel.EMAIL]
    assert (doc.preferred_channel, doc.locale, doc.timezone, doc.source) == (
        Channel.EMAIL, "es-ES", "Europe/Madrid", "cli")

    result = runner.invoke(cli.app, ["prefs", "set", "user-42", "--opt-in", "sms"])
    assert result.exit_code == 0, result.output
    printed = runner.invoke(cli.app, ["prefs", "get", "user-42"])
    assert orjson.loads(printed.stdout)["opted_out"] == ["whatsapp"]


@pytest.mark.parametrize("args", [
    ["--opt-out", "pigeon"], ["--promotional", "email"], ["--promotional", "email=maybe"],
    ["--locale", "not a locale"], ["--timezone", "Mars/Olympus"], ["--opt-out", "sms", "--opt-in", "sms"],
], ids=["unknown_channel", "promotional_without_answer", "promotional_bad_answer", "bad_locale",
        "bad_timezone", "out_and_in_at_once"])
def test_cli_prefs_set__bad_input_is_refused_and_changes_nothing(memory_ledger: PreferenceLedger,
                                                                 args: list[str]) -> None:
    result = CliRunner().invoke(cli.app, ["prefs", "set", "user-42", *args])
    assert result.exit_code == 2
    assert memory_ledger.get("user-42") is None
