"""Finding messages in the timeline index: what a typed query is, the recipient hashes of an address, and the
summaries a list of messages shows. No HTTP here (consumers/console/find.py serves it).

An address is never looked up in the clear: the index's `recipient` column is `address_key(secret, channel,
address)` (consumers/pipeline/status.py), so a typed address is hashed the same way, for every channel it could be
and with every secret of the key ring (statuses written before a rotation are keyed with an older secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from consumers.identity import KeyRing, key_message_ids
from consumers.observe.timeline_index import SQL_BATCH, TimelineIndex
from consumers.state.preferences import PHONE_CHANNELS, address_key
from schemas.status import Status

MAX_QUERY = 512  # longest text looked up: no id, key or address Herald keeps is longer
MAX_RESULTS = 100  # messages listed per search, newest first
MAX_HASHES = 32  # recipient hashes one search may carry (forms of an address x ring secrets)
HASH = re.compile(r"sha256:[0-9a-f]{64}")

_EMAIL = re.compile(r"[^\s@<>,;:\"]+@[^\s@<>,;:\"]+\.[^\s@<>,;:\"]+")
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
# Digits with the separators people write numbers with; `+`, `00` or nothing in front (Herald adds a missing `+`).
_PHONE = re.compile(r"[\s(]*\+?[\d\s().\-/]+")
_PHONE_PREFIXES = ("tel:", "whatsapp:", "sms:")

# Badge tone of each status: ok (it went), warn (not yet, or not sent on purpose), bad (it did not go).
_OK = frozenset({Status.SENT, Status.DELIVERED, Status.READ, Status.OPENED, Status.CLICKED, Status.REPLIED})
_WARN = frozenset({Status.SCHEDULED, Status.RETRYING, Status.CANCELLED, Status.SUPPRESSED, Status.DEDUPLICATED,
                   Status.EXPIRED, Status.UNSUBSCRIBED})
_BAD = frozenset({Status.FAILED, Status.BOUNCED, Status.COMPLAINED, Status.REJECTED, Status.DEAD_LETTERED})


class Kind(StrEnum):
    """What a typed query looks like."""

    EMAIL = "email"
    PHONE = "phone"
    URL = "url"  # a webhook address
    ID = "id"  # a message id, event id or idempotency key (or a push token)


def tone(status: str) -> str:
    """The badge class of a status: `ok`, `warn`, `bad`, or "" (accepted, and words this version does not know)."""
    if status in _OK:
        return "ok"
    if status in _WARN:
        return "warn"
    return "bad" if status in _BAD else ""


def clean(text: str) -> str:
    """The query without what people paste around an address: blanks, `mailto:`, a name (`Ana <ana@…>`)."""
    text = text.strip()
    if (start := text.rfind("<")) >= 0 and text.endswith(">"):
        text = text[start + 1:-1].strip()
    if text[:7].lower() == "mailto:":
        text = text[7:].strip()
    return text


def _phone_text(text: str) -> str | None:
    """The number of a phone-looking query, its digits with the `+` in front if it had one (`tel:` and the like
    removed), or None."""
    lowered = text.lower()
    for prefix in _PHONE_PREFIXES:
        if lowered.startswith(prefix):
            text = text[len(prefix):].strip()
            break
    digits = "".join(c for c in text if c.isdigit())
    # E.164 has at most 15 digits; `00` in front of a country code adds two. Fewer than 6 is no phone number.
    if not _PHONE.fullmatch(text) or not 6 <= len(digits) <= 17:
        return None
    return ("+" if "+" in text else "") + digits


def classify(text: str) -> Kind:
    """What `text` (as typed) looks like: an email address, a phone number, a webhook URL, or an id."""
    text = clean(text)
    if _EMAIL.fullmatch(text):
        return Kind.EMAIL
    if _URL.fullmatch(text):
        return Kind.URL
    return Kind.PHONE if _phone_text(text) is not None else Kind.ID


def address_forms(text: str, kind: Kind) -> list[tuple[str, str]]:
    """(channel, address) pairs a typed address may have been sent as: email for an email address; SMS, voice and
    WhatsApp for a phone number (as typed, and with an international `00` read as `+`); push and webhook as
    typed, whatever it looks like. Each is normalised by `address_key` as Herald does when it sends."""
    text = clean(text)
    forms: list[tuple[str, str]] = []
    if kind is Kind.EMAIL:
        forms.append(("email", text))
    if kind is Kind.PHONE and (number := _phone_text(text)) is not None:
        numbers = [number, "+" + number[2:]] if number.startswith("00") else [number]
        forms += [(channel, n) for n in numbers for channel in sorted(PHONE_CHANNELS)]
    forms += [("push", text), ("webhook", text)]
    return forms


def recipient_hashes(text: str, kind: Kind, keys: KeyRing) -> list[str]:
    """The `recipient` values statuses of messages to `text` carry: every form of it, keyed with every secret of
    the ring, current first; no duplicates (channels that normalise alike give one hash)."""
    hashes = [address_key(secret, channel, address) for secret in keys.all
              for channel, address in address_forms(text, kind)]
    return list(dict.fromkeys(hashes))[:MAX_HASHES]


class MessageSummary(BaseModel):
    """One line of a search's results: a message and its latest status."""

    model_config = ConfigDict(extra="forbid")

    message_id: str
    event_id: str | None
    event_type: str | None
    channel: str | None
    tenant: str
    status: str
    tone: str
    at: datetime  # of its latest status


