"""Email: header hygiene, the MIME we build, and the SMTP provider against a real aiosmtpd server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from channels.base import OutboundMessage
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, Rejected
from channels.providers.email import SmtpEmailProvider, SmtpSettings
from channels.providers.email import build_email as build_mime
from channels.providers.email_headers import clean_header
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
