"""Fuzzing every public route Herald serves to the outside: `/webhooks/{channel}/{vendor}` for every receiver,
`/unsubscribe/{id}` and `/documents/{id}.pdf`, through the real Faust views over raw HTTP (bytes as they come:
header bytes that are not UTF-8, bodies chunked or not). Whatever arrives:

- the answer is never a 5xx;
- without a valid signature nothing changes (no record published, no ledger write, no replay id remembered,
  no hook called);
- with a valid signature over fuzzed content the answer is 200 or 400, and a 400 changed nothing;
- metric labels stay a bounded set, whatever the path says.

Deterministic (`derandomize`, no example database) and quick, so CI is stable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.signatures import meta_signature, twilio_signature
from tests.unit.webhook_rig import (
    META_SECRET,
    NOW,
    PUBLIC,
    ROUTES,
    TWILIO_TOKEN,
    Rig,
    make_rig,
    meta_envelope,
    raw_http,
    sendgrid_headers,
    serve,
    vonage_params,
)

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- what a request can hold ---------------------------------------------------------------------------------

TRICKY_TEXT = ["", "²", "١٧٦٤٠٠٠٠٠٠", "1764000000", "9" * 40, "-1", "é", "\u0000", "%", "null", "{}", "[]",
               "sha256=" + "0" * 64, "v1,abc", "msg-1", "user-42", "wamid.A", "subscribe", "email", "34600111222",
               "ana@example.com"]
# The vendors' own words, so fuzzed receipts get past the status maps to the code that publishes them.
VENDOR_WORDS = ["delivered", "read", "failed", "sent", "bounce", "blocked", "spamreport", "open", "click",
                "dropped", "unsubscribe", "group_unsubscribe", "text", "button", "interactive", "button_reply"]
TRICKY_BYTES = [b"\xe9", b"\xff\xfe", b"\xc2\xb2", b"\xed\xa0\x80", b"\x00", b"%", b"\xf0\x9f\x92\xa9"]

text_value = st.one_of(st.sampled_from(TRICKY_TEXT), st.sampled_from(VENDOR_WORDS), st.text(max_size=24))
byte_value = st.one_of(st.sampled_from(TRICKY_BYTES), st.binary(max_size=24), text_value.map(str.encode))

QUERY_KEYS = ["message_id", "timestamp", "nonce", "sig", "messageId", "status", "msisdn", "text", "client-ref",
              "hub.mode", "hub.challenge", "hub.verify_token", "kind", "k", "l", "m", "r", "rid", "c", "s", "e", "a"]
HEADER_NAMES = ["X-Hub-Signature-256", "X-Twilio-Signature", "I-Twilio-Idempotency-Token",
                "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp", "Content-Type",
                "webhook-id", "webhook-timestamp", "webhook-signature", "User-Agent", "X-Anything"]

query_string = st.lists(st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), st.text(max_size=8)), byte_value),
                        max_size=6).map(lambda pairs: "&".join(
                            f"{quote(k, safe='')}={quote_from_bytes(v, safe='')}" for k, v in pairs))
# Header values as bytes on the wire: any byte but the control characters aiohttp's parser refuses itself (400
# before any view), so the fuzzing reaches Herald's code; bytes over 0x7f (not UTF-8) stay.
_CONTROL = bytes(range(0x20)).replace(b"\t", b"") + b"\x7f"
header_bytes = byte_value.map(lambda b: b.translate(None, _CONTROL).strip())
headers = st.dictionaries(st.sampled_from(HEADER_NAMES), header_bytes, max_size=5)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | text_value,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text_value, children, max_size=4),
    max_leaves=15)


def deep(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


def meta_shaped(values: Any) -> dict[str, Any]:
    """Meta's envelope with fuzzed statuses and messages: fields of every type where strings belong."""
    return meta_envelope(values.get("statuses") if isinstance(values, dict) else values,
                         values.get("messages") if isinstance(values, dict) else None)


