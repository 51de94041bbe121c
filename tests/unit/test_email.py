"""Email: header hygiene, the MIME we build, and the SMTP provider against a real aiosmtpd server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.generator import Generator
from email.header import Header
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtplib.email import flatten_message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from channels.base import OutboundMessage
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, Rejected
from channels.providers.email import SmtpEmailProvider, SmtpSettings, _boundary, email_bytes
from channels.providers.email import build_email as build_mime
from channels.providers.email_headers import UTF8_HEADERS, clean_header
from channels.rendering.render import Rendered
from consumers.dev.broker import free_port
from consumers.dev.mailsink import MailSink, start_mail_sink

pytestmark = pytest.mark.unit

SENDER = "Herald <no-reply@example.com>"


def rendered(subject: str = "Tu pedido 1001", html: str = "<p>Hola</p>", text: str = "Hola",
             locale: str = "es") -> Rendered:
    return Rendered(template="order.confirmed/email", locale=locale,
                    parts={"subject": subject, "html": html, "text": text})


def outbound(message_id: str = "msg-3f2a9c", address: str = "ana@example.com", **kwargs: Any) -> OutboundMessage:
    kwargs.setdefault("rendered", rendered())
    return OutboundMessage(message_id=message_id, channel="email", address=address,
                           idempotency_key=f"key-{message_id}", **kwargs)


# --- clean_header ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hi\r\nBcc: evil@x.com", "Hi Bcc: evil@x.com"),
        ("Hi\nBcc: evil@x.com", "Hi Bcc: evil@x.com"),
        ("Hi\rBcc: evil@x.com", "Hi Bcc: evil@x.com"),
        ("Hi\0Bcc: evil@x.com", "Hi Bcc: evil@x.com"),
        ("Hi\r\n\r\n<html>body</html>", "Hi <html>body</html>"),
        ("Hi%0d%0aBcc: x", "Hi%0d%0aBcc: x"),  # url-encoding is text, not a line break
        ("\r\n Leading and trailing \r\n", "Leading and trailing"),
        ("Tab\tand\x0bvertical\x7fdel", "Tab and vertical del"),
        ("Line\u2028separator\x85nel", "Line separator nel"),
        ("Plain subject", "Plain subject"),
        ("Pedido nº 1001 — ¡gracias! 🎉", "Pedido nº 1001 — ¡gracias! 🎉"),
        ("", ""),
    ],
    ids=["crlf", "lf", "cr", "nul", "double-crlf-body", "url-encoded", "edges", "other-controls",
         "unicode-line-breaks", "plain", "unicode", "empty"],
)
def test_clean_header__removes_line_breaks_and_controls(raw: str, expected: str) -> None:
    assert clean_header(raw) == expected


def test_clean_header__truncates_to_limit() -> None:
    assert clean_header("x" * 2000) == "x" * 998
    assert clean_header("abcdef", limit=3) == "abc"


def build_email(message: OutboundMessage, **kwargs: Any) -> Any:
    """The built email as a receiver parses it off the wire."""
    return message_from_bytes(build_mime(message, **kwargs).as_bytes(), policy=policy.default)


# --- build_email ----------------------------------------------------------------------------------------------


def test_build_email__subject_injection_stays_in_the_subject() -> None:
    msg = build_email(outbound(rendered=rendered(subject="Hi\r\nBcc: evil@x.com")), sender=SENDER,
                      domain="example.com")

    assert msg["Subject"] == "Hi Bcc: evil@x.com"
    assert "\r" not in msg["Subject"]
    assert "\n" not in msg["Subject"]
    assert msg["Bcc"] is None
    # Also after a round trip through the bytes an SMTP server would see.
    parsed = message_from_bytes(bytes(msg), policy=policy.default)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Hi Bcc: evil@x.com"


def test_build_email__message_id_uses_herald_id_and_sender_domain() -> None:
    msg = build_email(outbound(message_id="msg-3f2a9c"), sender=SENDER, domain="example.com")

    assert msg["Message-ID"] == "<msg-3f2a9c@example.com>"
    assert msg["X-Herald-Message-ID"] == "msg-3f2a9c"


def test_build_email__same_message_id_on_a_resend() -> None:
    first = build_email(outbound(message_id="msg-1"), sender=SENDER, domain="example.com")
    again = build_email(outbound(message_id="msg-1"), sender=SENDER, domain="example.com")

    assert first["Message-ID"] == again["Message-ID"]


def test_build_email__headers_from_to_and_auto_submitted() -> None:
    msg = build_email(outbound(display_name="Ana García"), sender=SENDER, domain="example.com")

    assert msg["From"] == SENDER
    assert msg["To"].addresses[0].addr_spec == "ana@example.com"
    assert msg["To"].addresses[0].display_name == "Ana García"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] is not None


def test_build_email__content_language_is_the_rendered_locale() -> None:
    msg = build_email(outbound(rendered=rendered(locale="es")), sender=SENDER, domain="example.com")

    assert msg["Content-Language"] == "es"
    parsed = message_from_bytes(bytes(msg), policy=policy.default)
    assert parsed["Content-Language"] == "es"


def test_build_email__multipart_alternative_text_then_html() -> None:
    msg = build_email(outbound(rendered=rendered(html="<p>Hola Ana</p>", text="Hola Ana")), sender=SENDER,
                      domain="example.com")

    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().strip() == "Hola Ana"
    assert parts[1].get_content().strip() == "<p>Hola Ana</p>"
    assert all(p.get_content_charset() == "utf-8" for p in parts)


def test_build_email__display_name_with_crlf_is_cleaned() -> None:
    msg = build_email(outbound(display_name="Ana\r\nBcc: evil@x.com"), sender=SENDER, domain="example.com")

    to = msg["To"].addresses[0]
    assert to.display_name == "Ana Bcc: evil@x.com"
    assert to.addr_spec == "ana@example.com"
    assert msg["Bcc"] is None
    parsed = message_from_bytes(bytes(msg), policy=policy.default)
    assert parsed["Bcc"] is None
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ana@example.com"]


@pytest.mark.parametrize(
    "address",
    ["ana\n@example.com", "ana@example.com\r\nBcc: evil@x.com", "nobody", "", "a b@example.com",
     "ana@exa mple.com"],
    ids=["newline", "crlf-bcc", "no-at", "empty", "space-local", "space-domain"],
)
def test_build_email__unusable_address_is_invalid_recipient(address: str) -> None:
    with pytest.raises(InvalidRecipient) as info:
        build_email(outbound(address=address), sender=SENDER, domain="example.com")

    assert info.value.retriable is False
    assert info.value.reason == "invalid_recipient"


def test_build_email__extra_headers_are_added_with_clean_values() -> None:
    msg = build_email(outbound(headers={"List-Unsubscribe": "<https://x.example/u>", "X-Campaign": "a\r\nBcc: e"}),
                      sender=SENDER, domain="example.com")

    assert msg["List-Unsubscribe"] == "<https://x.example/u>"
    assert msg["X-Campaign"] == "a Bcc: e"
    assert msg["Bcc"] is None


@pytest.mark.parametrize("name", ["X-Evil\r\nBcc", "X Evil", "X-Evil:", "", "X-É", "X" * 77],
                         ids=["crlf", "space", "colon", "empty", "non-ascii", "too-long"])
def test_build_email__bad_extra_header_name_is_rejected(name: str) -> None:
    with pytest.raises(Rejected) as info:
        build_email(outbound(headers={name: "v"}), sender=SENDER, domain="example.com")

    assert info.value.retriable is False
    assert info.value.reason == "rejected"


# --- email_bytes: the same bytes as the stdlib's generator ------------------------------------------------------

DATE = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
# Text that exercises the generator's corners: "From " lines it mangles, dots, line ends of every kind, trailing
# whitespace, "=" and boundary look-alikes, long lines, non-ASCII of every width.
TRICKY = st.lists(st.sampled_from(["From ", "from", ".", "\r\n", "\n", "\r", " ", "\t", "=", "--", "=" * 15, "a", "Z",
                                    "0", "é", "€", "🎉", "\u00a0", "\x0b", "\x85", "<p>", "x" * 80])).map("".join)
HEADER_TEXT = st.lists(st.sampled_from(["a", " ", "  ", ";", ",", "=?", "?=", "\"", "é", "—", "x" * 40,
                                     "\r\n", "\t", "(", ")", "<", ">", "@"])).map("".join)


def stdlib_bytes(message: OutboundMessage, sender: str) -> bytes:
    """What the provider sent before `email_bytes`: aiosmtplib flattening `build_email`'s message."""
    return flatten_message(build_mime(message, sender=sender, domain="example.com", date=DATE))


