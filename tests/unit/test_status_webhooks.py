"""Outbound status webhooks, delivery side (consumers/pipeline/status_webhooks.py, status_outbox.py): the agent's
handler over in-memory stores, the outbox on simulated time, and receivers behind an `httpx.MockTransport`.
Signatures are checked with the Standard Webhooks algorithm written out here, apart from Herald's own code."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from channels.providers.webhook import WebhookSettings
from consumers.identity import KeyRing
from consumers.observe.metrics import Metrics
from consumers.pipeline.outcomes import guarded
from consumers.pipeline.records import Record
from consumers.pipeline.status_outbox import DEAD_LETTER_TOPIC, Outbox
from consumers.pipeline.status_webhooks import StatusWebhooks, webhook_id
from consumers.state.keyvalue import MemoryStore
from schemas.settings import Settings
from schemas.subscriptions import OutboxEntry, StatusWebhookRequest
from tests.fakes import FakeClock, RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ACME_URL = "https://93.184.216.34/hooks/status"  # a public address literal: the SSRF guard passes it without DNS
GLOBEX_URL = "https://93.184.216.35/globex"
TOPIC = "herald.status"
VECTOR = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "standardwebhooks" / "test_vector.json")
                    .read_text())

Reply = httpx.Response | Callable[[httpx.Request], Awaitable[httpx.Response]]


# --- the Standard Webhooks reference algorithm, independently of channels/signatures.py ----------------------------

def reference_verify(secret: str, headers: httpx.Headers, body: bytes) -> bool:
    """https://www.standardwebhooks.com: base64 HMAC-SHA256, keyed with the base64-decoded part after `whsec_`, of
    `{webhook-id}.{webhook-timestamp}.{body}`; `webhook-signature` is a space-separated list of `v1,<sig>`."""
    key = base64.b64decode(secret[len("whsec_"):])
    signed = headers["webhook-id"].encode() + b"." + headers["webhook-timestamp"].encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versioned = [part.split(",", 1) for part in headers["webhook-signature"].split(" ")]
    return any(version == "v1" and hmac.compare_digest(sig, expected) for version, sig in versioned)


def test_reference_verify__accepts_the_published_test_vector_and_nothing_else() -> None:
    headers = httpx.Headers({"webhook-id": VECTOR["msg_id"], "webhook-timestamp": str(VECTOR["timestamp"]),
                             "webhook-signature": VECTOR["signature"]})
    assert reference_verify(VECTOR["secret"], headers, VECTOR["body"].encode())
    assert not reference_verify(VECTOR["secret"], headers, VECTOR["body"].encode() + b" ")


# --- the rig -------------------------------------------------------------------------------------------------------

@dataclass
class Receiver:
    """Endpoints by host: each answers from its script (then 200), and keeps what it was sent."""

    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        script = self.scripts.get(request.headers["host"], [])
        reply = script.pop(0) if script else httpx.Response(200)
        return reply if isinstance(reply, httpx.Response) else await reply(request)

    def to(self, host: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.headers["host"] == host]


@dataclass
class Rig:
    hooks: StatusWebhooks
    receiver: Receiver
    publisher: RecordingPublisher
    clock: FakeClock[datetime]
    metrics: Metrics
    offsets: int = 0

    @property
    def outbox(self) -> Outbox:
        return self.hooks.outbox

    async def register(self, tenant: str, url: str, **filters: Any) -> str:
        _, secret = await self.hooks.registrations.put(tenant, StatusWebhookRequest(url=url, **filters))
        assert secret is not None
        return secret

    def record(self, tenant: str | None = "acme", status: str = "sent", event_type: str = "order.confirmed",
               *, offset: int | None = None, message_id: str = "msg-1") -> Record:
        if offset is None:
            self.offsets += 1
            offset = self.offsets
        value = orjson.dumps({"schema_version": "1", "message_id": message_id, "event_id": "evt-1",
                              "event_type": event_type, "tenant": tenant, "channel": "email", "status": status,
                              "attempt": 1, "recipient": "sha256:ab", "at": NOW.isoformat(), "detail": "ñ"})
        return Record(topic=TOPIC, partition=1, offset=offset, key=message_id.encode(), value=value,
                      timestamp=NOW.timestamp())

    async def settle(self) -> None:
        """Start what is due and wait for it (twice: a delivery may make another one due at once)."""
        for _ in range(2):
            self.outbox.pump()
            await self.outbox.drain()

    def dead_letters(self) -> list[dict[str, str]]:
        return [{k: v.decode() for k, v in r.headers.items()} for r in self.publisher.on(DEAD_LETTER_TOPIC)]

    def count(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def make_rig(*, store: MemoryStore | None = None, outbox: MemoryStore | None = None, receiver: Receiver | None = None,
             allow_private: bool = False, **overrides: Any) -> Rig:
    settings = Settings(**{"secret": "status-webhook-test-secret", "api_keys": {"acme": "k" * 32, "globex": "g" * 32},
                           **overrides})
    clock, metrics, publisher = FakeClock(NOW), Metrics(), RecordingPublisher()
    receiver = receiver or Receiver()
    hooks = StatusWebhooks.build(settings, app=None, store=store or MemoryStore(), publisher=publisher,
                                 metrics=metrics, keys=KeyRing.from_settings(settings), clock=clock,
                                 webhook=WebhookSettings(allow_private=allow_private), outbox=outbox or MemoryStore(),
                                 transport=httpx.MockTransport(receiver))
    assert hooks is not None
    hooks.outbox.jitter = lambda: 1.0  # the full backoff: deterministic times
    return Rig(hooks, receiver, publisher, clock, metrics)


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def outbox_entries(rig: Rig) -> dict[str, OutboxEntry]:
    store = rig.outbox.store
    return {k: OutboxEntry.model_validate_json(store.get(k) or b"") for k in store.list_keys()}


# --- signing and ids ---------------------------------------------------------------------------------------------

async def test_status_webhooks__status_is_posted_byte_for_byte_and_its_signature_verifies(rig: Rig) -> None:
    secret = await rig.register("acme", ACME_URL)
    record = rig.record()
    await rig.hooks.handle(record)
    await rig.settle()
    (sent,) = rig.receiver.requests
    assert sent.method == "POST" and sent.headers["host"] == "93.184.216.34"
    assert sent.url.path == "/hooks/status"
    assert sent.content == record.value  # the published JSON itself, not a re-encoding of it
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["webhook-id"] == webhook_id(TOPIC, 1, record.offset)
    assert abs(int(sent.headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60
    assert reference_verify(secret, sent.headers, sent.content)
    assert not reference_verify("whsec_" + base64.b64encode(b"x" * 24).decode(), sent.headers, sent.content)
    assert outbox_entries(rig) == {}  # delivered: forgotten
    assert rig.count("herald_status_webhook_deliveries_total", tenant="acme", outcome="delivered") == 1
    assert rig.count("herald_status_webhook_latency_seconds_count", tenant="acme") == 1


async def test_status_webhooks__redelivered_record_carries_the_same_webhook_id(rig: Rig) -> None:
    await rig.register("acme", ACME_URL)
    record = rig.record()
    await rig.hooks.handle(record)
    await rig.settle()
    await rig.hooks.handle(record)  # its offset was not committed before a crash: read and handled again
    await rig.settle()
    first, again = rig.receiver.requests
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    other = rig.record()
    await rig.hooks.handle(other)
    await rig.settle()
    assert rig.receiver.requests[-1].headers["webhook-id"] != first.headers["webhook-id"]


async def test_status_webhooks__entry_left_by_a_crash_is_delivered_after_restart_under_its_id() -> None:
    store, outbox = MemoryStore(), MemoryStore()
    crashed = make_rig(store=store, outbox=outbox)
    await crashed.register("acme", ACME_URL)
    record = crashed.record()
    await crashed.hooks.handle(record)  # stored, then the worker died before any POST
    restarted = make_rig(store=store, outbox=outbox)
    restarted.outbox.scan()
    await restarted.settle()
    (sent,) = restarted.receiver.requests
    assert sent.headers["webhook-id"] == webhook_id(TOPIC, 1, record.offset)
    assert list(outbox.list_keys()) == []


# --- which statuses ------------------------------------------------------------------------------------------------

async def test_status_webhooks__only_statuses_the_filter_names_of_the_registered_tenant_are_posted(rig: Rig) -> None:
    await rig.register("acme", ACME_URL, statuses=["sent", "failed"], event_types=["order.confirmed"])
    await rig.register("globex", GLOBEX_URL)
    cases = [rig.record("acme", "sent", offset=1), rig.record("acme", "accepted", offset=2),
             rig.record("acme", "sent", "password.reset", offset=3), rig.record("acme", "failed", offset=4),
             rig.record("globex", "accepted", offset=5), rig.record("initech", "sent", offset=6),
             rig.record(None, "sent", offset=7)]
    for record in cases:
        await rig.hooks.handle(record)
    await rig.settle()
    ids = {r.headers["webhook-id"]: r.headers["host"] for r in rig.receiver.requests}
    assert ids == {webhook_id(TOPIC, 1, 1): "93.184.216.34", webhook_id(TOPIC, 1, 4): "93.184.216.34",
                   webhook_id(TOPIC, 1, 5): "93.184.216.35"}


async def test_status_webhooks__unreadable_records_are_passed_over(rig: Rig) -> None:
    await rig.register("acme", ACME_URL)
    for value in (b"", b"{not json", b"[1, 2]", b'{"tenant": 7}', b"\xff\xfe"):
        await rig.hooks.handle(Record(topic=TOPIC, partition=0, offset=1, key=None, value=value))
    await rig.settle()
    assert rig.receiver.requests == [] and outbox_entries(rig) == {}


async def test_status_webhooks__status_of_a_registration_deleted_meanwhile_is_dropped(rig: Rig) -> None:
    await rig.register("acme", ACME_URL)
    await rig.hooks.handle(rig.record())
    await rig.hooks.registrations.delete("acme")
    await rig.settle()
    assert rig.receiver.requests == [] and outbox_entries(rig) == {}
    assert rig.count("herald_status_webhook_deliveries_total", tenant="acme", outcome="dropped") == 1


# --- retries, dead letters, pauses --------------------------------------------------------------------------------

async def test_status_webhooks__503_is_retried_with_backoff_then_delivered(rig: Rig) -> None:
    rig.receiver.scripts["93.184.216.34"] = [httpx.Response(503), httpx.Response(503)]
    secret = await rig.register("acme", ACME_URL)
    await rig.hooks.handle(rig.record())
    await rig.settle()
    (entry,) = outbox_entries(rig).values()
    assert (entry.attempts, entry.due_at, entry.last_error) == (1, NOW + timedelta(seconds=1),
                                                                "server_error: HTTP 503")
    rig.clock.advance(0.5)
    await rig.settle()
    assert len(rig.receiver.requests) == 1  # not due yet
    rig.clock.advance(0.5)
    await rig.settle()
    (entry,) = outbox_entries(rig).values()
    assert (entry.attempts, entry.due_at) == (2, rig.clock() + timedelta(seconds=2))  # doubled
    rig.clock.advance(2)
    await rig.settle()
    assert len(rig.receiver.requests) == 3 and outbox_entries(rig) == {}
    assert len({r.headers["webhook-id"] for r in rig.receiver.requests}) == 1
    assert all(reference_verify(secret, r.headers, r.content) for r in rig.receiver.requests)
    assert rig.count("herald_status_webhook_deliveries_total", tenant="acme", outcome="retried") == 2
    assert rig.count("herald_status_webhook_deliveries_total", tenant="acme", outcome="delivered") == 1
    assert rig.dead_letters() == []


@pytest.mark.parametrize("status", [429, 503])
async def test_status_webhooks__retry_after_is_honoured(rig: Rig, status: int) -> None:
    rig.receiver.scripts["93.184.216.34"] = [httpx.Response(status, headers={"Retry-After": "120"})]
    await rig.register("acme", ACME_URL)
    await rig.hooks.handle(rig.record())
    await rig.settle()
    rig.clock.advance(119)
    await rig.settle()
    assert len(rig.receiver.requests) == 1
    rig.clock.advance(1)
    await rig.settle()
    assert len(rig.receiver.requests) == 2 and outbox_entries(rig) == {}


@pytest.mark.parametrize(("status", "reason"), [(400, "rejected"), (401, "rejected"), (404, "rejected"),
                                                (410, "gone"), (302, "rejected")])
async def test_status_webhooks__refusal_is_dead_lettered_at_once(rig: Rig, status: int, reason: str) -> None:
    rig.receiver.scripts["93.184.216.34"] = [httpx.Response(status, headers={"Location": "https://10.0.0.1/"})]
    await rig.register("acme", ACME_URL)
    record = rig.record()
    await rig.hooks.handle(record)
    await rig.settle()
    rig.clock.advance(3600)
    await rig.settle()
    assert len(rig.receiver.requests) == 1  # never tried again, never redirected
    (letter,) = rig.publisher.on(DEAD_LETTER_TOPIC)
    assert letter.value == record.value and letter.key == b"msg-1"
    assert rig.dead_letters() == [{
        "herald-tenant": "acme", "herald-url-host": "93.184.216.34", "herald-error": reason,
        "herald-error-detail": f"HTTP {status}", "herald-attempts": "0",
        "herald-webhook-id": webhook_id(TOPIC, 1, record.offset), "herald-source-topic": TOPIC,
        "herald-source-partition": "1", "herald-source-offset": str(record.offset)}]
    assert outbox_entries(rig) == {}
    assert rig.count("herald_status_webhook_dead_letters_total", tenant="acme", reason=reason) == 1
    assert rig.count("herald_status_webhook_deliveries_total", tenant="acme", outcome="dead_lettered") == 1


@pytest.mark.parametrize("failure", [httpx.Response(500), httpx.Response(408), httpx.ConnectError("refused"),
                                     httpx.ReadTimeout("slow")], ids=["500", "408", "connect", "timeout"])
async def test_status_webhooks__gives_up_after_max_attempts(failure: httpx.Response | httpx.TransportError) -> None:
    async def fail(request: httpx.Request) -> httpx.Response:
        if isinstance(failure, httpx.TransportError):
            raise failure
        return httpx.Response(failure.status_code)

    receiver = Receiver({"93.184.216.34": [fail] * 10})
    rig = make_rig(receiver=receiver, status_webhook_max_attempts=3)
    await rig.register("acme", ACME_URL)
    await rig.hooks.handle(rig.record())
    for _ in range(5):
        await rig.settle()
        rig.clock.advance(60)
    assert len(receiver.requests) == 3
    (letter,) = rig.dead_letters()
    assert (letter["herald-error"], letter["herald-attempts"]) == ("retries_exhausted", "3")
    assert letter["herald-first-failure"] == NOW.isoformat()
    assert outbox_entries(rig) == {}


async def test_status_webhooks__status_older_than_the_retry_window_is_dead_lettered() -> None:
    rig = make_rig(receiver=Receiver({"93.184.216.34": [httpx.Response(503)] * 99}),
                   status_webhook_retry_for=timedelta(seconds=10), status_webhook_pause_after=99)
    await rig.register("acme", ACME_URL)
    await rig.hooks.handle(rig.record())
    for _ in range(6):
        await rig.settle()
        rig.clock.advance(8)
    (letter,) = rig.dead_letters()
    assert letter["herald-error"] == "retries_exhausted"
    assert len(rig.receiver.requests) == 3  # at 0, 1 and 3 s; the next (7 s later) would be past the 10 s window


async def paused_rig(failures: int, statuses: int, pause_for: float) -> Rig:
    """acme's endpoint paused after 2 failed attempts (503 `failures` times, then 200), `statuses` waiting."""
    rig = make_rig(receiver=Receiver({"93.184.216.34": [httpx.Response(503)] * failures}),
                   status_webhook_pause_after=2, status_webhook_pause_for=pause_for, status_webhook_concurrency=1)
    await rig.register("acme", ACME_URL)
    for _ in range(statuses):
        await rig.hooks.handle(rig.record())
    await rig.settle()
    rig.clock.advance(1)
    await rig.settle()
    return rig


