"""The console's sign-in: the admin token typed once, then a cookie; nothing of the console without it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from consumers.console import auth
from consumers.console.app import add_console
from consumers.console.context import ConsoleContext
from consumers.identity import KeyRing
from consumers.observe.metrics import Metrics
from consumers.observe.timeline import StatusTimeline
from tests.conftest import unique_settings

pytestmark = pytest.mark.unit

TOKEN = "console-test-token-0123456789abcdef"


def console_context(tmp_path: Path, token: str | None = TOKEN) -> ConsoleContext:
    settings = unique_settings(tmp_path)
    timeline = StatusTimeline("t.status", {}, tmp_path / "timeline.sqlite", retention=timedelta(days=1))
    return ConsoleContext(settings, Metrics(), timeline if token else None, SecretStr(token) if token else None,
                          KeyRing(b"test-secret"))


async def client_for(ctx: ConsoleContext) -> TestClient[web.Request, web.Application]:
    application = web.Application()
    add_console(application, ctx)
    client = TestClient(TestServer(application))
    await client.start_server()
    return client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    c = await client_for(console_context(tmp_path))
    yield c
    await c.close()


async def test_console__a_page_without_a_session_redirects_to_the_sign_in_form(client: TestClient) -> None:
    response = await client.get("/console/", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/console/login?next=/console/"


async def test_console__a_script_without_a_session_gets_401_on_a_post(client: TestClient) -> None:
    response = await client.post("/console/dead-letters/replay", allow_redirects=False)
    assert response.status == 401


async def test_console__the_wrong_token_is_refused_and_sets_no_cookie(client: TestClient) -> None:
    response = await client.post("/console/login", data={"token": "guess"}, allow_redirects=False)
    assert response.status == 401
    assert "not the admin token" in await response.text()
    assert auth.COOKIE not in response.cookies


async def test_console__the_right_token_signs_in_with_a_strict_http_only_cookie(client: TestClient) -> None:
    response = await client.post("/console/login?next=/console/health", data={"token": TOKEN},
                                  allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/console/health"
    cookie = response.cookies[auth.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert TOKEN not in cookie.value
    page = await client.get("/console/")
    assert page.status == 200
    text = await page.text()
    assert "Live tail" in text and "Sign out" in text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/metrics", "/console\\..\\x"])
async def test_console__sign_in_never_sends_anyone_off_the_console(client: TestClient, target: str) -> None:
    response = await client.post("/console/login", params={"next": target}, data={"token": TOKEN},
                                 allow_redirects=False)
    assert response.headers["Location"] == "/console/"


async def test_console__a_bearer_token_works_for_scripts(client: TestClient) -> None:
    response = await client.get("/console/", headers={"Authorization": f"Bearer {TOKEN}"},
                                allow_redirects=False)
    assert response.status == 200


async def test_console__sign_out_ends_the_session(client: TestClient) -> None:
    await client.post("/console/login", data={"token": TOKEN})
    await client.post("/console/logout")
    response = await client.get("/console/", allow_redirects=False)
    assert response.status == 303


def test_console__a_session_expires_and_ends_when_the_token_changes() -> None:
    token = SecretStr(TOKEN)
    value = auth.session_cookie(token, timedelta(hours=1), now=1_000_000)
    assert auth.session_valid(token, value, now=1_000_000 + 3599)
    assert not auth.session_valid(token, value, now=1_000_000 + 3601)
    assert not auth.session_valid(SecretStr(TOKEN + "x"), value, now=1_000_000)
    assert not auth.session_valid(token, value.replace(".", ".0", 1), now=1_000_000)
    assert not auth.session_valid(token, "9999999999.forged", now=1_000_000)


async def test_console__off_without_an_admin_token(tmp_path: Path) -> None:
    c = await client_for(console_context(tmp_path, token=None))
    try:
        for path in ("/console/", "/console/login"):
            response = await c.get(path, allow_redirects=False)
            assert response.status == 503
            assert "HERALD_ADMIN_TOKEN" in await response.text()
        assert (await c.get("/console/static/console.css")).status == 200
    finally:
        await c.close()


async def test_console__the_bare_prefix_redirects_to_the_console(client: TestClient) -> None:
    response = await client.get("/console", allow_redirects=False)
    assert response.status == 308 and response.headers["Location"] == "/console/"
