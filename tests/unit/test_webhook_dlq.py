"""`herald dlq webhooks`: a status webhook dead letter read back from its headers, chosen for a replay, and put back
in the outbox, from where the status reaches the endpoint again under the same webhook-id."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from aiokafka import ConsumerRecord

from consumers.cli.webhook_dlq import chosen
from consumers.pipeline.status_outbox import DEAD_LETTER_TOPIC
from consumers.pipeline.status_webhooks import webhook_id
from consumers.pipeline.webhook_deadletters import WebhookDeadLetter, webhook_dead_letter
from tests.unit.test_status_webhooks import ACME_URL, NOW, TOPIC, Rig, make_rig, outbox_entries

pytestmark = pytest.mark.unit


def as_consumed(rig: Rig) -> list[ConsumerRecord[bytes, bytes]]:
    """The dead letters the rig's outbox published, as `herald dlq webhooks` reads them from the topic."""
    return [ConsumerRecord(topic=DEAD_LETTER_TOPIC, partition=2, offset=i, timestamp=int(NOW.timestamp() * 1000),
                           timestamp_type=0, key=r.key, value=r.value, checksum=None, serialized_key_size=0,
                           serialized_value_size=0, headers=list(r.headers.items()))
            for i, r in enumerate(rig.publisher.on(DEAD_LETTER_TOPIC))]


async def test_webhook_dlq__a_gone_endpoints_status_is_read_back_and_a_replay_delivers_it_under_its_id() -> None:
    rig = make_rig()
    rig.receiver.scripts["93.184.216.34"] = [httpx.Response(410)]  # then 200: the endpoint is back
    await rig.register("acme", ACME_URL)
    record = rig.record(status="delivered")
    await rig.hooks.handle(record)
    await rig.settle()
    [consumed] = as_consumed(rig)

    letter = webhook_dead_letter(consumed)
    assert letter is not None
    assert (letter.where, letter.tenant, letter.url_host, letter.reason, letter.status) == (
        "2/0", "acme", "93.184.216.34", "gone", "delivered")
    assert letter.webhook_id == webhook_id(TOPIC, 1, record.offset) and letter.message_id == "msg-1"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (TOPIC, 1, record.offset)
    assert letter.body.encode() == record.value

    # What `requeue` writes to herald.state.status_outbox: the entry, under the webhook-id, in the status's partition.
    rig.clock.advance(7200)  # a day later would do too: the replayed entry has a fresh retry window
    entry = letter.outbox_entry(rig.clock())
    assert entry.partition == 1 and entry.attempts == 0 and entry.created_at == NOW + timedelta(seconds=7200)
    await rig.outbox.store.put(letter.webhook_id, entry.model_dump_json().encode(), partition=entry.partition)
    rig.outbox.scan()  # the owning worker's next reading of the outbox
    await rig.settle()
    first, again = rig.receiver.requests
    assert again.headers["webhook-id"] == first.headers["webhook-id"] == letter.webhook_id  # the receiver can dedupe
    assert again.content == record.value
    assert outbox_entries(rig) == {} and len(as_consumed(rig)) == 1  # delivered: nothing new dead-lettered


def test_webhook_dlq__a_record_without_the_outboxs_headers_is_not_one() -> None:
    record = ConsumerRecord(topic=DEAD_LETTER_TOPIC, partition=0, offset=5, timestamp=0, timestamp_type=0, key=None,
                            value=b"{}", checksum=None, serialized_key_size=0, serialized_value_size=0,
                            headers=[("herald-error", b"invalid_json")])
    assert webhook_dead_letter(record) is None


def letter(where: str, tenant: str, reason: str) -> WebhookDeadLetter:
    partition, offset = map(int, where.split("/"))
    return WebhookDeadLetter(partition=partition, offset=offset, at=NOW, tenant=tenant, url_host="h", reason=reason,
                             detail="", attempts=1, webhook_id=f"wh-{where}", source_topic=TOPIC, source_partition=0,
                             source_offset=offset, body="{}")


LETTERS = [letter("0/1", "acme", "gone"), letter("0/2", "acme", "timeout"), letter("1/1", "globex", "timeout")]


@pytest.mark.parametrize(("choice", "expected"), [
    ({"offsets": {"0/2"}}, ["0/2"]),
    ({"tenant": "acme"}, ["0/1", "0/2"]),
    ({"reason": "timeout"}, ["0/2", "1/1"]),
    ({"tenant": "acme", "reason": "timeout"}, ["0/2"]),
    ({"offsets": {"1/1"}, "tenant": "acme", "reason": "gone"}, ["0/1", "1/1"]),
    ({"everything": True}, ["0/1", "0/2", "1/1"]),
    ({}, []),
])
def test_webhook_dlq__a_replay_takes_what_it_names(choice: dict[str, object], expected: list[str]) -> None:
    args: dict[str, object] = {"offsets": set(), "tenant": None, "reason": None, "everything": False, **choice}
    assert [d.where for d in chosen(LETTERS, **args)] == expected  # type: ignore[arg-type]
