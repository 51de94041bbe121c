"""Webhook channel: Standard Webhooks signing, the SSRF guard, and receivers' answers mapped."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import channels.providers.webhook as webhook_module
from channels.base import OutboundMessage, Sender, WebhookReceiver
from channels.errors import DeliveryError, InvalidRecipient, ProviderUnavailable, Rejected
from channels.host_clients import HostClients
from channels.providers.webhook import StandardWebhookProvider, WebhookSettings
from channels.rendering.render import Rendered
from channels.signatures import standard_webhook_signature, verify_standard_webhook
from schemas.settings import Settings

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "standardwebhooks"
NOW = 1_764_000_000
PUBLIC_URL = "https://93.184.216.34/hooks/herald"
DEV_SECRET = "whsec_" + base64.b64encode(b"herald-dev-webhook-secret-32byte").decode()


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def outbound(*, address: str = PUBLIC_URL, json_part: str | None = None, message_id: str = "msg-3f2a9c",
             parts: dict[str, str] | None = None) -> OutboundMessage:
    if parts is None:
        parts = {"json": fixture_text("order_confirmed.json") if json_part is None else json_part}
    return OutboundMessage(message_id=message_id, channel="webhook", address=address,
                           rendered=Rendered(template="order.confirmed/webhook", locale="es", parts=parts),
                           idempotency_key=f"key-{message_id}", event_type="order.confirmed",
                           metadata={"message_id": message_id, "recipient_id": "acme"})




@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HERALD_WEBHOOK_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings() -> Settings:
    return Settings(sim_url="http://sim.test", secret="test-secret")


Handler = Callable[[httpx.Request], httpx.Response]
Make = Callable[..., tuple[StandardWebhookProvider, list[httpx.Request]]]


@pytest.fixture
async def make(settings: Settings) -> AsyncIterator[Make]:
    providers: list[StandardWebhookProvider] = []

    def build(handler: Handler | None = None, *, allow_private: bool = False,
              clock: Callable[[], float] = lambda: NOW,
              **config: Any) -> tuple[StandardWebhookProvider, list[httpx.Request]]:
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return (handler or ok)(request)

        provider = StandardWebhookProvider(WebhookSettings(allow_private=allow_private, **config), settings,
                                           transport=httpx.MockTransport(record), clock=clock)
        providers.append(provider)
        return provider, seen

    yield build
    for provider in providers:
        await provider.close()


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(204)


def resolver(*addresses: str) -> Callable[[str, int], Any]:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


# --- settings and shape ---------------------------------------------------------------------------------------


def test_webhook_settings__dev_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    config = WebhookSettings()

    assert config.signing_secret.get_secret_value() == DEV_SECRET
    assert base64.b64decode(DEV_SECRET.removeprefix("whsec_")) == b"herald-dev-webhook-secret-32byte"
    assert config.timeout == 10.0
    assert config.allow_private is False
    assert config.max_body_bytes == 256 * 1024
    assert "whsec_" not in repr(config)

    monkeypatch.setenv("HERALD_WEBHOOK_ALLOW_PRIVATE", "true")
    assert WebhookSettings().allow_private is True


PORTS_ENV_CASES = [
    ("default", None, {443, 8443}),
    ("comma-separated", "443, 9443", {443, 9443}),
    ("one", "8443", {8443}),
    ("json-list", "[443, 10443]", {443, 10443}),
]


@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in PORTS_ENV_CASES], ids=[c[0] for c in PORTS_ENV_CASES])
def test_webhook_settings__ports_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                                      expected: set[int]) -> None:
    if value is not None:
        monkeypatch.setenv("HERALD_WEBHOOK_PORTS", value)

    assert WebhookSettings().ports == expected


@pytest.mark.parametrize("value", ["0", "443,70000", "", "https"], ids=["zero", "too-high", "empty", "word"])
def test_webhook_settings__bad_ports_refuse_to_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HERALD_WEBHOOK_PORTS", value)

    with pytest.raises(ValueError):
        WebhookSettings()


def test_standard_webhook__is_only_a_sender(settings: Settings) -> None:
    provider = StandardWebhookProvider.from_settings(settings)

    assert (provider.name, provider.channel) == ("standard", "webhook")
    assert isinstance(provider, Sender)
    assert not isinstance(provider, WebhookReceiver)


async def test_standard_webhook__from_settings_uses_the_transport(settings: Settings) -> None:
    seen: list[httpx.Request] = []
    provider = StandardWebhookProvider.from_settings(
        settings, transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200)))
    try:
        await provider.send(outbound())
    finally:
        await provider.close()

    assert len(seen) == 1


# --- the request built and signed -----------------------------------------------------------------------------


async def test_standard_webhook__builds_the_signed_request(make: Make) -> None:
    provider, seen = make()

    result = await provider.send(outbound())

    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == PUBLIC_URL
    expected_body = json.dumps(json.loads(fixture_text("order_confirmed.json")), ensure_ascii=False,
                               separators=(",", ":")).encode()
    assert request.content == expected_body
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Herald/0.1"
    assert request.headers["webhook-id"] == "msg-3f2a9c"
    assert request.headers["webhook-timestamp"] == str(NOW)
    assert request.headers["webhook-signature"] == standard_webhook_signature(DEV_SECRET, "msg-3f2a9c", NOW,
                                                                              expected_body)
    assert result.provider == "standard"
    assert result.provider_message_id == "msg-3f2a9c"
    assert result.detail == "HTTP 204"


async def test_standard_webhook__signature_verifies_with_the_receiver_check(make: Make) -> None:
    provider, seen = make()

    await provider.send(outbound())

    request = seen[0]
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert verify_standard_webhook(DEV_SECRET, headers, request.content, now=NOW) is True
    assert verify_standard_webhook(DEV_SECRET, headers, request.content + b" ", now=NOW) is False
    assert verify_standard_webhook("whsec_" + base64.b64encode(b"x" * 32).decode(), headers, request.content,
                                   now=NOW) is False
    assert verify_standard_webhook(DEV_SECRET, headers, request.content, now=NOW + 3600) is False


def test_standard_webhook__signature_scheme_reproduces_the_published_test_vector() -> None:
    vector = json.loads(fixture_text("test_vector.json"))

    signature = standard_webhook_signature(vector["secret"], vector["msg_id"], vector["timestamp"],
                                           vector["body"].encode())

    assert signature == vector["signature"]


async def test_standard_webhook__webhook_id_is_stable_across_retries(make: Make) -> None:
    times = iter([NOW, NOW + 60])
    provider, seen = make(clock=lambda: next(times))

    await provider.send(outbound())
    await provider.send(outbound())

    first, again = seen
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == "msg-3f2a9c"
    assert first.headers["webhook-timestamp"] != again.headers["webhook-timestamp"]
    assert first.headers["webhook-signature"] != again.headers["webhook-signature"]


BODY_CASES = [
    ("not-json", {"json": "{'type': 'order.confirmed'}"}, "template_invalid"),
    ("truncated", {"json": '{"type": "order.confirmed"'}, "template_invalid"),
    ("empty", {"json": ""}, "template_invalid"),
    ("no-json-part", {"text": "hello"}, "template_invalid"),
    ("too-large", {"json": json.dumps({"blob": "x" * (256 * 1024)})}, "too_large"),
]


@pytest.mark.parametrize(("parts", "code"), [c[1:] for c in BODY_CASES], ids=[c[0] for c in BODY_CASES])
async def test_standard_webhook__bad_body_is_rejected_unsent(make: Make, parts: dict[str, str], code: str) -> None:
    provider, seen = make()

    with pytest.raises(Rejected) as caught:
        await provider.send(outbound(parts=parts))

    assert caught.value.code == code
    assert seen == []


async def test_standard_webhook__body_at_the_limit_is_sent(make: Make) -> None:
    provider, seen = make()
    padding = 256 * 1024 - len(b'{"blob":""}')

    await provider.send(outbound(json_part=json.dumps({"blob": "x" * padding})))

    assert len(seen[0].content) == 256 * 1024


# --- SSRF guard -----------------------------------------------------------------------------------------------

SSRF_CASES = [
    ("loopback-v4", "https://127.0.0.1/hook", True),
    ("loopback-v6", "https://[::1]/hook", True),
    ("private-10", "https://10.0.0.1/hook", True),
    ("private-192-168", "https://192.168.1.1/hook", True),
    ("private-172-16", "https://172.16.5.4/hook", True),
    ("cloud-metadata-link-local", "https://169.254.169.254/latest/meta-data/", True),
    ("ipv4-mapped-loopback", "https://[::ffff:127.0.0.1]/hook", True),
    ("unspecified", "https://0.0.0.0/hook", True),
    ("unspecified-v6", "https://[::]/hook", True),
    ("carrier-grade-nat", "https://100.64.0.1/hook", True),
    ("multicast", "https://224.0.0.1/hook", True),
    ("reserved", "https://240.0.0.1/hook", True),
    ("unique-local-v6", "https://[fd00::1]/hook", True),
    ("link-local-v6", "https://[fe80::1]/hook", True),
    ("6to4-wrapping-loopback", "https://[2002:7f00:1::]/hook", True),
    ("public-v4", "https://93.184.216.34/hook", False),
    ("public-v6", "https://[2606:2800:220:1:248:1893:25c8:1946]/hook", False),
]


@pytest.mark.parametrize(("url", "forbidden"), [c[1:] for c in SSRF_CASES], ids=[c[0] for c in SSRF_CASES])
async def test_standard_webhook__ssrf_guard_by_address(make: Make, url: str, forbidden: bool) -> None:
    provider, seen = make()

    if forbidden:
        with pytest.raises(InvalidRecipient) as caught:
            await provider.send(outbound(address=url))
        assert caught.value.code == "forbidden_address"
        assert caught.value.retriable is False
        assert seen == []
    else:
        await provider.send(outbound(address=url))
        assert len(seen) == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://[::1]:8080/hook", "https://10.0.0.1/hook",
                                 "http://169.254.169.254/"], ids=["loopback", "loopback-v6", "private", "metadata"])
async def test_standard_webhook__allow_private_lets_dev_reach_local_receivers(make: Make, url: str) -> None:
    provider, seen = make(allow_private=True)

    await provider.send(outbound(address=url))

    assert str(seen[0].url) == url


# Every special-purpose range, whether the URL names it or the customer's DNS answers with it.
RESERVED_CASES = [
    ("site-local-v6", "fec0::1"),
    ("site-local-v6-high", "feff:ffff::1"),
    ("ipv4-mapped-loopback", "::ffff:127.0.0.1"),
    ("ipv4-mapped-private", "::ffff:10.0.0.1"),
    ("ipv4-mapped-metadata", "::ffff:169.254.169.254"),
    ("ipv4-compatible-loopback", "::127.0.0.1"),
    ("shared-address-space", "100.64.1.1"),
    ("shared-address-space-top", "100.127.255.254"),
    ("cloud-metadata", "169.254.169.254"),
    ("unspecified", "0.0.0.0"),
    ("this-network", "0.1.2.3"),
    ("multicast", "224.0.0.1"),
    ("multicast-v6", "ff02::1"),
    ("unique-local-v6", "fc00::1"),
    ("loopback-v6", "::1"),
    ("unspecified-v6", "::"),
    ("loopback-v4-range", "127.1.2.3"),
    ("ietf-protocol-assignments", "192.0.0.9"),
    ("documentation-v4", "192.0.2.10"),
    ("documentation-v4-2", "198.51.100.7"),
    ("documentation-v4-3", "203.0.113.9"),
    ("documentation-v6", "2001:db8::1"),
    ("documentation-v6-2024", "3fff::1"),
    ("benchmarking", "198.18.0.1"),
    ("6to4-relay-anycast", "192.88.99.1"),
    ("reserved-class-e", "240.0.0.1"),
    ("broadcast", "255.255.255.255"),
    ("6to4-wrapping-private", "2002:a00:1::1"),
    ("teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
    ("nat64-wrapping-loopback", "64:ff9b::7f00:1"),
    ("nat64-local-use", "64:ff9b:1::a00:1"),
    ("discard-only-v6", "100::1"),
    ("srv6-sids", "5f00::1"),
    ("link-local-v6", "fe80::1"),
]


def _literal_url(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}/hook"


@pytest.mark.parametrize("address", [c[1] for c in RESERVED_CASES], ids=[c[0] for c in RESERVED_CASES])
@pytest.mark.parametrize("named_by", ["url", "dns"])
async def test_standard_webhook__every_special_range_is_refused(make: Make, monkeypatch: pytest.MonkeyPatch,
                                                                address: str, named_by: str) -> None:
    monkeypatch.setattr(webhook_module, "resolve_host", resolver(address))
    provider, seen = make()
    url = _literal_url(address) if named_by == "url" else "https://hooks.example.com/herald"

    with pytest.raises(InvalidRecipient) as caught:
        await provider.send(outbound(address=url))

    assert caught.value.code == "forbidden_address"
    assert caught.value.retriable is False
    assert seen == []


# An IPv6 address that is only a public IPv4 one in disguise is judged by that IPv4 address.
WRAPPED_PUBLIC_CASES = [
    ("ipv4-mapped-public", "::ffff:93.184.216.34"),
    ("nat64-public", "64:ff9b::5db8:d822"),
]


@pytest.mark.parametrize("address", [c[1] for c in WRAPPED_PUBLIC_CASES], ids=[c[0] for c in WRAPPED_PUBLIC_CASES])
async def test_standard_webhook__public_ipv4_wrapped_in_ipv6_is_sent(make: Make, monkeypatch: pytest.MonkeyPatch,
                                                                    address: str) -> None:
    monkeypatch.setattr(webhook_module, "resolve_host", resolver(address))
    provider, seen = make()

    await provider.send(outbound(address="https://hooks.example.com/herald"))

    assert len(seen) == 1


PORT_CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    ("default-443", "https://93.184.216.34/hook", {}, True),
    ("explicit-443", "https://93.184.216.34:443/hook", {}, True),
    ("8443", "https://93.184.216.34:8443/hook", {}, True),
    ("ssh", "https://93.184.216.34:22/hook", {}, False),
    ("redis", "https://93.184.216.34:6379/hook", {}, False),
    ("http-alt", "https://93.184.216.34:8080/hook", {}, False),
    ("https-on-80", "https://93.184.216.34:80/hook", {}, False),
    ("hostname-on-odd-port", "https://hooks.example.com:9200/hook", {}, False),
    ("configured-9443", "https://93.184.216.34:9443/hook", {"ports": {9443}}, True),
    ("443-not-configured", "https://93.184.216.34/hook", {"ports": {9443}}, False),
    ("allow-private-lifts-it", "http://127.0.0.1:6379/hook", {"allow_private": True}, True),
]


@pytest.mark.parametrize(("url", "config", "allowed"), [c[1:] for c in PORT_CASES], ids=[c[0] for c in PORT_CASES])
async def test_standard_webhook__only_allowed_ports(make: Make, monkeypatch: pytest.MonkeyPatch, url: str,
                                                   config: dict[str, Any], allowed: bool) -> None:
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["93.184.216.34"]

    monkeypatch.setattr(webhook_module, "resolve_host", resolve)
    provider, seen = make(**config)

    if allowed:
        await provider.send(outbound(address=url))
        assert len(seen) == 1
    else:
        with pytest.raises(InvalidRecipient) as caught:
            await provider.send(outbound(address=url))
        assert caught.value.code == "forbidden_port"
        assert caught.value.retriable is False
        assert (seen, asked) == ([], [])  # refused before any lookup or connection


HOSTNAME_CASES = [
    ("public", ("93.184.216.34",), None),
    ("public-v4-and-v6", ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"), None),
    ("private", ("10.1.2.3",), "forbidden_address"),
    ("loopback", ("127.0.0.1",), "forbidden_address"),
    ("one-of-many-private", ("93.184.216.34", "192.168.0.10"), "forbidden_address"),
    ("mapped-loopback", ("::ffff:127.0.0.1",), "forbidden_address"),
]


@pytest.mark.parametrize(("addresses", "code"), [c[1:] for c in HOSTNAME_CASES], ids=[c[0] for c in HOSTNAME_CASES])
async def test_standard_webhook__ssrf_guard_by_resolved_hostname(make: Make, monkeypatch: pytest.MonkeyPatch,
                                                                 addresses: tuple[str, ...], code: str | None) -> None:
    monkeypatch.setattr(webhook_module, "resolve_host", resolver(*addresses))
    provider, seen = make()

    if code:
        with pytest.raises(InvalidRecipient) as caught:
            await provider.send(outbound(address="https://hooks.example.com/herald"))
        assert caught.value.code == code
        assert seen == []
    else:
        await provider.send(outbound(address="https://hooks.example.com/herald"))
        assert len(seen) == 1


async def test_standard_webhook__request_is_pinned_to_the_checked_address(make: Make,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A second DNS answer (rebinding) cannot redirect the request: it goes to the address that was checked.
    monkeypatch.setattr(webhook_module, "resolve_host", resolver("93.184.216.34"))
    provider, seen = make()

    await provider.send(outbound(address="https://hooks.example.com:8443/herald?tenant=acme"))

    [request] = seen
    assert str(request.url) == "https://93.184.216.34:8443/herald?tenant=acme"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


async def test_standard_webhook__connections_are_kept_alive_per_host_and_never_shared_between_hosts(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two customers' hosts on one address (a shared load balancer): each reuses its own connections, and no
    # connection ever carries the other's requests (it was pinned, and over TLS verified, for one name).
    monkeypatch.setattr(webhook_module, "resolve_host", resolver("127.0.0.1"))
    hosts_by_connection: dict[tuple[str, int], set[str]] = {}

    async def receive(request: web.Request) -> web.Response:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")
        hosts_by_connection.setdefault(peer, set()).add(request.headers["Host"].partition(":")[0])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    async with TestServer(app, host="127.0.0.1") as server:
        provider = StandardWebhookProvider(WebhookSettings(allow_private=True), settings)
        try:
            for i in range(20):
                for host in ("hooks-a.test", "hooks-b.test"):
                    await provider.send(outbound(address=f"http://{host}:{server.port}/hook", message_id=f"m{i}"))
        finally:
            await provider.close()
    assert all(len(hosts) == 1 for hosts in hosts_by_connection.values()), hosts_by_connection
    by_host = [sum(host in hosts for hosts in hosts_by_connection.values())
               for host in ("hooks-a.test", "hooks-b.test")]
    assert by_host == [1, 1], hosts_by_connection  # 20 requests each, one connection each (was 20 each)


async def test_standard_webhook__an_endless_answer_is_cut_off_and_the_send_still_counts(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_module, "resolve_host", resolver("127.0.0.1"))
    written = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while written < 50_000_000:
                await response.write(b"x" * 16_384)
                written += 16_384
        return response

    app = web.Application()
    app.router.add_post("/hook", endless)
    async with TestServer(app, host="127.0.0.1") as server:
        provider = StandardWebhookProvider(WebhookSettings(allow_private=True, timeout=5), settings)
        try:
            result = await provider.send(outbound(address=f"http://hooks.test:{server.port}/hook"))
        finally:
            await provider.close()
    assert result.detail == "HTTP 200"
    assert written < 5_000_000  # the receiver was cut off after about 64 KiB (and socket buffers), not read out


async def test_standard_webhook__an_answer_whose_body_drips_or_breaks_still_counts_as_answered(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # The 2xx is what counts: a body that arrives a byte a second, or stops before its Content-Length, must not
    # turn a delivered webhook into a failed one that is sent again.
    monkeypatch.setattr(webhook_module, "resolve_host", resolver("127.0.0.1"))

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(30):
                await response.write(b".")
                await asyncio.sleep(1)
        return response

    async def broken(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=202, headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"only ten b")
        assert request.transport is not None
        request.transport.close()  # the rest never comes
        return response

    app = web.Application()
    app.router.add_post("/drip", drip)
    app.router.add_post("/broken", broken)
    async with TestServer(app, host="127.0.0.1") as server:
        provider = StandardWebhookProvider(WebhookSettings(allow_private=True, timeout=5), settings)
        try:
            started = time.monotonic()
            dripped = await provider.send(outbound(address=f"http://hooks.test:{server.port}/drip"))
            took = time.monotonic() - started
            cut = await provider.send(outbound(address=f"http://hooks.test:{server.port}/broken", message_id="m2"))
        finally:
            await provider.close()
    assert dripped.detail == "HTTP 200" and took < 3  # not the 5 s deadline, not a timeout
    assert cut.detail == "HTTP 202"


async def test_host_clients__the_least_recently_used_host_is_closed_once_its_request_is_done() -> None:
    closed: list[str] = []

    class Named(httpx.AsyncClient):
        async def aclose(self) -> None:
            closed.append(self.headers["x-name"])
            await super().aclose()

    made = iter(f"c{i}" for i in range(10))
    clients = HostClients(lambda: Named(headers={"x-name": next(made)}), size=2)
    async with clients.client("a") as a:
        async with clients.client("b"):
            pass
        async with clients.client("c"):  # "a" is the least recently used, but still in use
            assert closed == []
        assert a.headers["x-name"] == "c0" and not a.is_closed
    assert closed == ["c0"] and len(clients) == 2
    async with clients.client("b") as b:  # kept, and now the most recent: "c" goes next
        assert b.headers["x-name"] == "c1"
    async with clients.client("d"):
        pass
    assert closed == ["c0", "c2"]
    await clients.aclose()
    assert sorted(closed) == ["c0", "c1", "c2", "c3"]


async def test_standard_webhook__resolver_sees_host_and_default_port(make: Make,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["93.184.216.34"]

    monkeypatch.setattr(webhook_module, "resolve_host", resolve)
    provider, _ = make()

    await provider.send(outbound(address="https://hooks.example.com/herald"))

    assert asked == [("hooks.example.com", 443)]


@pytest.mark.parametrize("failure", [socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
                                     OSError("network unreachable")], ids=["nxdomain", "os-error"])
async def test_standard_webhook__unresolvable_host_is_retriable(make: Make, monkeypatch: pytest.MonkeyPatch,
                                                                failure: OSError) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        raise failure

    monkeypatch.setattr(webhook_module, "resolve_host", resolve)
    provider, seen = make()

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.send(outbound(address="https://hooks.example.com/herald"))

    assert caught.value.code == "dns_error"
    assert seen == []


URL_CASES = [
    ("plain-http-public", "http://93.184.216.34/hook", False),
    ("ftp", "ftp://93.184.216.34/hook", False),
    ("ftp-even-when-private-allowed", "ftp://127.0.0.1/hook", True),
    ("file", "file:///etc/passwd", True),
    ("no-scheme", "93.184.216.34/hook", False),
    ("no-host", "https:///hook", False),
    ("not-a-url", "http://[::1/hook", True),
]


@pytest.mark.parametrize(("url", "allow_private"), [c[1:] for c in URL_CASES], ids=[c[0] for c in URL_CASES])
async def test_standard_webhook__only_https_urls_unless_private_allowed(make: Make, url: str,
                                                                        allow_private: bool) -> None:
    provider, seen = make(allow_private=allow_private)

    with pytest.raises(InvalidRecipient) as caught:
        await provider.send(outbound(address=url))

    assert caught.value.code == "invalid_url"
    assert seen == []


# --- the receiver's answer ------------------------------------------------------------------------------------

# Success and redirects; 4xx and 5xx (410 gone, 429 with Retry-After) and transport errors are in the provider
# contract (tests/unit/test_provider_contract.py).
RESPONSE_CASES: list[tuple[str, int, dict[str, str], type[DeliveryError] | None, str | None]] = [
    ("200", 200, {}, None, None),
    ("201", 201, {}, None, None),
    ("202", 202, {}, None, None),
    ("204", 204, {}, None, None),
    ("301-not-followed", 301, {"Location": "http://169.254.169.254/"}, Rejected, "301"),
    ("302-not-followed", 302, {"Location": "http://127.0.0.1/admin"}, Rejected, "302"),
    ("307-not-followed", 307, {"Location": "https://93.184.216.34/elsewhere"}, Rejected, "307"),
    ("308-not-followed", 308, {"Location": "https://93.184.216.34/elsewhere"}, Rejected, "308"),
]


@pytest.mark.parametrize(("status", "headers", "error", "code"), [c[1:] for c in RESPONSE_CASES],
                         ids=[c[0] for c in RESPONSE_CASES])
async def test_standard_webhook__receiver_answer_maps(make: Make, status: int, headers: dict[str, str],
                                                      error: type[DeliveryError] | None, code: str | None) -> None:
    provider, seen = make(lambda _: httpx.Response(status, headers=headers, text="receiver says no"))

    if error is None:
        result = await provider.send(outbound())
        assert result.detail == f"HTTP {status}"
    else:
        with pytest.raises(DeliveryError) as caught:
            await provider.send(outbound())
        assert type(caught.value) is error
        assert caught.value.code == code
        assert caught.value.provider == "standard"
    assert len(seen) == 1  # redirects are never followed


# --- one deadline for the whole send --------------------------------------------------------------------------


def _trickle(first: bytes, drip: bytes, rest: bytes) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                                Awaitable[None]]:
    """A receiver that sends `first`, then `drip` one byte every 0.5 s, then `rest`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(first)
            for byte in drip:  # one byte every 0.5 s: each read is quick, the answer never ends in time
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.5)
            writer.write(rest)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return serve


