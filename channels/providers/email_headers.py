"""Email header hygiene shared by the email providers (SMTP and SendGrid), so both accept and refuse the same input:
one-line header text, RFC 2047 encoding, and what may stand as a header name or an address."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import base64mime, quoprimime
from email.charset import RFC2047_CHROME_LEN, Charset
from email.header import Header

# The header names a caller may add (`OutboundMessage.headers`): letters, digits and hyphens.
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,76}$")
# A bare addr-spec (`local@domain`): no display name, comment or list, which could carry a second recipient.
ADDR_SPEC = re.compile(r"^[^\s@<>(),;:\"\[\]\\]+@[^\s@<>(),;:\"\[\]\\]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Length of each byte in a quoted-printable encoded word (`quoprimime.header_length`, one byte at a time).
_QP_LENGTH = [quoprimime.header_length(bytes([octet])) for octet in range(256)]


class Utf8HeaderCharset(Charset):
    """`Charset("utf-8")` with the stdlib's own line splitting of encoded words, in linear time.

    `Charset.header_encode_lines` re-encodes and re-measures the whole line for every character it adds ("brute
    force it", says its comment): a 40-character subject cost ~0.1 ms. The length of an encoded word only grows by
    what each character adds (quoted-printable) or by whole groups of bytes (base64), so adding up gives the same
    lengths, the same split points and the same words; tests/unit/test_email.py compares them with the stdlib's.
    """

    def __init__(self) -> None:
        super().__init__("utf-8")

    def header_encode_lines(self, string: str, maxlengths: Iterator[int]) -> list[str | None]:
        codec = "utf-8"
        whole = string.encode(codec)
        # `Charset._get_encoder` for utf-8 (SHORTEST): base64 only where it is strictly shorter.
        qp = not base64mime.header_length(whole) < quoprimime.header_length(whole)
        encoder_module = quoprimime if qp else base64mime
        extra = len(codec) + RFC2047_CHROME_LEN
        lines: list[str | None] = []
        start = size = 0  # the current line is string[start:i]; size: its bytes (base64) or encoded length (qp)
        maxlen = next(maxlengths) - extra
        for i, character in enumerate(string):
            octets = character.encode(codec)
            grown = size + (sum(_QP_LENGTH[o] for o in octets) if qp else len(octets))
            length = grown if qp else -(-grown // 3) * 4  # base64mime.header_length: 4 per 3 bytes or part of 3
            if length > maxlen:
                if not lines and start == i:  # nothing fits on the first line
                    lines.append(None)
                else:
                    lines.append(encoder_module.header_encode(string[start:i].encode(codec), charset=codec))
                start, size = i, grown - size
                maxlen = next(maxlengths) - extra
            else:
                size = grown
        lines.append(encoder_module.header_encode(string[start:].encode(codec), charset=codec))
        return lines


UTF8_HEADERS = Utf8HeaderCharset()


def clean_header(value: str, limit: int = 998) -> str:
    """One line of header text: control characters (CR, LF, NUL…) become spaces, so nothing can be injected."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def encoded_header(value: str) -> str:
    """A cleaned header value, RFC 2047-encoded when it is not ASCII."""
    text = clean_header(value)
    return text if text.isascii() else Header(text, UTF8_HEADERS).encode()
