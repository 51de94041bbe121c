"""Email over SMTP: MIME built with the stdlib, sent with aiosmtplib over a bounded pool of reused connections."""

from __future__ import annotations

import contextlib
import email.policy
import random
import re
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email import quoprimime
from email.charset import QP, Charset
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, getaddresses, parseaddr

import aiosmtplib
from pydantic import BaseModel, ConfigDict, SecretStr

from channels.base import OutboundMessage, SendResult
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, Rejected
from channels.providers.email_headers import ADDR_SPEC, HEADER_NAME, clean_header, encoded_header
from channels.rendering.attachments import add_attachments
from channels.resilience.priority import PrioritySlots
from schemas.settings import Settings

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


def _checked_address(message: OutboundMessage) -> None:
    if not ADDR_SPEC.match(message.address):
        raise InvalidRecipient("address cannot be put in a header")


def to_header(message: OutboundMessage) -> str:
    """The To header: the display name cleaned, RFC 2047-encoded where not ASCII, and the bare address."""
    return formataddr((clean_header(message.display_name or ""), message.address), charset="utf-8")


def email_headers(message: OutboundMessage, *, sender: str, domain: str,
                  date: datetime | None = None) -> list[tuple[str, str]]:
    """The top-level headers of an email, in order, each value cleaned (and RFC 2047-encoded where not ASCII)."""
    headers = [("From", sender),
               ("To", to_header(message)),
               ("Subject", encoded_header(message.rendered["subject"])),
               ("Date", format_datetime(date or datetime.now(UTC))),
               # The Message-ID is Herald's idempotency key at the SMTP level: a resend carries the same one.
               ("Message-ID", f"<{message.message_id}@{domain}>"),
               ("Content-Language", message.rendered.locale),
               ("Auto-Submitted", "auto-generated"),
               ("X-Herald-Message-ID", message.message_id)]
    for name, value in message.headers.items():
        if not HEADER_NAME.match(name):
            raise Rejected(f"invalid header name {name!r}")
        headers.append((name, encoded_header(value)))
    return headers


def build_email(message: OutboundMessage, *, sender: str, domain: str, date: datetime | None = None) -> Message:
    """A multipart/alternative email with a Message-ID derived from Herald's message id.

    Built with the stdlib's `email.mime` classes (compat32 policy): on these machines the `EmailMessage`
    API spent ~2 ms per message parsing its own headers, five times this. Every header value goes through
    `clean_header`, which is what keeps injection out, and the address must be a bare addr-spec. The SMTP provider
    sends the same bytes without building this object (`email_bytes`) unless the message has attachments.
    """
    rendered = message.rendered
    _checked_address(message)
    # typeshed says `_charset: str | None`; email.mime takes a Charset too, and its QP body encoding is the point.
    parts = [MIMEText(rendered["text"], "plain", _UTF8_QP),  # type: ignore[arg-type]
             MIMEText(rendered["html"], "html", _UTF8_QP)]  # type: ignore[arg-type]
    msg = MIMEMultipart("alternative", _subparts=parts)
    for name, value in email_headers(message, sender=sender, domain=domain, date=date):
        msg[name] = value
    return msg


# What `aiosmtplib.SMTP.send_message` writes for `build_email`'s message (the stdlib's BytesGenerator, compat32
# policy, "\n" line ends), produced without the object model: the generator re-parses every Content-Type it writes,
# folds each header through `email.header.Header` and compiles a fresh regex per boundary, together about 0.5 ms
# of a message. tests/unit/test_email.py checks the bytes are identical for all sorts of input.
_COMPAT32 = email.policy.compat32
_MAX_HEADER_LINE = 78  # compat32's max_line_length
_FROM_LINE = re.compile(r"^From ", re.MULTILINE)  # compat32 mangles these (mangle_from_) as the generator does
_NEWLINES = re.compile(r"\r\n|\r|\n")
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))  # as email.generator pads the random token
_PART_HEADERS = {subtype: f'Content-Type: text/{subtype}; charset="utf-8"\nMIME-Version: 1.0\n'
                          "Content-Transfer-Encoding: quoted-printable\n\n" for subtype in ("plain", "html")}
