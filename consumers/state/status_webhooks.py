"""Tenants' outbound status webhook registrations, in a replicated store (`herald.state.status_webhooks`, key: the
tenant), so the HTTP API on any worker and the delivery on every worker read the same one.

The signing secret is Herald's to make (`whsec_` + base64 of 24 random bytes) and is shown once. It must be kept
usable (it keys an HMAC), so it is kept encrypted: AES-GCM under a key derived (HKDF-SHA256) from HERALD_SECRET, with
the tenant as associated data, so a reader of the topic cannot sign as Herald, nor move a secret to another tenant.
Every secret of HERALD_SECRET's ring (HERALD_SECRET_PREVIOUS) opens it; a rotation or an update seals it again with
the current one. A rotation keeps the old secret signing for `ROTATION_OVERLAP` beside the new one.
"""

from __future__ import annotations

import base64
import functools
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import ValidationError

from consumers.identity import KeyRing
from consumers.state.keyvalue import KeyValueStore
from schemas.subscriptions import SealedSecret, StatusWebhook, StatusWebhookRequest

log = logging.getLogger(__name__)

SECRET_BYTES = 24
ROTATION_OVERLAP = timedelta(hours=24)
MAX_SECRETS = 3  # the current one and the last two rotations' at most
SEAL_VERSION = "v1"
_KDF_INFO = b"herald/status-webhook-secrets/v1"


class SecretUnreadable(Exception):
    """A kept secret no key of HERALD_SECRET's ring opens (the secret it was sealed with is gone from the ring)."""


def generate_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@functools.lru_cache(maxsize=8)
def _cipher(key: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(key)
    return AESGCM(derived)


class SecretBox:
    """Seals secrets with HERALD_SECRET (current) and opens them with any secret of its ring."""

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    def seal(self, tenant: str, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = _cipher(self.keys.current).encrypt(nonce, secret.encode(), tenant.encode())
        return f"{SEAL_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, tenant: str, sealed: str) -> str:
        version, _, text = sealed.partition(".")
        if version != SEAL_VERSION:
            raise SecretUnreadable(f"unknown seal {version!r}")
        try:
            raw = base64.urlsafe_b64decode(text)
        except ValueError as exc:
            raise SecretUnreadable("not base64") from exc
        for key in self.keys.all:
            try:
                return _cipher(key).decrypt(raw[:12], raw[12:], tenant.encode()).decode()
            except InvalidTag:
                continue
        raise SecretUnreadable("no key of HERALD_SECRET's ring opens it")


class Registrations:
    """Each tenant's registration: read (parsed once per stored version), created, changed, rotated, deleted."""

    def __init__(self, store: KeyValueStore, keys: KeyRing, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.box = SecretBox(keys)
        self.clock = clock
        self._parsed: dict[str, tuple[bytes, StatusWebhook]] = {}

    def get(self, tenant: str) -> StatusWebhook | None:
        raw = self.store.get(tenant)
        if raw is None:
            self._parsed.pop(tenant, None)
            return None
        cached = self._parsed.get(tenant)
        if cached is not None and cached[0] == raw:
            return cached[1]
        try:
            registration = StatusWebhook.model_validate_json(raw)
        except ValidationError:
            log.warning("unreadable status webhook registration ignored", extra={"tenant": tenant})
            return None
        self._parsed[tenant] = (raw, registration)
        return registration

    def signing_secrets(self, registration: StatusWebhook, now: datetime | None = None) -> list[str]:
        """The secrets that sign now, current first: the current one and those of rotations not yet expired."""
        now = now or self.clock()
        live = [s for s in registration.secrets if s.expires_at is None or s.expires_at > now]
        return [self.box.open(registration.tenant, s.sealed) for s in live]

    async def put(self, tenant: str, request: StatusWebhookRequest) -> tuple[StatusWebhook, str | None]:
        """Create or change the tenant's registration; returns it and, when it was created, its new secret (the
        only time it is shown). A change keeps the secrets."""
        now = self.clock()
        existing = self.get(tenant)
        fields = request.model_dump()
        kept = self._reseal(existing, now) if existing is not None else []
        if existing is not None and kept:
            registration = existing.model_copy(update={**fields, "updated_at": now, "secrets": kept})
            await self._save(registration)
            return registration, None
        # New, or kept with secrets no key opens any more (HERALD_SECRET replaced outright): a new secret.
        secret = generate_secret()
        registration = StatusWebhook(tenant=tenant, created_at=existing.created_at if existing else now,
                                     updated_at=now, **fields,
                                     secrets=[SealedSecret(sealed=self.box.seal(tenant, secret), created_at=now)])
        await self._save(registration)
        return registration, secret

    async def rotate(self, tenant: str) -> tuple[StatusWebhook, str] | None:
        """A new current secret; the one before keeps signing for `ROTATION_OVERLAP`. None: no registration."""
        existing = self.get(tenant)
        if existing is None:
            return None
        now = self.clock()
        secret = generate_secret()
        older = [s.model_copy(update={"expires_at": s.expires_at or now + ROTATION_OVERLAP})
                 for s in self._reseal(existing, now)]
        registration = existing.model_copy(update={
            "updated_at": now,
            "secrets": [SealedSecret(sealed=self.box.seal(tenant, secret), created_at=now),
                        *older][:MAX_SECRETS]})
        await self._save(registration)
        return registration, secret

    async def delete(self, tenant: str) -> bool:
        if self.get(tenant) is None:
            return False
        await self.store.delete(tenant)
        self._parsed.pop(tenant, None)
        return True

    def _reseal(self, registration: StatusWebhook, now: datetime) -> list[SealedSecret]:
        """The unexpired secrets, sealed again with the current HERALD_SECRET (after a rotation of it); one that no
        key opens any more is dropped (it could sign nothing)."""
        kept = []
        for secret in registration.secrets:
            if secret.expires_at is not None and secret.expires_at <= now:
                continue
            try:
                clear = self.box.open(registration.tenant, secret.sealed)
            except SecretUnreadable:
                log.warning("status webhook secret unreadable, dropped", extra={"tenant": registration.tenant})
                continue
            kept.append(secret.model_copy(update={"sealed": self.box.seal(registration.tenant, clear)}))
        return kept

    async def _save(self, registration: StatusWebhook) -> None:
        # Durable: the answer that shows the secret is given only once the broker has it.
        await self.store.put(registration.tenant, registration.model_dump_json().encode(), durable=True)
