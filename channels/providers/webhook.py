"""Webhook: POSTs a business customer's JSON to their own URL, signed per Standard Webhooks.

https://www.standardwebhooks.com — `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,` + base64
HMAC-SHA256 of `id.timestamp.body`). The URL comes from outside Herald, so every send goes through an SSRF
guard: the port must be an allowed one, the host is resolved once, every address it resolves to must be public
unicast (no private, loopback, link-local, site-local, shared, reserved or documentation range, also when hidden
inside an IPv6 address), and the request is pinned to the checked address so a second DNS answer (rebinding)
cannot point it elsewhere. `HERALD_WEBHOOK_TIMEOUT` bounds the whole send, from the DNS lookup to the end of the
answer: httpx's own timeouts are per connect and per read, so a receiver trickling one byte at a time would
otherwise hold a send for as long as it liked.

Each business customer (tenant) has its own signing secrets (`HERALD_WEBHOOK_TENANT_SECRETS`), so no customer can
forge Herald's webhooks to another. A tenant's secrets form a key ring: every one of them signs, and Standard
Webhooks puts the signatures side by side in `webhook-signature` (`v1,<a> v1,<b>`), so a customer rotating keys
verifies with either until the old one is removed. Tenants without their own use `HERALD_WEBHOOK_SIGNING_SECRET`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import socket
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from channels.base import OutboundMessage, SendResult
from channels.errors import InvalidRecipient, ProviderUnavailable, RateLimited, Rejected
from channels.host_clients import HostClients
from channels.http import build_client, http_errors, retry_after_seconds
from channels.signatures import standard_webhook_signature
from schemas.settings import Settings

USER_AGENT = "Herald/0.1"
DEV_SIGNING_SECRET = "whsec_" + base64.b64encode(b"herald-dev-webhook-secret-32byte").decode()

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IANA's special-purpose registries (RFC 6890 and later): none of these is a customer's public endpoint. Listed
# here as well as asked of `ipaddress`, whose own tables change between Python patch releases (on 3.11.7
# `fec0::1`, deprecated site-local, counts as global).
FORBIDDEN_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4"))
FORBIDDEN_V6 = tuple(ipaddress.IPv6Network(n) for n in (
    "::/8", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16", "fc00::/7",
    "fe80::/10", "fec0::/10", "ff00::/8"))
# NAT64's well-known prefix carries a public IPv4 address in its last 32 bits (DNS64 answers with it on
# IPv6-only networks), so it is judged by that address.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
DEFAULT_PORTS = frozenset({443, 8443})

# `443,8443` in the environment; without `NoDecode` pydantic-settings would JSON-decode it before the validator.
PortSet = Annotated[frozenset[int], NoDecode]
WEBHOOK_KEY_BYTES = (24, 64)  # the HMAC key's length range behind `whsec_`, as Standard Webhooks' libraries take


def signing_secret_problem(secret: str) -> str | None:
    """Why `secret` is not a Standard Webhooks signing secret (`whsec_` + base64 of 24 to 64 bytes), or None."""
    if not secret.startswith("whsec_"):
        return "must start with whsec_"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        return "is not whsec_ + base64"
    low, high = WEBHOOK_KEY_BYTES
    if not low <= len(key) <= high:
        return f"must hold {low} to {high} bytes after whsec_ (it holds {len(key)})"
    return None


def _secret_list(value: Any) -> Any:
    """One secret, a comma-separated ring, or a list, as a list of stripped secrets."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list | tuple):
        return [str(v.get_secret_value() if isinstance(v, SecretStr) else v).strip() for v in value]
    return value


