"""The message timeline: the index of herald.status (order, lookups by message, event and idempotency key,
pruning, resuming), the reader that feeds it, the admin endpoints (token, 401/404/503/200) and `herald trace`'s
rendering. Statuses come from the real pipeline stages where they can (retried, dead-lettered, deduplicated,
suppressed), so the index is tested against what workers really publish."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndTimestamp
from pydantic import SecretStr, ValidationError
from rich.console import Console
from typer.testing import CliRunner

from channels.errors import ProviderUnavailable
from consumers.cli.commands import app as cli
from consumers.cli.trace import parse_since, print_timelines
from consumers.identity import key_message_ids, message_id
from consumers.inbound.admin import admin_application, bearer_matches
from consumers.observe import timeline as timeline_module
from consumers.observe.metrics import Metrics
from consumers.observe.timeline import StatusTimeline, TimelineIndex
from schemas.settings import Settings
from schemas.status import DeliveryStatus, Status
from tests.fakes import ScriptedSender
from tests.unit import test_delivery as delivery_rig
from tests.unit import test_ingest as ingest_rig

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TOKEN = "t0ken-" + "x7Qp2Lm9" * 4


def status(message: str, state: Status, at: datetime = NOW, **fields: Any) -> DeliveryStatus:
    return DeliveryStatus(message_id=message, status=state, at=at, **fields)


def feed(index: TimelineIndex, statuses: Iterable[DeliveryStatus | bytes | None], *, partition: int = 0,
         first_offset: int = 0) -> None:
    """Index statuses as the reader would: in topic order, one offset each."""
    rows = [(partition, first_offset + n, s.model_dump_json().encode() if isinstance(s, DeliveryStatus) else s)
            for n, s in enumerate(statuses)]
    index.add(rows, {partition: first_offset + len(rows)})


@pytest.fixture
def index(tmp_path: Path) -> Iterable[TimelineIndex]:
    db = TimelineIndex(tmp_path / "timeline.sqlite")
    yield db
    db.close()


# --- the index ----------------------------------------------------------------------------------------------------

def test_index__a_messages_statuses_come_back_ordered_by_time_then_by_offset(index: TimelineIndex) -> None:
    # A receipt stamped by a worker whose clock is behind lands after `sent` in the topic, but before it in time.
    feed(index, [status("msg-1", Status.ACCEPTED, NOW, event_id="evt-1", event_type="order.confirmed"),
                 status("msg-1", Status.SENT, NOW + timedelta(seconds=2), event_id="evt-1", provider="smtp"),
                 status("msg-1", Status.DELIVERED, NOW + timedelta(seconds=1), provider="smtp"),
                 status("msg-1", Status.OPENED, NOW + timedelta(seconds=2), provider="smtp"),
                 status("msg-2", Status.ACCEPTED, NOW)])
    found = index.message("msg-1")
    assert found is not None
    assert [s.status for s in found.statuses] == [Status.ACCEPTED, Status.DELIVERED, Status.SENT, Status.OPENED]
    assert (found.event_id, found.event_type) == ("evt-1", "order.confirmed")
    assert index.message("msg-unknown") is None


async def test_index__a_retried_message_shows_each_attempt_then_sent(index: TimelineIndex) -> None:
    rig = delivery_rig.stage(ScriptedSender(script=[ProviderUnavailable("timeout"), ProviderUnavailable("timeout")]))
    await rig.stage.handle(delivery_rig.record(delivery_rig.dispatch()))
    await rig.run_scheduled()
    feed(index, [r.value for r in rig.publisher.on("status")])
    found = index.message("msg-1")
    assert found is not None and found.event_type == "order.confirmed"
    assert [(s.status, s.attempt, s.provider) for s in found.statuses] == [
        (Status.RETRYING, 1, "fake"), (Status.RETRYING, 2, "fake"), (Status.SENT, 3, "fake")]
    assert [s.error for s in found.statuses[:2]] == ["provider_unavailable"] * 2


async def test_index__a_dead_lettered_message_ends_failed_then_dead_lettered(index: TimelineIndex) -> None:
    rig = delivery_rig.stage(ScriptedSender(script=[ProviderUnavailable("down")] * 3))
    await rig.stage.handle(delivery_rig.record(delivery_rig.dispatch()))
    await rig.run_scheduled()
    feed(index, [r.value for r in rig.publisher.on("status")])
    [found] = index.by_event("evt-1")
    assert [s.status for s in found.statuses] == [Status.RETRYING, Status.RETRYING, Status.FAILED,
                                                  Status.DEAD_LETTERED]
    assert found.statuses[-1].error == "provider_unavailable"


async def test_index__by_idempotency_key_finds_the_message_and_its_duplicate_and_suppressed_events(
        index: TimelineIndex) -> None:
    ingest, publisher, _, _ = ingest_rig.stage()
    records = [ingest_rig.record(0, idempotencykey="promo-1", tenant="acme"),
               ingest_rig.record(1, idempotencykey="promo-1", tenant="acme"),  # the same key again
               ingest_rig.record(2, idempotencykey="promo-2", tenant="acme"),
               ingest_rig.record(3, idempotencykey="promo-3", tenant="acme")]  # over the cap of 2: suppressed
    await ingest_rig.in_one_batch(ingest, records)
    feed(index, [r.value for r in publisher.on("status")])
    first = index.by_key("promo-1", key_message_ids)
    third = index.by_key("promo-3", key_message_ids, tenant="acme")
    other_tenant = index.by_key("promo-1", key_message_ids, tenant="globex")
    assert {t.message_id for t in first} == {message_id("acme", "promo-1", "email"),
                                             message_id("acme", "promo-1", "event")}
    assert sorted(s.status for t in first for s in t.statuses) == [Status.ACCEPTED, Status.DEDUPLICATED]
    [suppressed] = third
    assert [(s.status, s.detail) for s in suppressed.statuses] == [(Status.SUPPRESSED, "frequency_cap")]
    assert other_tenant == []


def test_index__by_key_finds_later_reminders_through_their_event(index: TimelineIndex) -> None:
    first, second = message_id(None, "appt-9|0", "sms"), message_id(None, "appt-9|1", "sms")
    feed(index, [status(first, Status.SCHEDULED, NOW, event_id="evt-9", channel="sms"),
                 status(second, Status.SCHEDULED, NOW, event_id="evt-9", channel="sms"),
                 status(second, Status.DELIVERED, NOW + timedelta(days=1), channel="sms"),  # a receipt: no event id
                 status(message_id(None, "other", "sms"), Status.SENT, NOW, event_id="evt-10")])
    found = {t.message_id: [s.status for s in t.statuses] for t in index.by_key("appt-9", key_message_ids)}
    assert found == {first: [Status.SCHEDULED], second: [Status.SCHEDULED, Status.DELIVERED]}


def test_index__by_event_includes_receipts_that_name_only_the_message(index: TimelineIndex) -> None:
    feed(index, [status("msg-a", Status.SENT, NOW, event_id="evt-1", channel="email"),
                 status("msg-b", Status.SENT, NOW + timedelta(seconds=1), event_id="evt-1", channel="sms"),
                 status("msg-a", Status.DELIVERED, NOW + timedelta(seconds=5))])
    found = index.by_event("evt-1")
    assert [(t.message_id, [s.status for s in t.statuses]) for t in found] == [
        ("msg-a", [Status.SENT, Status.DELIVERED]), ("msg-b", [Status.SENT])]
    assert index.by_event("evt-2") == []


def test_index__prunes_what_left_the_window_and_skips_what_arrives_already_out_of_it(index: TimelineIndex) -> None:
    old, recent = NOW - timedelta(days=8), NOW - timedelta(hours=1)
    feed(index, [status("msg-old", Status.SENT, old), status("msg-new", Status.SENT, recent)])
    assert index.prune((NOW - timedelta(days=7)).timestamp()) == 1
    assert index.message("msg-old") is None and index.message("msg-new") is not None
    index.add([(0, 9, status("msg-older", Status.SENT, old).model_dump_json().encode())], {0: 10},
              since=(NOW - timedelta(days=7)).timestamp())
    assert index.message("msg-older") is None and index.position(0) == 10


def test_index__records_that_are_not_statuses_are_skipped_and_their_offsets_passed(index: TimelineIndex) -> None:
    feed(index, [b"not json", b'{"no": "message"}', None, status("msg-1", Status.SENT)])
    assert index.count() == 1 and index.skipped == 3 and index.position(0) == 4


def test_index__a_record_read_again_replaces_itself(index: TimelineIndex) -> None:
    feed(index, [status("msg-1", Status.SENT)])
    feed(index, [status("msg-1", Status.SENT)])  # the same offset: a re-read after a restart
    found = index.message("msg-1")
    assert found is not None and len(found.statuses) == 1


# --- the reader ---------------------------------------------------------------------------------------------------

class FakeConsumer:
    """The part of AIOKafkaConsumer the reader uses, over in-memory partitions of status records."""

    def __init__(self, partitions: dict[int, list[bytes]], *, by_time: dict[int, int | None] | None = None) -> None:
        self.partitions = partitions
        self.by_time = by_time
        self.positions: dict[int, int] = {}
        self.started = self.stopped = False

    def __call__(self, **kwargs: Any) -> FakeConsumer:
        return self

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def topics(self) -> set[str]:
        return {"h.status"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.partitions)

    def assign(self, parts: list[TopicPartition]) -> None:
        self.positions = {tp.partition: 0 for tp in parts}

    async def end_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.partitions[tp.partition]) for tp in parts}

    async def offsets_for_times(self, times: dict[TopicPartition, int]) -> dict[TopicPartition, Any]:
        if self.by_time is None:
            from aiokafka.errors import UnsupportedVersionError

            raise UnsupportedVersionError("no ListOffsets by time")
        return {tp: OffsetAndTimestamp(o, 0) if (o := self.by_time[tp.partition]) is not None else None
                for tp in times}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp.partition] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp.partition]

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        out: dict[TopicPartition, list[Any]] = {}
        for p, values in self.partitions.items():
            start = self.positions[p]
            batch = values[start:start + 2]
            if batch:
                out[TopicPartition("h.status", p)] = [_Record(p, start + n, v) for n, v in enumerate(batch)]
                self.positions[p] = start + len(batch)
        if not out:
            await asyncio.sleep(timeout_ms / 1000)  # as a broker's fetch: waits for records, yielding the loop
        return out


class _Record:
    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self.partition, self.offset, self.value = partition, offset, value


def _reader(tmp_path: Path, consumer: FakeConsumer, monkeypatch: pytest.MonkeyPatch) -> StatusTimeline:
    monkeypatch.setattr(timeline_module, "AIOKafkaConsumer", consumer)
    return StatusTimeline("h.status", {}, tmp_path / "t.sqlite", retention=timedelta(days=7), clock=lambda: NOW,
                          poll_ms=1)


def _values(*statuses: DeliveryStatus) -> list[bytes]:
    return [s.model_dump_json().encode() for s in statuses]


async def test_reader__catches_up_from_the_windows_first_status_then_resumes_where_it_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partitions = {0: _values(status("msg-old", Status.SENT, NOW - timedelta(days=9)),
                             status("msg-a", Status.SENT, NOW - timedelta(hours=1))),
                  1: _values(status("msg-b", Status.SENT, NOW - timedelta(hours=2)))}
    consumer = FakeConsumer(partitions, by_time={0: 1, 1: 0})
    reader = _reader(tmp_path, consumer, monkeypatch)
    await reader.catch_up()
    assert reader.caught_up and consumer.stopped
    assert reader.index.message("msg-a") and reader.index.message("msg-b")
    assert reader.index.message("msg-old") is None  # before the window: never read
    reader.close()

    partitions[1] += _values(status("msg-c", Status.SENT, NOW))
    again = _reader(tmp_path, FakeConsumer(partitions, by_time={0: 1, 1: 0}), monkeypatch)
    await again.catch_up()
    assert again.index.message("msg-c") is not None and again.index.count() == 3
    again.close()


async def test_reader__without_offsets_by_time_reads_from_the_beginning_and_keeps_the_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partitions = {0: _values(status("msg-old", Status.SENT, NOW - timedelta(days=9)),
                             status("msg-a", Status.SENT, NOW - timedelta(hours=1)))}
    reader = _reader(tmp_path, FakeConsumer(partitions, by_time=None), monkeypatch)
    await reader.catch_up()
    assert reader.index.message("msg-a") is not None and reader.index.message("msg-old") is None
    reader.close()


async def test_reader__a_recreated_topic_is_read_again_from_its_start(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    reader = _reader(tmp_path, FakeConsumer({0: _values(*(status(f"msg-{n}", Status.SENT) for n in range(4)))},
                                            by_time={0: 0}), monkeypatch)
    await reader.catch_up()
    reader.close()
    # The broker lost the topic (the dev broker is in memory): offsets start at 0 again, below where we stopped.
    fresh = _reader(tmp_path, FakeConsumer({0: _values(status("msg-new", Status.SENT))}, by_time={0: 0}),
                    monkeypatch)
    await fresh.catch_up()
    assert fresh.index.message("msg-new") is not None and fresh.index.message("msg-3") is None
    fresh.close()


async def test_reader__run_follows_new_statuses_and_closes_everything_when_cancelled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partitions = {0: _values(status("msg-a", Status.ACCEPTED))}
    consumer = FakeConsumer(partitions, by_time={0: 0})
    reader = _reader(tmp_path, consumer, monkeypatch)
    running = asyncio.create_task(reader.run())
    for _ in range(200):
        await asyncio.sleep(0.01)
        if reader.caught_up:
            break
    partitions[0] += _values(status("msg-a", Status.SENT, NOW + timedelta(seconds=1)))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if (found := reader.index.message("msg-a")) and len(found.statuses) == 2:
            break
    found = reader.index.message("msg-a")
    assert reader.caught_up and found and [s.status for s in found.statuses] == [Status.ACCEPTED, Status.SENT]
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert consumer.stopped and reader._index is None


# --- the admin endpoints ------------------------------------------------------------------------------------------

def _timeline(tmp_path: Path, *statuses: DeliveryStatus, caught_up: bool = True) -> StatusTimeline:
    reader = StatusTimeline("h.status", {}, tmp_path / "t.sqlite", retention=timedelta(days=7))
    feed(reader.index, statuses)
    reader.caught_up = caught_up
    return reader


def _admin(timeline: StatusTimeline | None, token: str | None = TOKEN) -> TestClient:
    application = admin_application(Metrics(), "herald-test", lambda: True, timeline=timeline,
                                    token=SecretStr(token) if token else None)
    return TestClient(TestServer(application))


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_admin__a_message_timeline_needs_the_token(tmp_path: Path) -> None:
    sent = status("msg-1", Status.SENT, event_id="evt-1", event_type="order.confirmed", channel="email",
                  provider="smtp", attempt=1)
    async with _admin(_timeline(tmp_path, status("msg-1", Status.ACCEPTED, event_id="evt-1"), sent)) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}):
            refused = await client.get("/messages/msg-1", headers=headers)
            assert refused.status == 401, headers
            assert (await refused.json())["error"] == "unauthorized"
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await client.get("/messages", params={"event_id": "evt-1"}, headers=headers)).status == 401
        answer = await client.get("/messages/msg-1", headers=AUTH)
        assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
        body = await answer.json()
        assert set(body) == {"message_id", "event_id", "event_type", "statuses"}
        assert (body["message_id"], body["event_id"], body["event_type"]) == ("msg-1", "evt-1", "order.confirmed")
        assert [s["status"] for s in body["statuses"]] == ["accepted", "sent"]
        assert DeliveryStatus.model_validate(body["statuses"][1]) == sent


async def test_admin__unknown_message_is_404_once_caught_up_and_503_before(tmp_path: Path) -> None:
    timeline = _timeline(tmp_path, status("msg-1", Status.SENT), caught_up=False)
    async with _admin(timeline) as client:
        early = await client.get("/messages/msg-2", headers=AUTH)
        assert early.status == 503 and early.headers["Retry-After"] == "5"
        assert (await early.json())["error"] == "catching_up"
        timeline.caught_up = True
        missing = await client.get("/messages/msg-2", headers=AUTH)
        assert missing.status == 404 and (await missing.json())["error"] == "not_found"
        assert (await client.get("/messages/" + "m" * 600, headers=AUTH)).status == 404
        assert (await client.get("/messages", params={"event_id": "evt-x"}, headers=AUTH)).status == 404


async def test_admin__lookups_by_event_and_by_idempotency_key(tmp_path: Path) -> None:
    email, event_level = message_id("acme", "reset-7", "email"), message_id("acme", "reset-7", "event")
    timeline = _timeline(tmp_path, status(email, Status.SENT, event_id="evt-7", tenant="acme"),
                         status(event_level, Status.DEDUPLICATED, NOW + timedelta(seconds=1), event_id="evt-8",
                                tenant="acme"))
    async with _admin(timeline) as client:
        by_event = await client.get("/messages", params={"event_id": "evt-7"}, headers=AUTH)
        assert by_event.status == 200
        assert [m["message_id"] for m in (await by_event.json())["messages"]] == [email]
        by_key = await client.get("/messages", params={"idempotency_key": "reset-7"}, headers=AUTH)
        assert [m["message_id"] for m in (await by_key.json())["messages"]] == [email, event_level]
        of_tenant = await client.get("/messages", params={"idempotency_key": "reset-7", "tenant": "globex"},
                                     headers=AUTH)
        assert of_tenant.status == 404
        for params in ({}, {"event_id": "evt-7", "idempotency_key": "reset-7"}):
            bad = await client.get("/messages", params=params, headers=AUTH)
            assert bad.status == 400 and (await bad.json())["error"] == "bad_request"


@pytest.mark.parametrize("token", [None, "set"])
async def test_admin__without_a_token_or_an_index_the_timeline_is_off(tmp_path: Path, token: str | None) -> None:
    timeline = None if token else _timeline(tmp_path, status("msg-1", Status.SENT))
    async with _admin(timeline, token=TOKEN if token else None) as client:
        for path in ("/messages/msg-1", "/messages?event_id=evt-1"):
            off = await client.get(path, headers=AUTH)
            assert off.status == 503 and (await off.json())["error"] == "timeline_disabled"
            assert "HERALD_ADMIN_TOKEN" in (await off.json())["detail"]
        assert (await client.get("/health")).status == 200  # probes and metrics need no token


def test_admin__bearer_comparison() -> None:
    token = SecretStr(TOKEN)
    assert bearer_matches(f"Bearer {TOKEN}", token) and bearer_matches(f"bearer  {TOKEN} ", token)
    for header in (None, "", "Bearer", f"Bearer {TOKEN[:-1]}", f"Token {TOKEN}", "Bearer \udcff"):
        assert not bearer_matches(header, token), header


def test_settings__admin_token_blank_is_unset_and_production_refuses_a_weak_one(tmp_path: Path) -> None:
    assert Settings(admin_token="  ").admin_token is None
    assert Settings().timeline_retention == timedelta(days=7)
    strong = "k3Jq9v" + "Zr7Tn2Wx" * 4
    base: dict[str, Any] = dict(env="production", secret=strong)
    assert Settings(**base).admin_token is None  # the timeline is optional: unset is not refused
    assert Settings(**base, admin_token=strong + "A").admin_token is not None
    with pytest.raises(ValidationError, match="HERALD_ADMIN_TOKEN is too weak"):
        Settings(**base, admin_token="letmein")


# --- herald trace -------------------------------------------------------------------------------------------------

def test_trace__prints_one_row_per_status_that_fits_the_terminal(index: TimelineIndex) -> None:
    feed(index, [status("msg-1", Status.ACCEPTED, NOW, event_id="evt-1", event_type="order.confirmed",
                        channel="email"),
                 status("msg-1", Status.RETRYING, NOW + timedelta(seconds=1), channel="email", provider="smtp",
                        attempt=1, error="provider_unavailable", detail="421 try later " * 8)])
    console = Console(width=80, record=True, color_system=None)
    found = index.message("msg-1")
    assert found is not None
    print_timelines([found], console)
    text = console.export_text()
    assert "msg-1 order.confirmed event evt-1" in text
    assert "2026-11-24 10:00:00.000" in text and "2026-11-24 10:00:01.000" in text
    assert "provider_unavailable:" in text and "421 try later" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    rows = [line for line in text.splitlines() if "2026-11-24" in line]
    assert ["accepted" in rows[0], "retrying" in rows[1], "smtp" in rows[1]] == [True, True, True]


def test_trace__since_accepts_durations_and_refuses_the_rest() -> None:
    assert parse_since("30m") == timedelta(minutes=30) and parse_since("7d") == timedelta(days=7)
    assert parse_since("3600") == timedelta(hours=1)
    for bad in ("0d", "week", "-1h"):
        with pytest.raises(Exception, match="not a duration"):
            parse_since(bad)


@pytest.mark.parametrize("args", [[], ["msg-1", "--event", "evt-1"], ["--tenant", "acme", "msg-1"]])
def test_trace__needs_exactly_one_of_id_event_or_key(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["trace", *args])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "error:" in result.output


def test_index__the_console_columns_are_copied_from_each_status(index: TimelineIndex) -> None:
    feed(index, [status("msg-1", Status.SENT, event_type="order.confirmed", channel="email", locale="es",
                        provider="smtp", recipient="sha256:abc", tenant="acme")])
    assert index.query("SELECT recipient, event_type, channel, status, locale, provider, tenant FROM statuses") == [
        ("sha256:abc", "order.confirmed", "email", "sent", "es", "smtp", "acme")]


def test_index__a_file_of_the_older_schema_is_emptied_and_read_again(tmp_path: Path) -> None:
    import sqlite3
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE statuses (partition INTEGER, offset INTEGER, message_id TEXT, event_id TEXT, "
                      "tenant TEXT, at REAL, value BLOB, PRIMARY KEY (partition, offset));"
                      "CREATE TABLE positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);"
                      "INSERT INTO positions VALUES (0, 42);")
    old.close()
    db = TimelineIndex(path)
    try:
        assert db.position(0) is None  # read again from the topic, so the new columns are filled
        feed(db, [status("msg-1", Status.SENT, channel="sms")])
        assert db.query("SELECT channel FROM statuses") == [("sms",)]
    finally:
        db.close()


async def test_reader__listeners_hear_each_indexed_batch_and_a_failing_one_stops_nothing(tmp_path: Path) -> None:
    reader = StatusTimeline("t.status", {}, tmp_path / "t.sqlite", retention=timedelta(days=1))
    heard: list[list[bytes]] = []

    def broken(values: list[bytes]) -> None:
        raise RuntimeError("listener bug")

    reader.listeners += [broken, heard.append]
    reader._tell([b"one", b"two"])
    assert heard == [[b"one", b"two"]]