TRICKLE_CASES = [
    ("status-line", b"", b"HTTP/1.1 204 No Content", b"\r\nContent-Length: 0\r\n\r\n"),
    ("headers", b"HTTP/1.1 204 No Content\r\n", b"X-Slow: " + b"z" * 16, b"\r\nContent-Length: 0\r\n\r\n"),
]


@pytest.mark.parametrize(("first", "drip", "rest"), [c[1:] for c in TRICKLE_CASES], ids=[c[0] for c in TRICKLE_CASES])
async def test_standard_webhook__answer_trickled_past_the_deadline_is_cut_at_it(settings: Settings, first: bytes,
                                                                                drip: bytes, rest: bytes) -> None:
    server = await asyncio.start_server(_trickle(first, drip, rest), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = StandardWebhookProvider(WebhookSettings(allow_private=True, timeout=1.0), settings)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.send(outbound(address=f"http://127.0.0.1:{port}/hook"))
        elapsed = time.monotonic() - started
    finally:
        await provider.close()
        server.close()

    assert elapsed < 2.0
    assert caught.value.code == "timeout"
    assert caught.value.retriable is True
    assert caught.value.provider == "standard"


async def test_standard_webhook__quick_answer_is_not_cut(settings: Settings) -> None:
    server = await asyncio.start_server(_trickle(b"HTTP/1.1 204 No Content\r\n", b"", b"Content-Length: 0"
                                                       b"\r\n\r\n"), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = StandardWebhookProvider(WebhookSettings(allow_private=True, timeout=1.0), settings)
    try:
        result = await provider.send(outbound(address=f"http://127.0.0.1:{port}/hook"))
    finally:
        await provider.close()
        server.close()

    assert result.detail == "HTTP 204"