class WebhookSettings(BaseSettings):
    """`HERALD_WEBHOOK_*`. There is no base URL: each message carries its receiver's URL as its address."""

    # hide_input_in_errors: a refused secret is never printed.
    model_config = SettingsConfigDict(env_prefix="HERALD_WEBHOOK_", extra="ignore", hide_input_in_errors=True)
    # Development value production refuses (channels/production.py). Field -> what to set instead.
    DEV_DEFAULTS: ClassVar[dict[str, str]] = {
        "signing_secret": "your own, e.g. whsec_ + `openssl rand -base64 32`"}

    signing_secret: SecretStr = Field(default=SecretStr(DEV_SIGNING_SECRET),
                                      description="`whsec_` + base64 of the HMAC key (24 to 64 bytes).")
    timeout: float = Field(default=10.0, gt=0, description="Seconds for the whole send: DNS lookup, connect, "
                           "request and answer together.")
    allow_private: bool = Field(default=False, description="Allow plain http, any port, and private, loopback "
                                "and link-local addresses (dev and tests only).")
    max_body_bytes: int = Field(default=256 * 1024, gt=0, description="Largest JSON body sent.")
    ports: PortSet = Field(default=DEFAULT_PORTS, description="Ports a webhook URL may name: `443,8443` "
                           "(comma-separated or a JSON list). Not applied when `allow_private` is on.")
    tenant_secrets: dict[str, tuple[SecretStr, ...]] = Field(
        default_factory=dict, description="Each tenant's own signing secrets, a JSON object tenant -> list of "
        "`whsec_` secrets (or one string): every one signs (key rotation); tenants not named use signing_secret.")

    @field_validator("signing_secret")
    @classmethod
    def _signing_ring(cls, value: SecretStr) -> SecretStr:
        # Empty is left to production's check (channels/production.py), which names what to set.
        for n, secret in enumerate(_secret_list(value), 1):
            if problem := signing_secret_problem(secret):
                raise ValueError(f"HERALD_WEBHOOK_SIGNING_SECRET (secret {n}) {problem}")
        return value

    @field_validator("tenant_secrets", mode="before")
    @classmethod
    def _tenant_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {tenant: _secret_list(secrets) for tenant, secrets in value.items()}
        return value

    @field_validator("tenant_secrets")
    @classmethod
    def _tenant_rings(cls, value: dict[str, tuple[SecretStr, ...]]) -> dict[str, tuple[SecretStr, ...]]:
        for tenant, secrets in value.items():
            if not tenant or not secrets:  # never the secret itself in the message, only where it is
                raise ValueError(f"HERALD_WEBHOOK_TENANT_SECRETS: tenant {tenant!r} needs at least one secret")
            for n, secret in enumerate(secrets, 1):
                if problem := signing_secret_problem(secret.get_secret_value()):
                    raise ValueError(f"HERALD_WEBHOOK_TENANT_SECRETS[{tenant!r}] (secret {n}) {problem}")
        return value

    def default_ring(self) -> tuple[str, ...]:
        """`HERALD_WEBHOOK_SIGNING_SECRET` as its secrets (a comma-separated ring)."""
        return tuple(_secret_list(self.signing_secret)) or (self.signing_secret.get_secret_value(),)

    def ring_for(self, tenant: str | None) -> tuple[str, ...]:
        """The secrets that sign a message for `tenant`: its own, else the default ring (never another tenant's)."""
        own = self.tenant_secrets.get(tenant) if tenant else None
        return tuple(s.get_secret_value() for s in own) if own else self.default_ring()

    def production_problems(self) -> list[str]:
        """Key sharing production refuses (channels/production.py): the dev secret in any ring, or one secret in two
        rings, which would let one customer forge Herald's webhooks to another."""
        problems = []
        owners: dict[str, list[str]] = {}
        for name, ring in [("default", self.default_ring()),
                           *((t, tuple(s.get_secret_value() for s in r)) for t, r in self.tenant_secrets.items())]:
            for secret in ring:
                owners.setdefault(secret, []).append(name)
        # The dev secret alone as the default is DEV_DEFAULTS' own check; anywhere else it is caught here.
        if DEV_SIGNING_SECRET in owners and (owners[DEV_SIGNING_SECRET] != ["default"]
                                             or len(self.default_ring()) > 1):
            problems.append("HERALD_WEBHOOK_TENANT_SECRETS or a ring in HERALD_WEBHOOK_SIGNING_SECRET holds the "
                            "development secret; set your own, e.g. whsec_ + `openssl rand -base64 32`")
        shared = sorted({", ".join(dict.fromkeys(names)) for names in owners.values() if len(set(names)) > 1})
        problems += [f"HERALD_WEBHOOK_TENANT_SECRETS: one secret is shared by {names}; give each tenant its own"
                     for names in shared]
        return problems

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("ports")
    @classmethod
    def _port_range(cls, value: frozenset[int]) -> frozenset[int]:
        if not value or any(not 0 < port < 65536 for port in value):
            raise ValueError("HERALD_WEBHOOK_PORTS must list ports between 1 and 65535")
        return value


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IP literals resolve to themselves)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def forbidden_address(ip: IPAddress) -> bool:
    """True for anything but a public unicast address, including private IPv4 hidden inside IPv6."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 host a.b.c.d itself
            return forbidden_address(ip.ipv4_mapped)
        if ip in NAT64:
            return forbidden_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        embedded = [a for a in (ip.sixtofour, *(ip.teredo or ())) if a is not None]
        return any(_special(a) for a in (ip, *embedded))
    return _special(ip)


def _special(ip: IPAddress) -> bool:
    """Any address outside public unicast, by `ipaddress`'s properties or IANA's registries."""
    table: tuple[ipaddress.IPv4Network, ...] | tuple[ipaddress.IPv6Network, ...] = (
        FORBIDDEN_V6 if isinstance(ip, ipaddress.IPv6Address) else FORBIDDEN_V4)
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or getattr(ip, "is_site_local", False) or not ip.is_global
            or any(ip in network for network in table))


# Of a receiver's answer, read only so its connection can be kept: at most this much, for at most this long.
ANSWER_READ_BYTES = 65_536
ANSWER_READ_SECONDS = 1.0


async def _drain(response: httpx.Response, limit: int = ANSWER_READ_BYTES, seconds: float = ANSWER_READ_SECONDS
                 ) -> None:
    """Read a receiver's answer, of no interest and possibly endless: a short one to its end, so its connection
    can be reused; past `limit` bytes or `seconds` no further (closing the response then drops the connection).
    The status is what counts: a body that drips, stops or breaks never turns an answered send into a failed
    one (which would be sent again). Raw bytes, never decoded: a small compressed answer could expand to any size."""
    if response.is_stream_consumed:  # answered from memory (a test's transport)
        return
    read = 0
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(seconds):
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > limit:
                    return


class StandardWebhookProvider:
    """Signed JSON POSTs to customers' endpoints. Calls no one back, so it is only a `Sender`."""

    name = "standard"
    channel = "webhook"
    settings_class = WebhookSettings

    def __init__(self, config: WebhookSettings, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.settings = settings
        self.clock = clock
        # No base URL: every request goes to an absolute, already-checked URL. Redirects are never followed
        # (httpx's default, asserted per request below): a 3xx could lead anywhere the guard did not check.
        # One client per host name: connections are pinned to an address, and kept alive for their host only.
        self.clients = HostClients(lambda: build_client("", headers={"User-Agent": USER_AGENT},
                                                        timeout=config.timeout, transport=transport),
                                   closes=transport is None)

    @classmethod
    def from_settings(cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
                      ) -> StandardWebhookProvider:
        return cls(WebhookSettings(), settings, transport=transport)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.clients.aclose()

    async def send(self, message: OutboundMessage) -> SendResult:
        body = self._body(message)
        try:
            # One deadline for everything the receiver's side can slow down, read by read or not at all.
            async with asyncio.timeout(self.config.timeout):
                return await self._post(message, body)
        except TimeoutError as exc:
            raise ProviderUnavailable(f"no answer within {self.config.timeout:g} s", code="timeout",
                                      provider=self.name) from exc

    async def _post(self, message: OutboundMessage, body: bytes) -> SendResult:
        # The message id is stable across retries, so the receiver can drop a redelivery; the tenant's key ring
        # signs side by side, and the receiver accepts any secret it holds.
        with http_errors(self.name):
            response = await self.signed_post(message.address, message.message_id, body,
                                              self.config.ring_for(message.options.get("tenant")))
        _raise_for_status(response, self.name)
        return SendResult(provider=self.name, provider_message_id=message.message_id,
                          detail=f"HTTP {response.status_code}")

    async def signed_post(self, address: str, webhook_id: str, body: bytes, secrets: Sequence[str]
                          ) -> httpx.Response:
        """POST `body` to `address` through the guard, signed per Standard Webhooks with every one of `secrets`;
        of the answer only the status matters (its body is drained, `_drain`). Raises the guard's
        `DeliveryError`s and httpx's errors."""
        url, host_header, server_name = await self._checked_url(address)
        timestamp = int(self.clock())
        headers = {
            "Host": host_header,
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(standard_webhook_signature(secret, webhook_id, timestamp, body)
                                          for secret in secrets),
        }
        async with self.clients.client(server_name) as client:
            request = client.build_request("POST", url, content=body, headers=headers,
                                           extensions={"sni_hostname": server_name})
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                await _drain(response)
            finally:
                await response.aclose()
        return response

    def _body(self, message: OutboundMessage) -> bytes:
        try:
            payload = json.loads(message.rendered["json"])
        except (KeyError, ValueError) as exc:
            raise Rejected("webhook template did not render JSON", code="template_invalid",
                           provider=self.name) from exc
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        if len(body) > self.config.max_body_bytes:
            raise Rejected(f"webhook body over {self.config.max_body_bytes} bytes", code="too_large",
                           provider=self.name)
        return body

    async def _checked_url(self, address: str) -> tuple[httpx.URL, str, str]:
        """The URL to connect to (pinned to a checked address), the `Host` header, and the TLS server name."""
        try:
            url = httpx.URL(address)
        except httpx.InvalidURL as exc:
            raise InvalidRecipient("not a URL", code="invalid_url", provider=self.name) from exc
        allowed_schemes = {"https", "http"} if self.config.allow_private else {"https"}
        if url.scheme not in allowed_schemes or not url.host:
            raise InvalidRecipient("webhook URL must be https", code="invalid_url", provider=self.name)
        port = url.port or (443 if url.scheme == "https" else 80)
        # An https URL on an odd port is how an SSRF reaches an internal service on a public address (an admin
        # console, a database's HTTP port); dev and tests (allow_private) run receivers on random local ports.
        if not self.config.allow_private and port not in self.config.ports:
            raise InvalidRecipient(f"webhook port {port} is not allowed", code="forbidden_port",
                                   provider=self.name)
        try:
            addresses = [ipaddress.ip_address(a) for a in await resolve_host(url.raw_host.decode("ascii"), port)]
        except (OSError, ValueError) as exc:  # socket.gaierror is an OSError
            raise ProviderUnavailable("webhook host did not resolve", code="dns_error",
                                      provider=self.name) from exc
        if not addresses:
            raise ProviderUnavailable("webhook host did not resolve", code="dns_error", provider=self.name)
        if not self.config.allow_private and any(forbidden_address(a) for a in addresses):
            raise InvalidRecipient("webhook host resolves to a non-public address", code="forbidden_address",
                                   provider=self.name)
        # The certificate is checked against the name in the customer's URL, not against the pinned address.
        pinned = url.copy_with(host=str(addresses[0]).partition("%")[0])
        return pinned, url.netloc.decode("ascii"), url.raw_host.decode("ascii")


def _raise_for_status(response: httpx.Response, provider: str) -> None:
    """Standard Webhooks receivers' answers: 2xx done, 410 gone for good, 429 and 5xx later, else refused."""
    status = response.status_code
    if response.is_success:
        return
    kwargs: dict[str, Any] = {"code": str(status), "provider": provider}
    if status == 410:
        raise InvalidRecipient("webhook endpoint is gone", code="gone", provider=provider)
    if status == 429:
        raise RateLimited("HTTP 429", retry_after=retry_after_seconds(response.headers.get("retry-after")),
                          **kwargs)
    if status >= 500 or status in (408, 425):  # server errors and the receiver's own timeouts
        raise ProviderUnavailable(f"HTTP {status}", **kwargs)
    raise Rejected(f"HTTP {status}", **kwargs)  # other 4xx, and 3xx since redirects are not followed