async def test_status_webhooks__failing_endpoint_is_paused_then_resumed_by_a_probe() -> None:
    rig = await paused_rig(failures=2, statuses=3, pause_for=30)
    assert len(rig.receiver.requests) == 2
    assert rig.count("herald_status_webhook_paused", tenant="acme") == 1
    rig.clock.advance(28)  # paused since 0 s: nothing goes out, though entries are due
    await rig.settle()
    assert len(rig.receiver.requests) == 2 and rig.outbox.next_wake() == pytest.approx(1)
    rig.clock.advance(1)
    await rig.settle()  # one probe, which succeeds and resumes the rest
    await rig.settle()
    assert rig.count("herald_status_webhook_paused", tenant="acme") == 0
    assert len(rig.receiver.requests) == 5 and outbox_entries(rig) == {}


async def test_status_webhooks__statuses_of_a_paused_endpoint_are_given_up_when_their_retry_window_ends() -> None:
    rig = await paused_rig(failures=1000, statuses=20, pause_for=60)
    assert rig.count("herald_status_webhook_paused", tenant="acme") == 1
    sent = len(rig.receiver.requests)
    rig.clock.advance(59 * 60)  # within the hour: nothing given up, whatever the probes say
    rig.outbox.expire()
    await rig.settle()
    assert rig.dead_letters() == [] and rig.outbox.pending("acme") == 20
    rig.clock.advance(61)  # the window (1 h) is over for all 20: given up at once, not one per failed probe
    rig.outbox.expire()
    await rig.outbox.drain()
    letters = rig.dead_letters()
    assert len(letters) == 20 and {d["herald-error"] for d in letters} == {"retries_exhausted"}
    assert all("paused past the 3600 s retry window" in d["herald-error-detail"] for d in letters)
    assert rig.outbox.pending("acme") == 0 and outbox_entries(rig) == {}
    assert len(rig.receiver.requests) <= sent + 60  # a probe a minute at most meanwhile, none for the expiry
    assert rig.count("herald_status_webhook_pending", tenant="acme") == 0


