"""Digests (catalog `digest`): events collected per recipient and key, one message when the window closes or the
digest fills, crash-safe through the store and the dedupe at the door (consumers/pipeline/digests.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from consumers.cli.publish import make_event
from consumers.observe.metrics import Metrics
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.digests import DIGEST_SOURCE, Digests, digest_message, install_digests
from consumers.pipeline.ingest import IngestStage
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import PENDING_ACKS, Record
from consumers.pipeline.router import Router, check_event
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.status import StatusEmitter
from consumers.state.digests import Collected, DigestStore, OpenDigest
from consumers.state.erasure import forget
from consumers.state.kvstore import MemoryStore
from consumers.state.stores import PARTITIONED, State
from schemas.catalog import Catalog, CatalogEntry
from schemas.events import CloudEvent
from schemas.status import FINAL_STATUSES, Status
from tests.fakes import FakeClock, RecordingPublisher, Sent

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ANA = {"id": "user-42", "email": "ana@example.com", "name": "Ana"}
BEN = {"id": "user-7", "email": "ben@example.com"}
COMMENT: dict[str, Any] = {"category": "transactional", "priority": "normal", "channels": ["email"], "ttl": "1d",
           "quiet_hours": "ignore", "required": ["thread_id", "author", "excerpt"],
           "digest": {"window": "1h", "max_events": 3, "max_bytes": 2048, "key": "thread_id"}}


def catalog(**digest: Any) -> Catalog:
    return Catalog.model_validate({"types": {"comment.posted": {**COMMENT, "digest": {**COMMENT["digest"],
                                                                                      **digest}}}})


def comment(author: str, thread: str = "T-1", excerpt: str = "hello") -> dict[str, str]:
    return {"thread_id": thread, "author": author, "excerpt": excerpt}


@dataclass
class Rig:
    ingest: IngestStage
    digests: Digests
    publisher: RecordingPublisher
    store: MemoryStore
    dedupe: MemoryStore
    clock: FakeClock[datetime]
    offset: int = 0

    async def publish(self, payload: Mapping[str, Any], to: Mapping[str, Any] = ANA, **extensions: Any) -> None:
        """One event of the digest type through the ingest stage, as the `route_events` agent hands it over."""
        event = make_event("comment.posted", to, payload, source="test", **extensions)
        event["time"] = self.clock().isoformat()
        await self.handle(orjson.dumps(event), str(to["id"]).encode())

    async def handle(self, value: bytes, key: bytes) -> None:
        self.offset += 1
        await self.ingest.handle(Record(topic="herald.events", partition=0, offset=self.offset, key=key,
                                        value=value, headers={}, timestamp=None))

    def messages(self) -> list[dict[str, Any]]:
        """The digest messages published to herald.events."""
        return self.publisher.json("events")

    async def route_messages(self) -> None:
        """Feed the digest messages back to the ingest stage, as Kafka would."""
        for sent in self.publisher.on("events"):
            await self.handle(sent.value, sent.key or b"")

    def statuses(self, status: Status) -> list[Any]:
        return [s for s in self.publisher.statuses() if s.status is status]


def rig(cat: Catalog | None = None, *, store: MemoryStore | None = None, dedupe: MemoryStore | None = None,
        publisher: RecordingPublisher | None = None, clock: FakeClock[datetime] | None = None) -> Rig:
    clock = clock or FakeClock(NOW)
    publisher = publisher or RecordingPublisher()
    store, dedupe = store or MemoryStore(), dedupe or MemoryStore()
    metrics = Metrics()
    statuses = StatusEmitter(publisher, metrics, b"secret", clock)
    router = Router(cat or catalog(), ("email",), clock=clock, dedupe=dedupe)
    ingest = IngestStage(router, Outlets(publisher, statuses, DeadLetters(publisher, metrics, statuses), metrics),
                         Scheduler(MemoryStore(), publisher, statuses, clock=clock))
    tasks: list[object] = []
    digests = install_digests(tasks.append, ingest, store, ready=lambda: asyncio.sleep(0), interval=0.5)
    assert len(tasks) == 1  # the closing loop, for the worker to run
    return Rig(ingest, digests, publisher, store, dedupe, clock)


# --- collecting -------------------------------------------------------------------------------------------------


async def test_digests__events_are_collected_not_sent_each_gets_accepted_then_digested() -> None:
    r = rig()
    await r.publish(comment("Marta"))
    await r.publish(comment("Jonas"))
    assert r.publisher.on("dispatch.email") == [] and r.messages() == []
    [(_, raw)] = list(r.store.items())
    digest = OpenDigest.model_validate_json(raw)
    assert [p["author"] for p in digest.payloads()] == ["Marta", "Jonas"]
    assert (digest.opened_at, digest.due_at) == (NOW, NOW + timedelta(hours=1))
    statuses = r.publisher.statuses()
    assert [s.status for s in statuses] == [Status.ACCEPTED, Status.DIGESTED] * 2
    assert {s.detail for s in r.statuses(Status.DIGESTED)} == {f"digest:{digest.id}"}
    assert all(s.channel is None and s.recipient is None for s in statuses)  # about the event: no address
    assert Status.DIGESTED in FINAL_STATUSES  # nothing more is sent under the event's own id


async def test_digests__a_replayed_event_is_deduplicated_at_the_door_and_collected_once() -> None:
    r = rig()
    event = make_event("comment.posted", ANA, comment("Marta"), source="test", idempotencykey="c-1")
    event["time"] = NOW.isoformat()
    await r.handle(orjson.dumps(event), b"user-42")
    await r.handle(orjson.dumps(event), b"user-42")  # redelivered after a crash
    assert len(OpenDigest.model_validate_json(next(r.store.items())[1]).events) == 1
    assert [s.status for s in r.publisher.statuses()][-1] is Status.DEDUPLICATED


async def test_digests__an_event_replayed_before_its_dedupe_key_was_written_joins_its_digest_once() -> None:
    r = rig()
    await r.publish(comment("Marta"), idempotencykey="c-1")
    r.dedupe.data.clear()  # the crash fell between the digest's write and the dedupe key's
    await r.publish(comment("Marta"), idempotencykey="c-1")
    assert len(OpenDigest.model_validate_json(next(r.store.items())[1]).events) == 1


async def test_digests__an_event_without_any_address_is_rejected_not_collected() -> None:
    r = rig()
    await r.publish(comment("Marta"), to={"id": "user-9"})
    assert list(r.store.items()) == []
    assert [s.error for s in r.statuses(Status.REJECTED)] == ["no_channel"]


# --- closing ----------------------------------------------------------------------------------------------------


async def test_digests__the_event_that_reaches_max_events_closes_the_digest_at_once() -> None:
    r = rig()
    for author in ("Marta", "Jonas", "Lucía"):
        await r.publish(comment(author))
    [message] = r.messages()
    assert message["data"]["payload"]["count"] == 3
    assert [e["author"] for e in message["data"]["payload"]["events"]] == ["Marta", "Jonas", "Lucía"]
    assert list(r.store.items()) == []  # deleted once its message is out
    await r.publish(comment("Emma"))  # the next one opens a new digest
    assert len(list(r.store.items())) == 1 and len(r.messages()) == 1


async def test_digests__a_digest_closes_when_its_window_passes_and_not_before() -> None:
    r = rig()
    await r.publish(comment("Marta"))
    r.clock.advance(minutes=30)
    await r.publish(comment("Jonas"))
    r.clock.advance(minutes=29, seconds=59)
    assert await r.digests.close_ready() == 0 and r.messages() == []
    r.clock.advance(seconds=1)
    assert await r.digests.close_ready() == 1
    [message] = r.messages()
    assert message["data"]["payload"]["count"] == 2
    assert message["time"] == (NOW + timedelta(hours=1)).isoformat()  # the window's end, the same after a restart
    assert list(r.store.items()) == []
    assert await r.digests.close_ready() == 0


async def test_digests__one_digest_per_key_value_and_per_recipient() -> None:
    r = rig()
    await r.publish(comment("Marta", thread="T-1"))
    await r.publish(comment("Jonas", thread="T-2"))
    await r.publish(comment("Lucía", thread="T-1"))
    await r.publish(comment("Emma", thread="T-1"), to=BEN)
    assert len(list(r.store.items())) == 3
    r.clock.advance(hours=1)
    assert await r.digests.close_ready() == 3
    by = {(m["subject"], m["data"]["payload"]["events"][0]["thread_id"]): m["data"]["payload"]["count"]
          for m in r.messages()}
    assert by == {("user-42", "T-1"): 2, ("user-42", "T-2"): 1, ("user-7", "T-1"): 1}


async def test_digests__without_a_key_one_digest_per_recipient() -> None:
    cat = Catalog.model_validate({"types": {"comment.posted": {**COMMENT, "digest": {"window": "1h"}}}})
    r = rig(cat)
    await r.publish(comment("Marta", thread="T-1"))
    await r.publish(comment("Jonas", thread="T-2"))
    assert len(list(r.store.items())) == 1


async def test_digests__an_event_past_the_byte_cap_sends_the_open_digest_and_opens_the_next() -> None:
    r = rig(catalog(max_bytes=1024, max_events=50))
    await r.publish(comment("Marta", excerpt="a" * 400))
    await r.publish(comment("Jonas", excerpt="b" * 400))
    assert r.messages() == []
    await r.publish(comment("Lucía", excerpt="c" * 400))  # would make it past 1,024 bytes
    [message] = r.messages()
    assert [e["author"] for e in message["data"]["payload"]["events"]] == ["Marta", "Jonas"]
    [(_, raw)] = list(r.store.items())
    assert [p["author"] for p in OpenDigest.model_validate_json(raw).payloads()] == ["Lucía"]


async def test_digests__an_event_alone_past_the_byte_cap_is_sent_at_once_as_a_digest_of_one() -> None:
    r = rig(catalog(max_bytes=1024, max_events=50))
    await r.publish(comment("Marta", excerpt="a" * 2000))
    [message] = r.messages()
    assert message["data"]["payload"]["count"] == 1 and list(r.store.items()) == []


# --- the digest's message ---------------------------------------------------------------------------------------


async def test_digests__the_message_is_routed_as_an_event_of_the_type_with_events_and_count() -> None:
    r = rig()
    for author in ("Marta", "Jonas", "Lucía"):
        await r.publish(comment(author), to={**ANA, "email": f"ana+{author.lower()}@example.com"})
    [message] = r.messages()
    assert message["source"] == DIGEST_SOURCE and message["type"] == "comment.posted"
    assert message["idempotencykey"] == f"digest:{message['id']}"
    assert message["data"]["to"]["email"] == "ana+lucía@example.com"  # the latest event's addresses
    await r.route_messages()
    [dispatch] = r.publisher.json("dispatch.email")
    assert dispatch["payload"] == {"events": [comment(a) for a in ("Marta", "Jonas", "Lucía")], "count": 3}
    assert dispatch["event_id"] == message["id"]
    accepted = [s for s in r.statuses(Status.ACCEPTED) if s.channel == "email"]
    assert [s.message_id for s in accepted] == [dispatch["message_id"]]  # its own message id and statuses


async def test_digests__the_message_goes_through_policy_like_any_event_of_the_type() -> None:
    r = rig()
    r.ingest.router.consent = lambda *args, **kwargs: "opted_out"
    for author in ("Marta", "Jonas", "Lucía"):
        await r.publish(comment(author))
    await r.route_messages()
    assert r.publisher.on("dispatch.email") == []
    assert [s.detail for s in r.statuses(Status.SUPPRESSED)] == ["opted_out"]


async def test_digests__a_digest_message_lacking_a_required_field_in_one_event_is_rejected() -> None:
    digest = OpenDigest(id="dig-1", tenant=None, event_type="comment.posted", to=ANA, opened_at=NOW,
                        due_at=NOW, max_events=3, max_bytes=2048)
    for payload in (comment("Marta"), {"thread_id": "T-1", "author": "Jonas"}):
        digest = digest.add(_collected(payload), digest.to)
    event = CloudEvent.model_validate(digest_message(digest, NOW))
    rejection = check_event(event, catalog(), now=NOW, max_ahead=timedelta(days=1))
    assert not isinstance(rejection, CatalogEntry) and rejection.detail == "payload lacks excerpt"


def _collected(payload: dict[str, Any]) -> Collected:
    return Collected(key=payload["author"], event_id="e", payload=payload, size=len(orjson.dumps(payload)))


async def test_digests__an_event_of_the_type_from_elsewhere_is_collected_even_with_events_in_its_payload() -> None:
    r = rig()
    await r.publish({**comment("Marta"), "events": [1, 2]})
    assert r.messages() == [] and len(list(r.store.items())) == 1


# --- crash safety -----------------------------------------------------------------------------------------------


async def test_digests__a_crash_between_message_and_delete_sends_once_the_second_is_deduplicated() -> None:
    class CrashOnDelete(MemoryStore):
        crash = True

        async def delete(self, key: str, *, partition: int | None = None) -> None:
            if self.crash:
                raise RuntimeError("SIGKILL")
            await super().delete(key, partition=partition)

    store, dedupe, publisher, clock = CrashOnDelete(), MemoryStore(), RecordingPublisher(), FakeClock(NOW)
    first = rig(store=store, dedupe=dedupe, publisher=publisher, clock=clock)
    await first.publish(comment("Marta"))
    await first.publish(comment("Jonas"))
    clock.advance(hours=1)
    with pytest.raises(RuntimeError):
        await first.digests.close_ready()  # the message is out; the worker dies before the delete
    store.crash = False
    restarted = rig(store=store, dedupe=dedupe, publisher=publisher, clock=clock)  # same store, new worker
    assert await restarted.digests.close_ready() == 1
    one, two = restarted.messages()
    assert one == two  # the same id, idempotency key and time: a window-closed digest closes the same way twice
    await restarted.route_messages()
    assert len(publisher.on("dispatch.email")) == 1
    assert [s.detail for s in restarted.statuses(Status.DEDUPLICATED)] == ["idempotency_key"]


async def test_digests__a_restarted_worker_closes_the_digests_left_in_the_store() -> None:
    store, dedupe, clock = MemoryStore(), MemoryStore(), FakeClock(NOW)
    await rig(store=store, dedupe=dedupe, clock=clock).publish(comment("Marta"))
    clock.advance(hours=2)  # the worker was down past the window
    restarted = rig(store=store, dedupe=dedupe, clock=clock)
    assert await restarted.digests.close_ready() == 1
    [message] = restarted.messages()
    assert message["data"]["payload"]["events"] == [comment("Marta")]


async def test_digests__a_full_digest_left_behind_by_a_crash_is_closed_by_the_loop() -> None:
    r = rig()
    digest = OpenDigest(id="dig-9", tenant=None, event_type="comment.posted", to=ANA, opened_at=NOW,
                        due_at=NOW + timedelta(hours=1), max_events=1, max_bytes=2048)
    await DigestStore(r.store).put("slot", digest.add(_collected(comment("Marta")), digest.to))
    assert await r.digests.close_ready() == 1 and r.messages()[0]["time"] == NOW.isoformat()


async def test_digests__the_message_is_acknowledged_before_the_delete_even_inside_a_batch() -> None:
    class Watching(RecordingPublisher):
        deferred: list[bool]

        async def send(self, topic: str, key: bytes | None, value: bytes,
                       headers: Mapping[str, bytes] | None = None, *, durable: bool = False) -> None:
            if topic == "events":  # FaustPublisher awaits the acknowledgement itself when no batch collects it
                self.deferred.append(PENDING_ACKS.get() is not None)
            self.records.append(Sent(topic, key, value, dict(headers or {})))

    publisher = Watching()
    publisher.deferred = []
    r = rig(publisher=publisher)
    token = PENDING_ACKS.set([])
    try:
        for author in ("Marta", "Jonas", "Lucía"):
            await r.publish(comment(author))
    finally:
        PENDING_ACKS.reset(token)
    assert publisher.deferred == [False]


async def test_digests__a_message_the_broker_refuses_leaves_the_digest_to_close_later() -> None:
    class Refusing(RecordingPublisher):
        refuse = True

        async def send(self, topic: str, key: bytes | None, value: bytes,
                       headers: Mapping[str, bytes] | None = None, *, durable: bool = False) -> None:
            if topic == "events" and self.refuse:
                raise ConnectionError("broker gone")
            await super().send(topic, key, value, headers, durable=durable)

    publisher = Refusing()
    r = rig(publisher=publisher)
    await r.publish(comment("Marta"))
    r.clock.advance(hours=1)
    with pytest.raises(ConnectionError):
        await r.digests.close_ready()
    assert len(list(r.store.items())) == 1
    publisher.refuse = False
    assert await r.digests.close_ready() == 1


# --- stores, erasure, wiring ----------------------------------------------------------------------------------------


async def test_erasure__forgetting_a_person_drops_their_open_digests() -> None:
    assert "digests" in PARTITIONED  # co-partitioned with the events, like schedules
    r = rig()
    await r.publish(comment("Marta"))
    await r.publish(comment("Emma"), to=BEN)
    state = State.in_memory()
    state.digests = r.store
    result = await forget(state.named(), "user-42", secret=b"secret")
    assert result.deleted["digests"] == 1
    assert [OpenDigest.model_validate_json(v).to.id for _, v in r.store.items()] == ["user-7"]


async def test_ingest__a_digest_type_without_digests_installed_is_an_error_not_a_send() -> None:
    r = rig()
    publisher, metrics = RecordingPublisher(), Metrics()
    statuses = StatusEmitter(publisher, metrics, b"secret", lambda: NOW)
    bare = IngestStage(r.ingest.router, Outlets(publisher, statuses, DeadLetters(publisher, metrics, statuses),
                                                metrics), Scheduler(MemoryStore(), publisher, statuses, clock=r.clock))
    event = make_event("comment.posted", ANA, comment("Marta"), source="test")
    event["time"] = NOW.isoformat()
    with pytest.raises(RuntimeError, match="install_digests"):
        await bare.handle(Record("herald.events", 0, 0, b"user-42", orjson.dumps(event)))
    assert publisher.on("dispatch.email") == []
