"""Email header hygiene shared by the email providers (SMTP and SendGrid), so both accept and refuse the same input:
one-line header text, RFC 2047 encoding, and what may stand as a header name or an address."""

from __future__ import annotations

import re
from email.header import Header

# The header names a caller may add (`OutboundMessage.headers`): letters, digits and hyphens.
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,76}$")
# A bare addr-spec (`local@domain`): no display name, comment or list, which could carry a second recipient.
ADDR_SPEC = re.compile(r"^[^\s@<>(),;:\"\[\]\\]+@[^\s@<>(),;:\"\[\]\\]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean_header(value: str, limit: int = 998) -> str:
    """One line of header text: control characters (CR, LF, NUL…) become spaces, so nothing can be injected."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def encoded_header(value: str) -> str:
    """A cleaned header value, RFC 2047-encoded when it is not ASCII."""
    text = clean_header(value)
    return text if text.isascii() else Header(text, "utf-8").encode()
