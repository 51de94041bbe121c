"""Two ports: the public one serves webhooks and links only, the admin one metrics and probes; both name no
server software and send the security headers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CONTENT_TYPE_LATEST

from consumers.app import create_app, faust_config
from consumers.dev.broker import dev_ports, free_port, port_open
from consumers.inbound.admin import AdminServer, admin_application
from consumers.inbound.web import harden_responses
from consumers.observe.metrics import Metrics
from schemas.settings import Settings
from tests.conftest import unique_settings

pytestmark = pytest.mark.unit

SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"}
FAUST_PAGES = ["/", "/router/", "/table/", "/graph/", "/stats/", "/performance/", "/metrics", "/health", "/ready"]


def assert_hardened(headers: object, *, cache: str = "no-store") -> None:
    got = dict(headers)  # type: ignore[call-overload]
    assert got.get("Server") == "Herald", got
    for name, value in SECURITY.items():
        assert got.get(name) == value, (name, got)
    assert got.get("Cache-Control") == cache, got


def public_server(tmp_path: Path) -> tuple[faust.App, web.Application]:
    app = create_app(unique_settings(tmp_path))
    app.web.init_server()  # mounts the blueprints Faust would mount when the worker starts
    return app, app.web.web_app  # type: ignore[attr-defined]


async def raw_answer(host: str, port: int, request: bytes) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return (await asyncio.wait_for(reader.read(4096), 5)).decode(errors="replace")
    finally:
        writer.close()


def test_ports__settings_default_to_loopback_admin_port_6067() -> None:
    fields = Settings.model_fields
    assert fields["admin_host"].default == "127.0.0.1" and fields["admin_port"].default == 6067
    assert fields["web_host"].default == "127.0.0.1" and fields["web_port"].default == 6066


def test_ports__faust_binds_the_configured_web_host_with_its_own_pages_off(tmp_path: Path) -> None:
    settings = unique_settings(tmp_path, web_host="127.0.0.2")
    conf = faust_config(settings)
    assert conf["web_bind"] == "127.0.0.2"
    app = create_app(settings)
    assert app.conf.web_bind == "127.0.0.2"
    assert not any(getattr(app.conf, f"web_{name}_enabled") for name in ("router", "tables", "graph", "stats",
                                                                         "metrics"))


async def test_ports__public_port_serves_none_of_fausts_pages_nor_metrics_or_probes(tmp_path: Path) -> None:
    _, application = public_server(tmp_path)
    async with TestClient(TestServer(application)) as client:
        for path in FAUST_PAGES:
            response = await client.get(path)
            assert response.status == 404, (path, response.status, await response.text())
            assert_hardened(response.headers)
        # Herald's own views are still there.
        assert (await client.get("/webhooks/nope/nope")).status == 404  # unknown provider, answered by the view
        unsubscribe = await client.get("/unsubscribe/r1", params={"c": "email", "s": "forged"})
        assert unsubscribe.status == 403
        assert_hardened(unsubscribe.headers)
        assert unsubscribe.headers["X-Robots-Tag"] == "noindex"


async def test_ports__a_request_aiohttp_cannot_parse_is_answered_without_naming_it(tmp_path: Path) -> None:
    _, application = public_server(tmp_path)
    server = TestServer(application)
    await server.start_server()
    try:
        for request in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"):
            answer = await raw_answer(server.host, server.port, request)
            assert answer.startswith("HTTP/1.") and " 400 " in answer.split("\r\n")[0], answer
            assert "aiohttp" not in answer and "Python" not in answer, answer
            assert "\r\nServer: Herald\r\n" in answer, answer
    finally:
        await server.close()


async def test_ports__a_pdf_keeps_its_headers_and_may_only_not_be_framed() -> None:
    async def pdf(request: web.Request) -> web.Response:
        return web.Response(body=b"%PDF-1.7", headers={"Content-Type": "application/pdf",
                                                        "Content-Disposition": 'inline; filename="document.pdf"',
                                                        "Cache-Control": "private, no-store"})

    application = web.Application()
    application.router.add_get("/documents/x.pdf", pdf)
    harden_responses(application)
    async with TestClient(TestServer(application)) as client:
        response = await client.get("/documents/x.pdf")
    assert response.status == 200 and response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == 'inline; filename="document.pdf"'
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response.headers["Server"] == "Herald" and response.headers["X-Frame-Options"] == "DENY"


async def test_ports__admin_serves_metrics_liveness_and_readiness_with_the_headers() -> None:
    metrics = Metrics()
    metrics.webhooks.labels("sms", "twilio", "accepted").inc()
    ready = [False]
    application = admin_application(metrics, "herald-test", lambda: ready[0])
    async with TestClient(TestServer(application)) as client:
        scraped = await client.get("/metrics")
        assert scraped.status == 200 and scraped.headers["Content-Type"] == CONTENT_TYPE_LATEST
        assert 'herald_webhooks_total{channel="sms",provider="twilio",result="accepted"} 1.0' in await scraped.text()
        health = await client.get("/health")
        assert health.status == 200 and await health.json() == {"status": "ok", "app": "herald-test"}
        not_ready = await client.get("/ready")
        assert not_ready.status == 503 and await not_ready.json() == {"ready": False}
        ready[0] = True
        now_ready = await client.get("/ready")
        assert now_ready.status == 200 and await now_ready.json() == {"ready": True}
        for response in (scraped, health, not_ready, now_ready, await client.get("/webhooks/sms/twilio")):
            assert_hardened(response.headers)
        assert (await client.get("/webhooks/sms/twilio")).status == 404


async def test_ports__admin_server_listens_from_start_to_stop_on_its_host_and_port() -> None:
    port = free_port()
    server = AdminServer(admin_application(Metrics(), "herald-test", lambda: True), "127.0.0.1", port)
    await server.start()
    try:
        assert port_open("127.0.0.1", port)
        answer = await raw_answer("127.0.0.1", port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith("HTTP/1.1 200") and "\r\nServer: Herald\r\n" in answer
    finally:
        await server.stop()
    assert not port_open("127.0.0.1", port)


@pytest.mark.parametrize(("spec", "ports"), [
    ("", range(20_000, 32_000)),
    ("19990-19993", range(19_990, 19_993)),  # outside every test process's slice: nobody binds these
    (" 30000-31000 ", range(30_000, 31_000)),
])
def test_ports__free_port_hands_out_the_range_herald_dev_ports_names(spec: str, ports: range,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_DEV_PORTS", spec)
    assert dev_ports() == ports
    if len(ports) < 10:  # every port of a small range in turn, each one free
        assert sorted(free_port() for _ in ports) == list(ports)


@pytest.mark.parametrize("spec", ["21000", "21000-21000", "80-1000", "60000-70000", "a-b"])
def test_ports__a_herald_dev_ports_that_names_no_usable_range_is_refused(spec: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_DEV_PORTS", spec)
    with pytest.raises(ValueError):
        dev_ports()