def both(message: OutboundMessage, sender: str = SENDER) -> tuple[bytes | type[BaseException], ...]:
    """Both ways of building `message`, each from the same random state (the boundary is random)."""
    results: list[bytes | type[BaseException]] = []
    for build in (lambda: stdlib_bytes(message, sender),
                  lambda: email_bytes(message, sender=sender, domain="example.com", date=DATE)):
        random.seed(7)
        try:
            results.append(build())
        except Exception as exc:  # both must refuse the same input the same way
            results.append(type(exc))
    return tuple(results)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=HEADER_TEXT, text=TRICKY, html=TRICKY, name=st.one_of(st.none(), HEADER_TEXT),
       extra=st.dictionaries(st.sampled_from(["List-Unsubscribe", "X-Tag", "Precedence", "X-Long-Header-Name"]),
                             HEADER_TEXT, max_size=3),
       locale=st.sampled_from(["es", "de", "en-GB", "pt-BR"]), address=st.sampled_from(
           ["ana@example.com", "a.b+tag@sub.example.org", "ñandú@example.es", "x@[127.0.0.1]"]))
@example(subject="", text="", html="", name=None, extra={}, locale="es", address="ana@example.com")
@example(subject="S" * 200, text="From here\n.\nend", html="=" * 200, name="É" * 50, extra={"X-Tag": "t " * 60},
         locale="es", address="ana@example.com")
