"""A running worker: webhooks and links on the public port, metrics and probes on the admin port, each bound to
its configured host only, every answer as `Server: Herald` with the security headers."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"}


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on TCP `port` in this network namespace (IPv4 and IPv6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def assert_hardened(response: httpx.Response) -> None:
    server = response.headers.get("server", "")
    assert server == "Herald", f"{response.url}: Server {server!r}"
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (str(response.url), name, dict(response.headers))


async def test_ports__public_port_serves_webhooks_only_and_admin_port_the_rest(stack: Stack) -> None:
    settings = stack.settings
    stack.start_worker()  # returns once the admin port's /ready answers 200
    public = f"http://127.0.0.1:{settings.web_port}"
    admin = f"http://127.0.0.1:{settings.admin_port}"
    with httpx.Client(timeout=10) as client:
        for path in ("/", "/metrics", "/health", "/ready", "/router/", "/table/", "/graph/", "/stats/"):
            response = client.get(public + path)
            assert response.status_code == 404, (path, response.status_code, response.text)
            assert_hardened(response)
        webhook = client.post(f"{public}/webhooks/sms/nobody", content=b"{}")
        assert webhook.status_code == 404 and webhook.text == "unknown provider"
        assert_hardened(webhook)

        scraped = client.get(f"{admin}/metrics")
        assert scraped.status_code == 200 and "herald_webhooks_total" in scraped.text
        assert 'result="unknown_provider"' in scraped.text  # the public port's request, counted
        health = client.get(f"{admin}/health")
        assert health.status_code == 200 and health.json() == {"status": "ok", "app": settings.app_id}
        ready = client.get(f"{admin}/ready")
        assert ready.status_code == 200 and ready.json() == {"ready": True}
        missing = client.get(f"{admin}/webhooks/sms/nobody")
        assert missing.status_code == 404
        for response in (scraped, health, ready, missing):
            assert_hardened(response)

    # Bound to the configured host (127.0.0.1), not to every interface as Faust's default `web_bind` would.
    assert listening_addresses(settings.web_port) == {"127.0.0.1"}
    assert listening_addresses(settings.admin_port) == {"127.0.0.1"}