def vendor_item(required: dict[str, list[str]], optional: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """An object shaped like the vendor's: its key fields usually hold the vendor's words, any field may hold any
    JSON (an object where a string belongs, a number, null)."""
    return st.fixed_dictionaries({k: st.one_of(st.sampled_from(words), JSON) for k, words in required.items()},
                                 optional=dict.fromkeys(optional, JSON))


meta_status_item = vendor_item({"status": ["delivered", "read", "failed", "sent"]},
                               ["id", "biz_opaque_callback_data", "recipient_id", "timestamp", "errors"])
meta_message_item = vendor_item({"type": ["text", "button", "interactive", "image"]},
                                ["from", "id", "timestamp", "text", "button", "interactive", "context"])
sendgrid_item = vendor_item({"event": ["delivered", "bounce", "spamreport", "open", "click", "dropped",
                                       "unsubscribe", "processed"]},
                            ["email", "herald_message_id", "herald_recipient_id", "sg_event_id", "sg_message_id",
                             "type", "reason", "status", "timestamp"])
meta_json = st.fixed_dictionaries({"statuses": st.lists(meta_status_item, max_size=3),
                                   "messages": st.lists(meta_message_item, max_size=3)}).map(meta_shaped)
sendgrid_json = st.lists(sendgrid_item, max_size=4)

body = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    JSON.map(lambda v: json.dumps(v).encode()),
    meta_json.map(lambda v: json.dumps(v).encode()),
    sendgrid_json.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([deep(20_000), b"[" * 5000, b'"\\ud800"', b"NaN", b'{"a": 1e999}', b"\xef\xbb\xbf{}"]),
    query_string.map(str.encode),  # form-encoded
)

PATH_ID = st.one_of(st.sampled_from(["msg-1", "user-42", "%FF", "%ED%A0%80", "%C2%B2", "..", "a.pdf"]),
                    st.text(max_size=12).map(lambda t: quote(t, safe="")))


def every_route(path_id: str, channel: str) -> list[str]:
    """Each example goes to every route: every receiver, a webhook route no provider has, and both links."""
    return [*(f"/webhooks/{c}/{v}" for c, v in ROUTES), f"/webhooks/{channel}/{path_id}",
            f"/unsubscribe/{path_id}", f"/documents/{path_id}.pdf"]


@dataclass(frozen=True)
class Wire:
    """One raw HTTP request."""

    method: str
    path: str
    query: str
    headers: dict[str, bytes]
    body: bytes
    chunked: bool

    def encode(self) -> tuple[bytes, bytes]:
        target = self.path + (f"?{self.query}" if self.query else "")
        lines = [f"{self.method} {target} HTTP/1.1".encode(), b"Host: herald.example.com", b"Connection: close"]
        lines += [k.encode() + b": " + v for k, v in self.headers.items()]
        if self.chunked:
            lines.append(b"Transfer-Encoding: chunked")
            payload = b"".join(b"%x\r\n%s\r\n" % (len(self.body[i:i + 97]), self.body[i:i + 97])
                               for i in range(0, len(self.body), 97)) + b"0\r\n\r\n"
        else:
            lines.append(b"Content-Length: " + str(len(self.body)).encode())
            payload = self.body
        return b"\r\n".join(lines) + b"\r\n\r\n", payload


unsigned_requests = st.builds(
    lambda path_id, channel, **fields: [Wire(path=path, **fields) for path in every_route(path_id, channel)],
    path_id=PATH_ID, channel=st.sampled_from(["sms", "voice", "email", "whatsapp", "push", "x"]),
    method=st.sampled_from(["GET", "POST", "POST", "PUT"]), query=query_string, headers=headers, body=body,
    chunked=st.booleans())