def test_email_bytes__identical_to_the_stdlib_generator(subject: str, text: str, html: str, name: str | None,
                                                       extra: dict[str, str], locale: str, address: str) -> None:
    message = outbound(address=address, display_name=name, headers=extra,
                       rendered=rendered(subject=subject, html=html, text=text, locale=locale))

    stdlib, direct = both(message)

    assert direct == stdlib


@pytest.mark.parametrize("sender", ["Herald <no-reply@example.com>", "bounce@mail.acme.io",
                                    "Hérald Tienda <no-reply@example.com>", "\"Shop, Inc.\" <shop@example.com>"])
def test_email_bytes__identical_for_every_kind_of_sender(sender: str) -> None:
    message = outbound(display_name="Ana", headers={"List-Unsubscribe": "<https://example.org/u/abc>"})

    stdlib, direct = both(message, sender)

    assert direct == stdlib


@settings(max_examples=500, deadline=None)
@given(text=st.lists(st.sampled_from(["a", " ", "é", "€", "🎉", "—", "=", "?", "_", "x" * 30, "ß", "中", "\u00a0",
                                      ",", ";", "\t"]), min_size=1).map("".join),
       name=st.sampled_from([None, "Subject", "X-A-Very-Long-Header-Name-Indeed"]))
def test_utf8_header_charset__encodes_like_the_stdlib(text: str, name: str | None) -> None:
    kwargs = {} if name is None else {"header_name": name}

    assert Header(text, UTF8_HEADERS, **kwargs).encode() == Header(text, "utf-8", **kwargs).encode()


@pytest.mark.parametrize("lines", [["--{b}"], ["--{b}--", "--{b}.0"], ["x--{b}", "--{b}x"], []],
                         ids=["taken", "taken-twice", "not-a-line", "empty"])
def test_boundary__avoids_a_boundary_in_the_text_like_the_stdlib(lines: list[str]) -> None:
    # Quoted-printable bodies encode "=", so their text can never hold a boundary; the check is still the stdlib's.
    random.seed(7)
    drawn = f"{'=' * 15}{random.randrange(2**63 - 1):019d}=="
    text = "\n".join(["hi", *(line.format(b=drawn) for line in lines), "bye"])

    random.seed(7)
    ours = _boundary(text)
    random.seed(7)
    theirs = Generator._make_boundary(text)

    assert ours == theirs


