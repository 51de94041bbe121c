"""The console's dead letters: the list, one inspected with its payload scrubbed (nothing personal unless
HERALD_CONSOLE_PERSONAL_DATA), and a replay that sends the confirmed positions once, never twice."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from consumers.cli.publish import make_event
from consumers.console.replays import EXTRAS_KEY, DeadLetterDesk, replay_positions
from consumers.console.scrub import scrubbed
from consumers.dev.samples import ANA, JONAS
from consumers.observe.metrics import Metrics
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.deadletter_replay import (
    DeadLetter,
    DeadLetterTail,
    Replayed,
    dead_letter_from,
    plan_replay,
)
from consumers.pipeline.records import Record
from tests.fakes import RecordingPublisher
from tests.unit.test_console_auth import TOKEN, client_for, console_context

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


async def stored(offset: int, value: bytes, *, reason: str = "unknown_type", stage: str = "router",
                 topic: str = "herald.events", key: bytes | None = b"user-ana", partition: int = 0,
                 limit: int = 65_536) -> DeadLetter:
    """A dead letter as the pipeline writes it and the console reads it back."""
    publisher = RecordingPublisher()
    await DeadLetters(publisher, Metrics(), max_record_bytes=limit).send(
        Record(topic=topic, partition=2, offset=40 + offset, key=key, value=value), reason=reason,
        detail="unknown event type pizza.delivered", stage=stage)
    [sent] = publisher.on("deadletter")
    headers = {k: v.decode(errors="replace") for k, v in sent.headers.items()}
    at_ms = int((T0 + timedelta(minutes=offset)).timestamp() * 1000)
    return dead_letter_from(partition, offset, at_ms, sent.key, sent.value, headers)


def pizza() -> bytes:
    return orjson.dumps(make_event("pizza.delivered", ANA, {"order_id": "1002", "code": "493817"},
                                   source="herald/demo", tenant="demo"))


class FakeDeadLetters:
    """The dead-letter topic in memory; `republish` records what it was asked to send."""

    def __init__(self, letters: Sequence[DeadLetter], *, fail_after: int | None = None,
                 unreachable: bool = False) -> None:
        self.letters = list(letters)
        self.sent: list[list[str]] = []
        self.fail_after = fail_after
        self.unreachable = unreachable

    async def tail(self, newest: int) -> DeadLetterTail:
        if self.unreachable:
            raise TimeoutError
        ordered = sorted(self.letters, key=lambda d: (d.at, d.partition, d.offset), reverse=True)
        return DeadLetterTail(ordered[:newest], len(self.letters))

    async def one(self, partition: int, offset: int) -> DeadLetter | None:
        return next((d for d in self.letters if (d.partition, d.offset) == (partition, offset)), None)

    async def republish(self, letters: Sequence[DeadLetter], sent: list[Replayed]) -> None:
        self.sent.append([d.where for d in letters])
        for i, d in enumerate(letters):
            await asyncio.sleep(0.01)  # a broker round trip: a second submit arrives meanwhile
            if self.fail_after is not None and i >= self.fail_after:
                raise ConnectionError("broker went away")
            sent.append(Replayed(d.where, d.source_topic, 1, 500 + i))

    @property
    def published(self) -> list[str]:
        return [where for batch in self.sent for where in batch]


# --- scrubbing --------------------------------------------------------------------------------------------------

SCRUB_CASES: list[tuple[str, dict[str, Any], list[str], list[str]]] = [
    ("email", {"data": {"to": {"email": "ana@example.com"}}}, ['"email": \u2039string, 15 chars\u203a'],
     ["ana@example.com", "example"]),
    ("phone", {"data": {"to": {"phone": "+34600111222"}}}, ['"phone": \u2039string, 12 chars\u203a'],
     ["+34600111222", "600111222"]),
    ("name", {"data": {"to": {"name": "Ana Beltrán"}}}, ['"name": \u2039string, 11 chars\u203a'], ["Ana", "Beltr"]),
    ("code", {"data": {"payload": {"code": "493817"}}}, ['"code": \u2039string, 6 chars\u203a'], ["493817"]),
    ("url", {"data": {"payload": {"reset_url": "https://shop.example/reset?t=abc"}}},
     ['"reset_url": \u2039string, 32 chars\u203a'], ["https://", "shop.example", "t=abc"]),
    ("nested lists of objects", {"data": {"payload": {"items": [{"sku": "p-1", "qty": 2, "note": "ring twice"}]}}},
     ['[  // 1 item', '"sku": \u2039string, 3 chars\u203a', '"qty": \u2039integer\u203a'], ["ring twice", "p-1"]),
    ("free text and numbers", {"data": {"payload": {"comment": "call me", "total": 59.9, "paid": "59.90",
                                                    "vip": True, "gift": None}}},
     ['"total": \u2039number\u203a', '"paid": \u2039string, 5 chars\u203a', '"vip": \u2039boolean\u203a',
      '"gift": \u2039null\u203a'], ["call me", "59.9"]),
    ("ids, type, tenant and times kept", {"id": "evt-81ac", "type": "order.confirmed", "tenant": "acme",
                                          "time": "2026-11-24T10:00:00Z", "subject": "user-42",
                                          "data": {"to": {"id": "user-42"}, "payload": {
                                              "order_id": "1001", "appointment_at": "2026-12-01T09:30:00+01:00",
                                              "customerId": 77, "type": "premium"}}},
     ['"id": "evt-81ac"', '"type": "order.confirmed"', '"tenant": "acme"', '"time": "2026-11-24T10:00:00Z"',
      '"subject": "user-42"', '"order_id": "1001"', '"appointment_at": "2026-12-01T09:30:00+01:00"',
      '"customerId": 77', '"type": \u2039string, 7 chars\u203a'], ["premium"]),
    ("an id that is an address, a number or a link", {"subject": "ana@example.com", "data": {"to": {
        "id": "+34 600 111 222"}, "payload": {"profile_id": "https://example.com/u/9"}}},
     ['"subject": \u2039string, 15 chars\u203a', '"id": \u2039string, 15 chars\u203a'],
     ["ana@example.com", "600 111", "example.com/u"]),
    ("a time field that is not a time", {"data": {"payload": {"deliver_at": "after the match"}}},
     ['"deliver_at": \u2039string, 15 chars\u203a'], ["match"]),
    ("a key that is itself an address", {"data": {"payload": {"ana@example.com": 1}}},
     ['\u2039key, 15 chars\u203a: \u2039integer\u203a'], ["ana@example.com"]),
]


@pytest.mark.parametrize(("doc", "shown", "hidden"), [c[1:] for c in SCRUB_CASES], ids=[c[0] for c in SCRUB_CASES])
def test_scrub__values_become_their_type_and_length_except_ids_type_tenant_and_times(
        doc: dict[str, Any], shown: list[str], hidden: list[str]) -> None:
    text = "\n".join(scrubbed(orjson.dumps(doc)))
    for piece in shown:
        assert piece in text, text
    for piece in hidden:
        assert piece not in text, text


def test_scrub__bytes_that_are_not_json_show_only_their_size() -> None:
    assert scrubbed(b"{not json ana@example.com") == ["\u2039not JSON, 25 bytes\u203a"]


# --- the replay plan --------------------------------------------------------------------------------------------

async def test_replay_plan__refuses_positions_already_replayed_and_sends_the_rest() -> None:
    letters = [await stored(1, pizza()), await stored(2, pizza()), await stored(3, b"v" * 70_000, limit=65_536)]
    plan = plan_replay(letters, offsets={"0/1", "0/2", "0/3"}, reason=None, everything=False,
                       replayed={"0/1": "at 10:00 to herald.events"})
    assert [d.where for d in plan.send] == ["0/2"]
    assert [(d.where, why.split(":")[0]) for d, why in plan.refused] == [
        ("0/1", "already replayed (at 10"), ("0/3", "stored truncated from 70,000 bytes")]


async def test_replay_positions__sends_only_the_exact_positions_and_records_where_they_went() -> None:
    source = FakeDeadLetters([await stored(1, pizza()), await stored(2, pizza()), await stored(3, pizza())])
    desk = DeadLetterDesk(source)
    batch = await replay_positions(desk, {"0/3", "0/1", "0/9"}, T0)
    assert source.published == ["0/3", "0/1"]  # newest first, as the tail reads them
    assert [(r.where, r.to) for r in batch.sent] == [("0/3", "herald.events (partition 1, offset 500)"),
                                                   ("0/1", "herald.events (partition 1, offset 501)")]
    assert batch.missing == ["0/9"] and batch.topics == {"herald.events": 2}
    assert desk.ledger.replayed["0/1"].startswith("at 2026-11-24 10:00:00 UTC to herald.events")


async def test_replay_positions__a_replay_that_breaks_off_leaves_the_unsent_ones_replayable() -> None:
    source = FakeDeadLetters([await stored(1, pizza()), await stored(2, pizza())], fail_after=1)
    desk = DeadLetterDesk(source)
    batch = await replay_positions(desk, {"0/1", "0/2"}, T0)
    assert [r.where for r in batch.sent] == ["0/2"]
    assert batch.error is not None and "ConnectionError" in batch.error
    assert set(desk.ledger.replayed) == {"0/2"}
    source.fail_after = None
    again = await replay_positions(desk, {"0/1", "0/2"}, T0)
    assert [r.where for r in again.sent] == ["0/1"]
    assert [where for where, _ in again.refused] == ["0/2"]


# --- the pages ----------------------------------------------------------------------------------------------------

@pytest.fixture
async def letters() -> list[DeadLetter]:
    return [await stored(1, pizza()),
            await stored(2, orjson.dumps(make_event("order.confirmed", JONAS, {"order_id": "1002"})),
                         reason="missing_payload_field", key=b"user-jonas"),
            await stored(3, b"{not json", reason="invalid_json"),
            await stored(4, b"{}", reason="provider_rejected", stage="delivery", topic="herald.dispatch.email",
                         partition=1)]


async def signed_in(tmp_path: Path, source: FakeDeadLetters, **settings: Any
                    ) -> TestClient[web.Request, web.Application]:
    ctx = console_context(tmp_path)
    ctx.settings = ctx.settings.model_copy(update=settings)
    ctx.extras[EXTRAS_KEY] = DeadLetterDesk(source)
    client = await client_for(ctx)
    await client.post("/console/login", data={"token": TOKEN})
    return client


@pytest.fixture
async def source(letters: list[DeadLetter]) -> FakeDeadLetters:
    return FakeDeadLetters(letters)


@pytest.fixture
async def client(tmp_path: Path, source: FakeDeadLetters) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    c = await signed_in(tmp_path, source)
    yield c
    await c.close()


def positions(html: str) -> list[str]:
    return re.findall(r'<tr data-letter="([^"]+)"', html)


async def test_dead_letters_page__lists_the_newest_first_with_reason_stage_and_source(client: TestClient) -> None:
    html = await (await client.get("/console/dead-letters")).text()
    assert positions(html) == ["1/4", "0/3", "0/2", "0/1"]
    assert "4 dead letters, newest first" in html
    assert "herald.dispatch.email/2@44" in html and "provider_rejected" in html and "delivery" in html


async def test_dead_letters_page__filters_by_reason_and_by_stage(client: TestClient) -> None:
    assert positions(await (await client.get("/console/dead-letters?reason=invalid_json")).text()) == ["0/3"]
    assert positions(await (await client.get("/console/dead-letters?stage=router")).text()) == ["0/3", "0/2", "0/1"]
    assert positions(await (await client.get("/console/dead-letters?stage=router&reason=nope")).text()) == []


async def test_dead_letters_page__pages_of_fifty_and_says_when_the_topic_holds_more_than_it_reads(
        tmp_path: Path) -> None:
    many = [await stored(i, b"{}") for i in range(60)]
    source = FakeDeadLetters(many)
    source.tail = lambda newest: _tail_of(many, 10_500)  # type: ignore[method-assign]
    c = await signed_in(tmp_path, source)
    try:
        first = await (await c.get("/console/dead-letters")).text()
        second = await (await c.get("/console/dead-letters?page=2")).text()
        assert len(positions(first)) == 50 and positions(second) == [f"0/{i}" for i in range(9, -1, -1)]
        assert "Only the newest 10,000 of the topic's 10,500 records are read" in first
    finally:
        await c.close()


async def _tail_of(letters: list[DeadLetter], total: int) -> DeadLetterTail:
    return DeadLetterTail(sorted(letters, key=lambda d: d.at, reverse=True), total)


async def test_dead_letter_page__shows_headers_and_no_address_number_name_or_code(client: TestClient) -> None:
    response = await client.get("/console/dead-letters/0/1")
    html = await response.text()
    assert response.status == 200
    for personal in ("ana@example.com", "+34600111222", "600111222", "Ana", "493817"):
        assert personal not in html
    assert "herald-source-topic" in html and "herald.events" in html and "unknown_type" in html
    assert "&#34;type&#34;: &#34;pizza.delivered&#34;" in html or '"type": "pizza.delivered"' in html
    assert "user-ana" in html  # the key: a recipient id


async def test_dead_letter_page__shows_the_payload_as_stored_when_personal_data_is_allowed(
        tmp_path: Path, source: FakeDeadLetters) -> None:
    c = await signed_in(tmp_path, source, console_personal_data=True)
    try:
        assert "ana@example.com" in await (await c.get("/console/dead-letters/0/1")).text()
    finally:
        await c.close()


async def test_dead_letter_page__404_for_a_position_with_no_record(client: TestClient) -> None:
    assert (await client.get("/console/dead-letters/0/99")).status == 404


async def test_dead_letters_page__says_so_when_the_topic_cannot_be_read(tmp_path: Path) -> None:
    c = await signed_in(tmp_path, FakeDeadLetters([], unreachable=True))
    try:
        response = await c.get("/console/dead-letters")
        assert response.status == 503 and "could not be read" in await response.text()
    finally:
        await c.close()


def hidden_letters(html: str) -> list[str]:
    return re.findall(r'<input type="hidden" name="letter" value="([^"]+)">', html)


def csrf_of(html: str) -> str:
    found = re.search(r'<input type="hidden" name="csrf" value="([^"]+)">', html)
    assert found is not None
    return found.group(1)


async def test_confirm_page__lists_exactly_what_goes_where_and_sends_nothing(
        client: TestClient, source: FakeDeadLetters) -> None:
    html = await (await client.get("/console/dead-letters/confirm?letter=0/1&letter=1/4&letter=0/77")).text()
    assert sorted(hidden_letters(html)) == ["0/1", "1/4"]
    assert "2 dead letters will be sent back" in html
    assert "1 to <code>herald.dispatch.email</code>" in html and "1 to <code>herald.events</code>" in html
    assert "No dead letter at <span class=\"mono\">0/77</span>" in html
    assert source.sent == []


async def test_confirm_page__all_with_a_reason_becomes_the_exact_positions(
        client: TestClient, source: FakeDeadLetters) -> None:
    html = await (await client.get("/console/dead-letters/confirm?all=reason&reason=unknown_type")).text()
    assert hidden_letters(html) == ["0/1"]
    source.letters.append(await stored(9, pizza()))  # a new one after the confirmation: not in this replay
    response = await client.post("/console/dead-letters/replay",
                                 data={"csrf": csrf_of(html), "letter": hidden_letters(html)})
    assert response.status == 200 and source.published == ["0/1"]


@pytest.mark.parametrize("csrf", [None, "", "forged-0123"])
async def test_replay__without_the_right_csrf_field_is_refused_and_sends_nothing(
        client: TestClient, source: FakeDeadLetters, csrf: str | None) -> None:
    data = {"letter": "0/1"} | ({"csrf": csrf} if csrf is not None else {})
    response = await client.post("/console/dead-letters/replay", data=data, allow_redirects=False)
    assert response.status == 403
    assert "nothing was replayed" in await response.text()
    assert source.sent == []


async def test_replay__redirects_to_a_result_page_that_says_how_many_went_back_where(
        client: TestClient, source: FakeDeadLetters) -> None:
    confirm = await (await client.get("/console/dead-letters/confirm?letter=0/2")).text()
    response = await client.post("/console/dead-letters/replay", allow_redirects=False,
                                 data={"csrf": csrf_of(confirm), "letter": hidden_letters(confirm)})
    assert response.status == 303
    assert response.headers["Location"].startswith("/console/dead-letters/replayed/")
    result = await (await client.get(response.headers["Location"])).text()
    assert "<strong>1 replayed</strong>" in result and "1 to <code>herald.events</code>" in result
    assert "herald.events (partition 1, offset 500)" in result
    listed = await (await client.get("/console/dead-letters")).text()
    assert re.search(r'data-letter="0/2".*?badge ok[^>]*>replayed<', listed, re.DOTALL)


async def test_replay__a_double_submit_publishes_once(client: TestClient, source: FakeDeadLetters) -> None:
    confirm = await (await client.get("/console/dead-letters/confirm?letter=0/1")).text()
    form = {"csrf": csrf_of(confirm), "letter": hidden_letters(confirm)}
    first, second = await asyncio.gather(client.post("/console/dead-letters/replay", data=form),
                                         client.post("/console/dead-letters/replay", data=form))
    third = await client.post("/console/dead-letters/replay", data=form)  # the form sent again later
    assert source.published == ["0/1"]
    texts = sorted([await first.text(), await second.text(), await third.text()],
                   key=lambda t: "<strong>1 replayed</strong>" in t)
    assert "<strong>1 replayed</strong>" in texts[2]
    for refused in texts[:2]:
        assert "<strong>0 replayed</strong>" in refused and "already replayed" in refused


async def test_replay__a_malformed_position_is_a_400(client: TestClient, source: FakeDeadLetters) -> None:
    confirm = await (await client.get("/console/dead-letters/confirm?letter=0/1")).text()
    response = await client.post("/console/dead-letters/replay", data={"csrf": csrf_of(confirm), "letter": "zero"})
    assert response.status == 400 and source.sent == []