# Headers that change the SMTP envelope `send_message` derives from a message (or that it strips): a message with
# one of them among its extra headers goes the stdlib way.
ENVELOPE_HEADERS = frozenset({"from", "sender", "to", "cc", "bcc", "resent-date", "resent-from", "resent-sender",
                              "resent-to", "resent-cc", "resent-bcc"})


def _folded(name: str, value: str) -> str:
    """A header line as the generator folds it (compat32, 8-bit): a short printable ASCII value stays as it is (what
    `Header` returns for it), anything else is folded by the stdlib itself."""
    if len(name) + len(value) + 2 <= _MAX_HEADER_LINE and value.isascii() and value.isprintable():
        return f"{name}: {value}\n"
    return _COMPAT32.fold_binary(name, value).decode("ascii", "surrogateescape")


def _text_part(subtype: str, text: str) -> str:
    """A MIMEText part in UTF-8 quoted-printable, flattened (headers, blank line, body)."""
    body = quoprimime.body_encode(text.encode("utf-8").decode("latin-1")) if text else ""
    # The generator's last steps, each skipped when it would change nothing (the usual case: quoted-printable
    # output has "\n" line ends only).
    if "From " in body:
        body = _FROM_LINE.sub(">From ", body)
    if "\r" in body:
        body = _NEWLINES.sub("\n", body)
    return _PART_HEADERS[subtype] + body


def _boundary(text: str) -> str:
    """`Generator._make_boundary(text)`: a random boundary that no line of `text` could be mistaken for."""
    boundary = f"{'=' * 15}{random.randrange(sys.maxsize):0{_BOUNDARY_WIDTH}d}=="
    candidate, counter = boundary, 0
    while f"--{candidate}" in text and re.search(f"^--{re.escape(candidate)}(--)?$", text, re.MULTILINE):
        candidate = f"{boundary}.{counter}"
        counter += 1
    return candidate


def email_bytes(message: OutboundMessage, *, sender: str, domain: str, date: datetime | None = None) -> bytes:
    """`build_email`'s message as `aiosmtplib` flattens it for sending, byte for byte, built directly."""
    rendered = message.rendered
    _checked_address(message)
    parts = [_text_part("plain", rendered["text"]), _text_part("html", rendered["html"])]
    headers = email_headers(message, sender=sender, domain=domain, date=date)
    boundary = _boundary("\n".join(parts))
    lines = [_folded("Content-Type", f'multipart/alternative; boundary="{boundary}"'), "MIME-Version: 1.0\n"]
    lines += [_folded(name, value) for name, value in headers if name.lower() not in ("bcc", "resent-bcc")]
    delimiter = f"\n--{boundary}\n"
    lines += ["\n", f"--{boundary}\n", delimiter.join(parts), f"\n--{boundary}--\n"]
    return "".join(lines).encode("ascii", "surrogateescape")


@contextlib.contextmanager
def smtp_errors(provider: str) -> Iterator[None]:
    """Map aiosmtplib and socket errors to Herald's `DeliveryError` classes."""
    try:
        yield
    except DeliveryError:
        raise
    except aiosmtplib.SMTPRecipientsRefused as exc:
        code = exc.recipients[0].code if exc.recipients else 550
        if 400 <= code < 500:
            raise ProviderUnavailable("recipient deferred", code=str(code), provider=provider) from exc
        raise InvalidRecipient("recipient refused", code=str(code), provider=provider) from exc
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise Rejected("SMTP authentication failed", code=str(exc.code), provider=provider) from exc
    except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected) as exc:
        raise ProviderUnavailable(type(exc).__name__, provider=provider) from exc
    except aiosmtplib.SMTPResponseException as exc:
        if 400 <= exc.code < 500:
            raise ProviderUnavailable("SMTP deferred", code=str(exc.code), provider=provider) from exc
        raise Rejected("SMTP refused", code=str(exc.code), provider=provider) from exc
    except aiosmtplib.SMTPException as exc:
        raise ProviderUnavailable(type(exc).__name__, provider=provider) from exc
    except (OSError, TimeoutError) as exc:
        raise ProviderUnavailable(type(exc).__name__, provider=provider) from exc