def test_smtp_provider__domain_comes_from_the_sender_address() -> None:
    assert SmtpEmailProvider(SmtpSettings(sender="Herald <no-reply@example.com>")).domain == "example.com"
    assert SmtpEmailProvider(SmtpSettings(sender="bounce@mail.acme.io")).domain == "mail.acme.io"


# --- SmtpEmailProvider against aiosmtpd ---------------------------------------------------------------------


class CountingSink(MailSink):
    """The dev mail sink, also counting EHLO greetings: one per SMTP connection the provider opens."""

    def __init__(self) -> None:
        super().__init__()
        self.ehlos = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        self.ehlos += 1
        session.host_name = hostname
        return responses


class RefuseRecipient:
    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        return self.reply


class RefuseData:
    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return self.reply


@pytest.fixture
def serve() -> Iterator[Callable[[Any], int]]:
    """Start an aiosmtpd server with a handler on a free port; every server is stopped afterwards."""
    controllers: list[Controller] = []

    def start(handler: Any) -> int:
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def mail_sink() -> Iterator[tuple[int, MailSink]]:
    port = free_port()
    controller, sink = start_mail_sink(port)
    yield port, sink
    controller.stop()


def provider(port: int, pool_size: int = 3) -> SmtpEmailProvider:
    return SmtpEmailProvider(SmtpSettings(host="127.0.0.1", port=port, pool_size=pool_size, timeout=5,
                                          sender=SENDER))


async def test_smtp_provider__delivers_to_the_mail_sink(mail_sink: tuple[int, MailSink]) -> None:
    port, sink = mail_sink
    p = provider(port)
    try:
        result = await p.send(outbound(message_id="msg-one", display_name="Ana"))
    finally:
        await p.close()

    assert result.provider == "smtp"
    assert result.provider_message_id == "<msg-one@example.com>"
    [received] = sink.snapshot()
    assert received["Message-ID"] == "<msg-one@example.com>"
    assert received["Subject"] == "Tu pedido 1001"
    assert received["To"] == "Ana <ana@example.com>"
    assert received.get_body(("plain",)).get_content().strip() == "Hola"
    assert received.get_body(("html",)).get_content().strip() == "<p>Hola</p>"


