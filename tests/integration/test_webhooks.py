"""Issue 11, webhooks, on a running worker (the real Faust web server, the embedded broker): a validly signed 31 KB
webhook sent in 8 KB pieces is read whole, a 2 MiB one is 413, malformed input is never a 500, a stale SendGrid
complaint is refused, and a replayed delivery changes nothing, also after the worker is replaced."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from channels.providers._twilio import TwilioSettings
from channels.providers.sendgrid import DEV_WEBHOOK_PRIVATE_KEY, sendgrid_signature
from channels.providers.whatsapp import MetaSettings
from channels.signatures import meta_signature, twilio_signature
from consumers.dev.simulator.app import SimServer
from schemas.status import Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

SIM_ENV = {"HERALD_WEBHOOK_ALLOW_PRIVATE": "true"}
KB = 1024


def meta_webhook(count: int, tag: str) -> bytes:
    """`count` Meta status receipts with the conversation and pricing Meta sends, for made-up messages."""
    now = str(int(datetime.now(UTC).timestamp()))
    statuses = [{"id": f"wamid.{tag}{i:04d}", "status": "delivered", "timestamp": now,
                 "recipient_id": "34600111222", "biz_opaque_callback_data": f"msg-{tag}-{i}",
                 "conversation": {"id": f"{i:032x}", "origin": {"type": "utility"}},
                 "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"}}
                for i in range(count)]
    envelope = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "statuses": statuses,
                                        "metadata": {"display_phone_number": "15550783881",
                                                     "phone_number_id": "100000000000001"}}}]}]}
    return json.dumps(envelope, separators=(",", ":")).encode()


def meta_headers(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(MetaSettings().app_secret.get_secret_value(), body)}


async def in_pieces(body: bytes, size: int = 8 * KB) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]
        await asyncio.sleep(0.05)  # each piece its own TCP segment(s): the server sees them arrive apart


def sendgrid_complaint(at: datetime, event_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps([{"email": "emma@example.com", "timestamp": int(at.timestamp()), "event": "spamreport",
                        "sg_event_id": event_id, "sg_message_id": "W-1.filter0001.1.0",
                        "herald_message_id": f"msg-{event_id}", "herald_recipient_id": "user-emma"}]).encode()
    timestamp = str(int(at.timestamp()))
    return body, {"Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
                  "X-Twilio-Email-Event-Webhook-Signature": sendgrid_signature(DEV_WEBHOOK_PRIVATE_KEY, timestamp,
                                                                               body)}


async def raw_status(url: str, head: bytes) -> int:
    """A request whose header bytes are not UTF-8 (no HTTP client sends them), answered status."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(head)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return int(answer.split(b" ", 2)[1])


async def statuses_of(stack: Stack, prefix: str) -> list[Any]:
    from consumers.cli.publish import parse_status

    return [s for s in (parse_status(r) for r in await stack.read("status")) if s.message_id.startswith(prefix)]


