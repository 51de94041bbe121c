"""Deterministic ids and keyed hashes: the same event on the same channel always gets the same ids."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from channels.signatures import link_signature, safe_equal
from schemas.catalog import Channel
from schemas.settings import Settings


def message_id(tenant: str | None, dedupe_key: str, channel: str) -> str:
    """`msg-` + 24 hex digits of sha256(tenant | dedupe key | channel)."""
    digest = hashlib.sha256(f"{tenant or ''}|{dedupe_key}|{channel}".encode()).hexdigest()
    return f"msg-{digest[:24]}"


def key_message_ids(tenant: str | None, key: str) -> list[str]:
    """The message ids the router gives an event with idempotency key `key`: the event's own (its `rejected`,
    `suppressed`, `deduplicated`… statuses) and, per channel, its message or its first reminder's (`key|0`; the
    later reminders share that one's event id). Statuses do not carry the key; the message timeline looks these up."""
    channels = [c.value for c in Channel]
    return [message_id(tenant, key, "event"), *(message_id(tenant, basis, channel)
                                                 for basis in (key, f"{key}|0") for channel in channels)]


def idempotency_key(dedupe_key: str, channel: str, address: str) -> str:
    """DESIGN.md's key: sha256(idempotency key or event id | channel | recipient)."""
    return hashlib.sha256(f"{dedupe_key}|{channel}|{address.lower()}".encode()).hexdigest()


def recipient_hash(secret: bytes, address: str) -> str:
    """HMAC-SHA256 of a normalised address: joinable across records, useless without the secret."""
    return "sha256:" + hmac.new(secret, address.strip().lower().encode(), hashlib.sha256).hexdigest()


def record_message_id(topic: str, partition: int, offset: int) -> str:
    """An id for a record that could not be read at all, stable across redeliveries."""
    return "msg-" + hashlib.sha256(f"{topic}/{partition}/{offset}".encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class KeyRing:
    """`HERALD_SECRET` and the older ones still honoured during a rotation (`HERALD_SECRET_PREVIOUS`).

    The current secret signs and keys everything new; every secret of the ring verifies a link and finds what was
    keyed with it, until it is removed from the ring."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(settings.secret.get_secret_value().encode(),
                   tuple(s.get_secret_value().encode() for s in settings.secret_previous))

    @classmethod
    def of(cls, keys: KeyRing | bytes) -> KeyRing:
        """A ring from a ring or from one secret (callers and tests that know a single secret)."""
        return keys if isinstance(keys, KeyRing) else cls(keys)

    @property
    def all(self) -> tuple[bytes, ...]:
        """Every secret, current first: the order lookups try them in."""
        return (self.current, *self.previous)

    def sign(self, *parts: str) -> str:
        """`link_signature` with the current secret."""
        return link_signature(self.current, *parts)

    def verify(self, signature: str | None, *parts: str) -> bool:
        """Whether `signature` is any ring secret's signature of `parts` (never raises on hostile text)."""
        # Every secret is tried (no early exit), so the time taken does not tell which one matched.
        return [safe_equal(signature, link_signature(key, *parts)) for key in self.all].count(True) > 0