class Envelopes:
    """Keeps each transaction as the server saw it: MAIL FROM and its options, RCPT TOs, the data."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str], list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.append((envelope.mail_from, list(envelope.mail_options), list(envelope.rcpt_tos),
                          envelope.original_content))
        return "250 OK"


@pytest.mark.parametrize("sender", [SENDER, "Tienda <tiénda@example.es>"], ids=["ascii", "smtputf8"])
async def test_smtp_provider__same_transaction_as_send_message(sender: str, monkeypatch: pytest.MonkeyPatch) -> None:
    class FixedClock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> FixedClock:
            return cls(2026, 11, 24, 10, 0, tzinfo=UTC)

    monkeypatch.setattr("channels.providers.email.datetime", FixedClock)
    envelopes, port = Envelopes(), free_port()
    controller = Controller(envelopes, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    message = outbound(display_name="Ana Núñez", headers={"List-Unsubscribe": "<https://example.org/u/abc>"})
    p = SmtpEmailProvider(SmtpSettings(host="127.0.0.1", port=port, timeout=5, sender=sender))
    try:
        random.seed(3)
        await p.send(message)
        random.seed(3)
        async with p._connection() as client:  # the way it went before: aiosmtplib flattens the message itself
            await client.send_message(build_mime(message, sender=sender, domain=p.domain))
    finally:
        await p.close()
        controller.stop()

    direct, stdlib = envelopes.seen
    assert direct == stdlib
    assert direct[2] == ["ana@example.com"]


async def test_smtp_provider__20_concurrent_sends_over_a_pool_of_3(serve: Callable[[Any], int]) -> None:
    sink = CountingSink()
    p = provider(serve(sink), pool_size=3)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(p.send(outbound(message_id=f"msg-{i:02d}")) for i in range(20))), timeout=15)
        idle = len(p._idle)
    finally:
        await p.close()

    assert len(results) == 20
    assert {r.provider_message_id for r in results} == {f"<msg-{i:02d}@example.com>" for i in range(20)}
    received = sink.snapshot()
    assert len(received) == 20
    assert len({m["Message-ID"] for m in received}) == 20
    # Connections are reused: never more than pool_size opened, and they stay pooled for the next send.
    assert 1 <= sink.ehlos <= 3
    assert 1 <= idle <= 3
    assert p._idle == []  # close() empties the pool


async def test_smtp_provider__sequential_sends_reuse_one_connection(serve: Callable[[Any], int]) -> None:
    sink = CountingSink()
    p = provider(serve(sink))
    try:
        for i in range(5):
            await p.send(outbound(message_id=f"msg-{i}"))
    finally:
        await p.close()

    assert len(sink.snapshot()) == 5
    assert sink.ehlos == 1


async def test_smtp_provider__reopens_a_pooled_connection_that_was_closed(serve: Callable[[Any], int]) -> None:
    sink = CountingSink()
    p = provider(serve(sink))
    try:
        await p.send(outbound(message_id="msg-a"))
        p._idle[0].close()
        await p.send(outbound(message_id="msg-b"))
    finally:
        await p.close()

    assert [m["Message-ID"] for m in sink.snapshot()] == ["<msg-a@example.com>", "<msg-b@example.com>"]
    assert sink.ehlos == 2


@pytest.mark.parametrize(
    ("handler", "error", "code", "retriable"),
    [
        (RefuseRecipient("550 5.1.1 no such user"), InvalidRecipient, "550", False),
        (RefuseRecipient("553 5.1.3 bad address syntax"), InvalidRecipient, "553", False),
        (RefuseRecipient("451 4.3.0 try later"), ProviderUnavailable, "451", True),
        (RefuseRecipient("452 4.2.2 mailbox full"), ProviderUnavailable, "452", True),
        (RefuseData("554 rejected"), Rejected, "554", False),
        (RefuseData("552 5.3.4 message too big"), Rejected, "552", False),
        (RefuseData("421 4.7.0 try again later"), ProviderUnavailable, "421", True),
    ],
    ids=["rcpt-550", "rcpt-553", "rcpt-451", "rcpt-452", "data-554", "data-552", "data-421"],
)
async def test_smtp_provider__maps_smtp_replies_to_delivery_errors(
    serve: Callable[[Any], int], handler: Any, error: type[DeliveryError], code: str, retriable: bool
) -> None:
    p = provider(serve(handler))
    try:
        with pytest.raises(DeliveryError) as info:
            await asyncio.wait_for(p.send(outbound()), timeout=10)
    finally:
        await p.close()

    assert type(info.value) is error
    assert info.value.code == code
    assert info.value.retriable is retriable
    assert info.value.provider == "smtp"
    assert info.value.detail == code


async def test_smtp_provider__nothing_listening_is_retriable_provider_unavailable() -> None:
    p = provider(free_port())
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await asyncio.wait_for(p.send(outbound()), timeout=10)
    finally:
        await p.close()

    assert info.value.retriable is True
    assert info.value.reason == "provider_unavailable"
    assert info.value.provider == "smtp"


async def test_smtp_provider__failed_sends_give_their_pool_slot_back(serve: Callable[[Any], int]) -> None:
    # pool_size=1: if a failure leaked the slot, the second send would wait forever.
    p = provider(serve(RefuseRecipient("550 5.1.1 no such user")), pool_size=1)
    try:
        for _ in range(3):
            with pytest.raises(InvalidRecipient):
                await asyncio.wait_for(p.send(outbound()), timeout=5)
    finally:
        await p.close()


async def test_smtp_provider__invalid_address_fails_before_connecting() -> None:
    p = provider(free_port())  # nothing listens: reaching the network would be ProviderUnavailable

    with pytest.raises(InvalidRecipient):
        await p.send(outbound(address="not-an-address"))