@contextmanager
def served() -> Iterator[tuple[Rig, TestServer, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    rig = make_rig()
    server = loop.run_until_complete(serve(rig))
    try:
        yield rig, server, loop
    finally:
        loop.run_until_complete(server.close())
        loop.close()


def send(loop: asyncio.AbstractEventLoop, server: TestServer, head: bytes, payload: bytes) -> tuple[int, bytes]:
    return loop.run_until_complete(raw_http(server.port, head, payload, pieces=211))  # type: ignore[arg-type]


def bounded_labels(rig: Rig) -> bool:
    known = {*ROUTES, ("unknown", "unknown")}
    for metric in (rig.metrics.webhooks, rig.metrics.webhook_replays):
        for sample in metric.collect()[0].samples:
            if (sample.labels["channel"], sample.labels["provider"]) not in known:
                return False
    return True


# --- without a signature ------------------------------------------------------------------------------------------


def test_fuzz__unsigned_requests_to_every_route_never_500_and_change_nothing() -> None:
    with served() as (rig, server, loop):
        seen: dict[int, int] = {}

        @FUZZ
        @given(requests=unsigned_requests)
        def check(requests: list[Wire]) -> None:
            for request in requests:
                status, _ = send(loop, server, *request.encode())
                seen[status] = seen.get(status, 0) + 1
                assert status < 500, request
                assert rig.state() == (0, {}, {}, 0), request

        check()
        assert bounded_labels(rig)
        # The fuzzing reached the views, not only aiohttp's parser: refusals of every kind were answered.
        assert {403, 404}.issubset(seen), seen


# --- with a valid signature over fuzzed content ------------------------------------------------------------------

Signer = Callable[[Any], tuple[str, str, dict[str, bytes], bytes]]


def signed_meta(envelope: Any) -> tuple[str, str, dict[str, bytes], bytes]:
    raw = json.dumps(envelope).encode()
    return ("/webhooks/whatsapp/meta", "", {"Content-Type": b"application/json",
                                            "X-Hub-Signature-256": meta_signature(META_SECRET, raw).encode()}, raw)


def signed_sendgrid(events: Any) -> tuple[str, str, dict[str, bytes], bytes]:
    raw = json.dumps(events).encode()
    return ("/webhooks/email/sendgrid", "", {k: v.encode() for k, v in sendgrid_headers(raw, NOW).items()}, raw)


def signed_vonage(fields: dict[str, str]) -> tuple[str, str, dict[str, bytes], bytes]:
    raw = json.dumps(vonage_params(fields)).encode()
    return "/webhooks/sms/vonage", "", {"Content-Type": b"application/json"}, raw


def signed_twilio(case: tuple[str, dict[str, str]]) -> tuple[str, str, dict[str, bytes], bytes]:
    channel, form = case
    query = "message_id=msg-1" + ("&kind=gather&k=1c2x&l=en-US" if channel == "voice" and "Digits" in form else "")
    path = f"/webhooks/{channel}/twilio"
    signature = twilio_signature(TWILIO_TOKEN, f"{PUBLIC}{path}?{query}", form)
    return path, query, {"Content-Type": b"application/x-www-form-urlencoded",
                         "X-Twilio-Signature": signature.encode(), "I-Twilio-Idempotency-Token": b"idem-fuzz"}, \
        urlencode(form).encode()


flat_text = st.text(max_size=16)
vonage_fields = st.dictionaries(st.sampled_from(["msisdn", "to", "messageId", "status", "err-code", "client-ref",
                                                 "text", "type", "message-timestamp", "keyword", "scts"]),
                                st.one_of(flat_text, st.sampled_from(["delivered", "failed", "accepted", "²", "٣"])),
                                max_size=8)
TWILIO_KEYS = ["MessageSid", "MessageStatus", "Body", "From", "To", "ErrorCode", "CallSid", "CallStatus", "Digits"]
twilio_forms = st.tuples(st.sampled_from(["sms", "voice"]), st.dictionaries(
    st.sampled_from(TWILIO_KEYS), st.one_of(flat_text, st.sampled_from(["delivered", "completed", "1", "STOP"])),
    max_size=6))

signed_requests = st.one_of(meta_json.map(signed_meta), JSON.map(signed_meta), sendgrid_json.map(signed_sendgrid),
                            JSON.map(signed_sendgrid), vonage_fields.map(signed_vonage),
                            twilio_forms.map(signed_twilio))


def test_fuzz__validly_signed_fuzzed_content_is_200_or_400_and_a_400_changes_nothing() -> None:
    with served() as (rig, server, loop):
        seen: dict[int, int] = {}

        @FUZZ
        @given(case=signed_requests, chunked=st.booleans())
        def check(case: tuple[str, str, dict[str, bytes], bytes], chunked: bool) -> None:
            path, query, header_map, raw = case
            before = rig.state()
            status, answer = send(loop, server, *Wire("POST", path, query, header_map, raw, chunked).encode())
            seen[status] = seen.get(status, 0) + 1
            assert status in (200, 400), (status, answer, case)
            if status == 400:
                assert rig.state() == before, case

        check()
        assert bounded_labels(rig)
        assert seen.get(200) and seen.get(400), seen  # both accepted and refused content were generated