async def test_status_webhooks__an_endpoint_that_answers_is_not_cut_short_by_the_expiry(rig: Rig) -> None:
    await rig.register("acme", ACME_URL)
    await rig.hooks.handle(rig.record())
    rig.clock.advance(7200)  # waited long (a restart), but the endpoint is not paused: it is tried
    rig.outbox.expire()
    await rig.settle()
    assert len(rig.receiver.requests) == 1 and rig.dead_letters() == []


async def test_status_webhooks__slow_endpoint_does_not_hold_up_another_tenant(rig: Rig) -> None:
    release = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200)

    rig.receiver.scripts["93.184.216.34"] = [hang] * 4
    await rig.register("acme", ACME_URL)
    await rig.register("globex", GLOBEX_URL)
    for n in range(6):
        await rig.hooks.handle(rig.record("acme" if n % 2 else "globex"))
    rig.outbox.pump()
    for _ in range(500):  # the guard resolves each host in a thread: real time passes
        if len(rig.receiver.requests) == 6 and len(outbox_entries(rig)) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(rig.receiver.to("93.184.216.35")) == 3  # globex: done while acme's three hang
    assert len(rig.receiver.to("93.184.216.34")) == 3
    release.set()
    await rig.outbox.drain()
    assert outbox_entries(rig) == {}