class SmtpSettings(BaseModel):
    """Connection settings of one SMTP relay."""

    model_config = ConfigDict(extra="forbid")

    host: str = "localhost"
    port: int = 1025
    username: str | None = None
    password: SecretStr | None = None
    tls: str = "none"
    pool_size: int = 8
    timeout: float = 15.0
    sender: str = "Herald <no-reply@example.com>"

    @classmethod
    def from_settings(cls, s: Settings) -> SmtpSettings:
        return cls(host=s.smtp_host, port=s.smtp_port, username=s.smtp_username, password=s.smtp_password,
                   tls=s.smtp_tls, pool_size=s.smtp_pool_size, timeout=s.smtp_timeout, sender=s.email_from)


class SmtpEmailProvider:
    """Sends email through an SMTP relay, keeping up to `pool_size` authenticated connections open."""

    name = "smtp"
    channel = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.domain = parseaddr(settings.sender)[1].rpartition("@")[2] or "localhost"
        # The envelope sender `send_message` would read off the From header.
        self._envelope_sender = next((a for _, a in getaddresses([settings.sender])), None)
        self._idle: list[aiosmtplib.SMTP] = []
        # Critical sends take the next free connection ahead of every ordinary one waiting.
        self._slots = PrioritySlots(settings.pool_size)

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.host, port=s.port, timeout=s.timeout,
            username=s.username, password=s.password.get_secret_value() if s.password else None,
            use_tls=s.tls == "tls", start_tls=s.tls == "starttls",
            tls_context=ssl.create_default_context() if s.tls != "none" else None,
        )

    @contextlib.asynccontextmanager
    async def _connection(self, urgent: bool = False) -> AsyncIterator[aiosmtplib.SMTP]:
        async with self._slots.slot(urgent=urgent):
            client = self._idle.pop() if self._idle else self._new_client()
            try:
                if not client.is_connected:
                    await client.connect()
                yield client
            except BaseException:
                client.close()
                raise
            else:
                self._idle.append(client)

    @classmethod
    def from_settings(cls, settings: Settings, **_: object) -> SmtpEmailProvider:
        return cls(SmtpSettings.from_settings(settings))

    async def start(self) -> None:
        """Nothing to do up front: connections open on first use."""

    async def send(self, message: OutboundMessage) -> SendResult:
        urgent = message.options.get("priority") == "critical"
        plain = not message.attachments and not any(name.lower() in ENVELOPE_HEADERS for name in message.headers)
        if plain and self._envelope_sender is not None:
            sender, data = self._envelope_sender, email_bytes(message, sender=self.settings.sender, domain=self.domain)
            # The envelope recipients `send_message` would read off the To header (the only address header here).
            recipients = [address for _, address in getaddresses([to_header(message)])]

            async def deliver(client: aiosmtplib.SMTP) -> None:
                await self._send_bytes(client, sender=sender, recipients=recipients, data=data)
        else:
            msg = build_email(message, sender=self.settings.sender, domain=self.domain)
            if message.attachments:
                msg = add_attachments(msg, message.attachments)

            async def deliver(client: aiosmtplib.SMTP) -> None:
                await client.send_message(msg)
        with smtp_errors(self.name):
            try:
                async with self._connection(urgent) as client:
                    await deliver(client)
            except aiosmtplib.SMTPServerDisconnected:
                # A pooled connection the server closed while idle: nothing was accepted, so one fresh try.
                async with self._connection(urgent) as client:
                    await deliver(client)
        # The server's reply text is not kept: some servers echo the recipient in it.
        return SendResult(provider=self.name, provider_message_id=f"<{message.message_id}@{self.domain}>")

    @staticmethod
    async def _send_bytes(client: aiosmtplib.SMTP, *, sender: str, recipients: list[str], data: bytes) -> None:
        """What `SMTP.send_message` does with a message it has flattened: the same MAIL options (SMTPUTF8 for
        a non-ASCII address, BODY=8BITMIME where offered), then `sendmail`."""
        if not recipients:
            raise ValueError("No recipient headers provided in message")
        # Reads the server's extensions: EHLO (HELO if refused) on a connection's first message, as send_message.
        await client._ehlo_or_helo_if_needed()
        options = []
        if not (sender + "".join(recipients)).isascii():
            if not client.supports_extension("smtputf8"):
                raise aiosmtplib.SMTPNotSupported("An address containing non-ASCII characters was provided, but "
                                                  "SMTPUTF8 is not supported by this server")
            options.append("SMTPUTF8")
        if client.supports_extension("8BITMIME"):
            options.append("BODY=8BITMIME")
        await client.sendmail(sender, recipients, data, mail_options=options)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()

