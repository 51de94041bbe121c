"""Deterministic ids and keyed hashes: the same event on the same channel always gets the same ids."""

from __future__ import annotations

import hashlib
import hmac


def message_id(tenant: str | None, dedupe_key: str, channel: str) -> str:
    """`msg-` + 24 hex digits of sha256(tenant | dedupe key | channel)."""
    digest = hashlib.sha256(f"{tenant or ''}|{dedupe_key}|{channel}".encode()).hexdigest()
    return f"msg-{digest[:24]}"


def idempotency_key(dedupe_key: str, channel: str, address: str) -> str:
    """DESIGN.md's key: sha256(idempotency key or event id | channel | recipient)."""
    return hashlib.sha256(f"{dedupe_key}|{channel}|{address.lower()}".encode()).hexdigest()


def recipient_hash(secret: bytes, address: str) -> str:
    """HMAC-SHA256 of a normalised address: joinable across records, useless without the secret."""
    return "sha256:" + hmac.new(secret, address.strip().lower().encode(), hashlib.sha256).hexdigest()


def record_message_id(topic: str, partition: int, offset: int) -> str:
    """An id for a record that could not be read at all, stable across redeliveries."""
    return "msg-" + hashlib.sha256(f"{topic}/{partition}/{offset}".encode()).hexdigest()[:24]
