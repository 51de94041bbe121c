"""One-click unsubscribe (RFC 8058): signed links, the `List-Unsubscribe` headers, and what the link's page does.

https://www.rfc-editor.org/rfc/rfc8058: the mailbox provider POSTs `List-Unsubscribe=One-Click` to the HTTPS URI
of `List-Unsubscribe`, without cookies or any other context, so the URI itself must identify the person and be
unforgeable (a signature over recipient and channel). It must keep working, so it has no expiry. A GET never
unsubscribes: mail scanners and link previewers follow links, and only a person presses the page's button.
The sender's DKIM signature must cover both `List-Unsubscribe` and `List-Unsubscribe-Post` (RFC 8058 section 4).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from html import escape
from urllib.parse import quote, urlencode

from channels.webhooks import WebhookResponse
from consumers.identity import KeyRing
from consumers.observe.metrics import Metrics
from consumers.state.preferences import PreferenceLedger
from schemas.catalog import Channel

log = logging.getLogger(__name__)

ONE_CLICK = "List-Unsubscribe=One-Click"
_CHANNELS = frozenset(c.value for c in Channel)
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_ADDRESS_KEY = re.compile(r"sha256:[0-9a-f]{64}")


def _parts(recipient_id: str, channel: str, address_key: str | None = None) -> tuple[str, ...]:
    if address_key:  # its own purpose word: a link without the mailbox can never pass for one with it
        return ("unsubscribe-address", recipient_id, channel, address_key)
    return ("unsubscribe", recipient_id, channel)


def unsubscribe_link(secret: bytes | KeyRing, public_url: str, recipient_id: str, channel: str = "email",
                     address_key: str | None = None) -> str:
    """`{public_url}/unsubscribe/{recipient_id}?c={channel}[&a={address key}]&s={signature}`. `a`, the mailbox's
    keyed hash (consumers/state/preferences.py `address_key`), makes the unsubscribe hold for the mailbox itself."""
    params = {"c": channel, **({"a": address_key} if address_key else {}),
              "s": KeyRing.of(secret).sign(*_parts(recipient_id, channel, address_key))}
    return f"{public_url.rstrip('/')}/unsubscribe/{quote(recipient_id, safe='')}?{urlencode(params)}"


def verify_unsubscribe(secret: bytes | KeyRing, recipient_id: str, channel: str, signature: str,
                       address_key: str | None = None) -> bool:
    """Whether the link is signed by any secret of the ring: links never expire, so one signed before a rotation
    keeps working for as long as its secret stays in `HERALD_SECRET_PREVIOUS`."""
    return KeyRing.of(secret).verify(signature, *_parts(recipient_id, channel, address_key))


def list_unsubscribe_headers(link: str, mailto: str | None = None) -> dict[str, str]:
    """The RFC 2369 `List-Unsubscribe` header (HTTPS first, then `mailto:` when given) and RFC 8058's
    `List-Unsubscribe-Post`, which tells mailbox providers the HTTPS URI accepts a one-click POST."""
    uris = [link]
    if mailto:
        uris.append(mailto if mailto.lower().startswith("mailto:") else f"mailto:{mailto}")
    for uri in uris:
        # A header value must not be able to end the angle brackets or the header itself.
        if any(c in uri for c in "<>\r\n") or any(ord(c) < 0x20 for c in uri):
            raise ValueError("unsafe character in List-Unsubscribe URI")
    return {"List-Unsubscribe": ", ".join(f"<{uri}>" for uri in uris),
            "List-Unsubscribe-Post": ONE_CLICK}


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>Unsubscribe</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto; padding: 0 1em">
<h1>Unsubscribe</h1>
<p>Stop receiving promotional messages by {channel}? Messages you need, such as receipts and security codes,
will still be sent.</p>
<form method="post" action="{action}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button>
</form>
</body></html>
"""


class Unsubscribes:
    """What `/unsubscribe/{recipient_id}` does, without the web framework (`web.py` adapts requests to it)."""

    def __init__(self, ledger: PreferenceLedger, secret: bytes | KeyRing, metrics: Metrics) -> None:
        self.ledger = ledger
        self.secret = KeyRing.of(secret)
        self.metrics = metrics

    async def handle(self, recipient_id: str, query: Mapping[str, str], method: str) -> WebhookResponse:
        """POST (any body, per RFC 8058) unsubscribes; GET shows a page whose button POSTs; a bad link is 403."""
        channel, signature = query.get("c", "email"), query.get("s", "")
        address = query.get("a") or None  # links sent before it existed have no `a`: they keep working
        if (channel not in _CHANNELS or (address is not None and not _ADDRESS_KEY.fullmatch(address))
                or not verify_unsubscribe(self.secret, recipient_id, channel, signature, address)):
            return WebhookResponse(status=403, body=b"This link is not valid.", content_type=_TEXT)
        verb = method.upper()
        if verb in ("GET", "HEAD"):
            action = "?" + urlencode({"c": channel, **({"a": address} if address else {}), "s": signature})
            page = _PAGE.format(channel=escape(channel), action=escape(action, quote=True))
            return WebhookResponse(status=200, body=page.encode(), content_type=_HTML)
        if verb != "POST":
            return WebhookResponse(status=405, body=b"method not allowed", content_type=_TEXT)
        await self.ledger.set_promotional(recipient_id, channel, False, source="unsubscribe")
        if address:
            await self.ledger.unsubscribe_address(channel, key=address)
        self.metrics.unsubscribes.labels(channel).inc()
        log.info("unsubscribed", extra={"channel": channel})
        # A plain 200, never a redirect: RFC 8058 section 3.1 (redirected POSTs are unreliable). The body is ignored:
        # it is `List-Unsubscribe=One-Click`, form-encoded or multipart, and a person's button sends the same.
        return WebhookResponse(status=200, body=b"You are unsubscribed.", content_type=_TEXT)