def _marks(values: Sequence[str]) -> str:
    return ",".join("?" * len(values))


def summaries(index: TimelineIndex, message_ids: Iterable[str]) -> list[MessageSummary]:
    """The summaries of those of `message_ids` the index knows, newest (latest status) first, at most
    `MAX_RESULTS`. Reads the indexed columns only, never the statuses' JSON."""
    ids = sorted(set(message_ids))
    rows: dict[str, list[tuple[float, int, int, str | None, str | None, str | None, str, str]]] = {}
    for start in range(0, len(ids), SQL_BATCH):
        chunk = ids[start:start + SQL_BATCH]
        for message_id, *values in index.query(
                "SELECT message_id, at, partition, offset, event_id, event_type, channel, tenant, status "
                f"FROM statuses WHERE message_id IN ({_marks(chunk)})", chunk):
            rows.setdefault(str(message_id), []).append(tuple(values))
    found = []
    for message_id, statuses in rows.items():
        statuses.sort(key=lambda r: r[:3])  # by time, then by the topic's order, as the timeline shows them
        at, _, _, _, _, _, tenant, status = statuses[-1]
        found.append(MessageSummary(
            message_id=message_id, tenant=tenant, status=status, tone=tone(status),
            at=datetime.fromtimestamp(at, UTC),
            event_id=next((r[3] for r in statuses if r[3]), None),
            event_type=next((r[4] for r in statuses if r[4]), None),
            channel=next((r[5] for r in statuses if r[5]), None)))
    found.sort(key=lambda s: (s.at, s.message_id), reverse=True)
    return found[:MAX_RESULTS]


def by_recipients(index: TimelineIndex, hashes: Sequence[str], tenant: str | None = None) -> list[MessageSummary]:
    """The newest messages with a status to any of `hashes` (of `tenant`, when given)."""
    if not hashes:
        return []
    hashes = list(hashes[:MAX_HASHES])
    where, params = f"recipient IN ({_marks(hashes)})", [*hashes]
    if tenant is not None:
        where, params = where + " AND tenant = ?", [*params, tenant]
    ids = [str(m) for (m, _) in index.query(
        f"SELECT message_id, MAX(at) AS last FROM statuses WHERE {where} GROUP BY message_id "
        "ORDER BY last DESC LIMIT ?", [*params, MAX_RESULTS])]
    return summaries(index, ids)


def resolve_id(index: TimelineIndex, text: str, tenant: str | None = None) -> tuple[str, list[str]] | None:
    """What an id-like query is, tried in this order: ("message", [its id]), ("event", its message ids) or
    ("key", the message ids of the events published with that idempotency key); None when it is none of them."""
    text = text.strip()
    if not text or len(text) > MAX_QUERY:
        return None
    scope, extra = ("", []) if tenant is None else (" AND tenant = ?", [tenant])
    if index.query(f"SELECT 1 FROM statuses WHERE message_id = ?{scope} LIMIT 1", [text, *extra]):
        return "message", [text]
    found = [str(m) for (m,) in index.query(
        f"SELECT DISTINCT message_id FROM statuses WHERE event_id = ?{scope}", [text, *extra])]
    if found:
        return "event", found
    by_key = [t.message_id for t in index.by_key(text, key_message_ids, tenant)]
    return ("key", by_key) if by_key else None