@pytest.mark.parametrize("sim_stack", ["email=sendgrid;sms=twilio;whatsapp=meta"], indirect=True)
async def test_webhooks__hardened_on_a_running_worker(sim_stack: tuple[Stack, SimServer]) -> None:
    stack, _ = sim_stack
    stack.start_worker(**SIM_ENV)
    base = stack.settings.public_url
    meta_url = f"{base}/webhooks/whatsapp/meta"
    body = meta_webhook(100, "big")
    assert 30 * KB < len(body) < 33 * KB

    async with httpx.AsyncClient(timeout=30) as client:
        # 31 KB, validly signed, chunked in 8 KB pieces: read whole, every receipt published.
        answer = await client.post(meta_url, content=in_pieces(body), headers=meta_headers(body))
        assert answer.status_code == 200, answer.text
        await stack.wait_statuses(lambda ss: sum(s.message_id.startswith("msg-big-") for s in ss) >= 100, timeout=30)

        # Delivered again (Meta retries what it thinks failed): 200, and nothing new.
        again = await client.post(meta_url, content=body, headers=meta_headers(body))
        assert again.status_code == 200

        # 2 MiB, declared or chunked: 413 before any work.
        huge = b"[" + b" " * (2 * KB * KB) + b"]"
        assert (await client.post(meta_url, content=huge, headers=meta_headers(huge))).status_code == 413
        assert (await client.post(meta_url, content=in_pieces(huge, 256 * KB),
                                  headers=meta_headers(huge))).status_code == 413

        # Malformed input: 400/403, never 500.
        head = (b"POST /webhooks/sms/twilio HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n"
                b"X-Twilio-Signature: \xe9\xe9\r\n\r\n")
        assert await raw_status(base, head) == 403
        deep = b'{"a":' * 20_000 + b"1" + b"}" * 20_000
        assert (await client.post(meta_url, content=deep, headers=meta_headers(deep))).status_code in (200, 400)
        assert (await client.get(f"{base}/documents/msg-1.pdf", params={"e": "²", "s": "é"})).status_code == 403
        opaque = json.loads(meta_webhook(1, "obj"))
        opaque["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] = {"id": "msg-x"}
        opaque_body = json.dumps(opaque).encode()
        assert (await client.post(meta_url, content=opaque_body, headers=meta_headers(opaque_body))).status_code == 400

        # SendGrid: a complaint signed in 2001 is refused; one signed now is applied, and its replay is not.
        old_body, old_headers = sendgrid_complaint(datetime.now(UTC).replace(year=2001), "ev-2001")
        sendgrid_url = f"{base}/webhooks/email/sendgrid"
        assert (await client.post(sendgrid_url, content=old_body, headers=old_headers)).status_code == 403
        now_body, now_headers = sendgrid_complaint(datetime.now(UTC) - timedelta(seconds=5), "ev-now")
        for _ in range(2):
            assert (await client.post(sendgrid_url, content=now_body, headers=now_headers)).status_code == 200

        # Twilio: the same callback twice (same idempotency token) is applied once.
        token = TwilioSettings().auth_token.get_secret_value()
        twilio_url = f"{base}/webhooks/sms/twilio?message_id=msg-tw-1"
        form = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+34600111222"}
        twilio_headers = {"X-Twilio-Signature": twilio_signature(token, twilio_url, form),
                          "I-Twilio-Idempotency-Token": "idem-it-1"}
        for _ in range(2):
            assert (await client.post(twilio_url, data=form, headers=twilio_headers)).status_code == 200

        metrics = (await client.get(f"http://127.0.0.1:{stack.settings.admin_port}/metrics")).text
    assert 'herald_webhook_replays_total{channel="whatsapp",provider="meta"} 100.0' in metrics
    assert 'herald_webhook_replays_total{channel="email",provider="sendgrid"} 1.0' in metrics
    assert 'herald_webhook_replays_total{channel="sms",provider="twilio"} 1.0' in metrics
    assert 'result="error"' not in metrics and 'result="malformed"' not in metrics

    await stack.wait_statuses(lambda ss: any(s.message_id == "msg-tw-1" for s in ss), timeout=30)
    await asyncio.sleep(1)  # let any duplicate land before counting
    assert len(await statuses_of(stack, "msg-big-")) == 100
    assert [s.status for s in await statuses_of(stack, "msg-ev-")] == [Status.COMPLAINED]
    assert [s.message_id for s in await statuses_of(stack, "msg-ev-")] == ["msg-ev-now"]
    assert len(await statuses_of(stack, "msg-tw-")) == 1
    assert await statuses_of(stack, "msg-obj-") == []

    # A new worker (the old one gone) still knows what was applied: the ids live in herald.state.webhooks.
    stack.stop_workers()
    stack.start_worker(**SIM_ENV)
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.post(meta_url, content=body, headers=meta_headers(body))).status_code == 200
        metrics = (await client.get(f"http://127.0.0.1:{stack.settings.admin_port}/metrics")).text
    assert 'herald_webhook_replays_total{channel="whatsapp",provider="meta"} 100.0' in metrics
    await asyncio.sleep(1)
    assert len(await statuses_of(stack, "msg-big-")) == 100