async def test_status_webhooks__private_address_is_refused_by_the_guard_and_dead_lettered(rig: Rig) -> None:
    await rig.register("acme", "https://127.0.0.1/hooks")  # only the API checks at registration; the guard always
    await rig.hooks.handle(rig.record())
    await rig.settle()
    assert rig.receiver.requests == []
    (letter,) = rig.dead_letters()
    assert (letter["herald-error"], letter["herald-url-host"]) == ("forbidden_address", "127.0.0.1")


async def test_status_webhooks__full_backlog_dead_letters_new_statuses_at_once() -> None:
    rig = make_rig(receiver=Receiver({"93.184.216.34": [httpx.Response(503)] * 9}), status_webhook_max_pending=2)
    await rig.register("acme", ACME_URL)
    for _ in range(3):
        await rig.hooks.handle(rig.record())
    assert len(outbox_entries(rig)) == 2
    (letter,) = rig.dead_letters()
    assert letter["herald-error"] == "backlog_full"


async def test_status_webhooks__record_the_agent_fails_on_goes_to_its_own_dead_letters_without_a_status(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(tenant: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(rig.hooks.registrations, "get", broken)
    record = rig.record()
    await guarded(rig.hooks.handle, rig.hooks.guard, "status_webhooks", record)
    (letter,) = rig.publisher.records  # not herald.deadletter (`herald dlq replay` would repeat the status)
    assert (letter.topic, letter.value, letter.headers["herald-error"]) == (DEAD_LETTER_TOPIC, record.value,
                                                                           b"internal_error")
