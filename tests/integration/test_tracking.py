"""Open and click tracking on a running worker: the email in the SMTP sink carries signed links, and following
them on the worker's public port yields `opened` and `clicked`, described like any receipt."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import httpx
import pytest

from consumers.cli.publish import make_event
from schemas.status import Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

LOGIN = "https://shop.example.com/account?from=email&x=1"


async def test_tracking__links_in_the_sent_email_redirect_and_report_opened_and_clicked(stack: Stack) -> None:
    stack.start_worker()
    event = make_event("signup.welcome", {"id": "user-t", "email": "track@example.org"}, {"login_url": LOGIN},
                       tenant="acme")
    await stack.publish([event])
    await stack.wait_statuses(lambda ss: any(s.status is Status.SENT for s in ss), timeout=30)
    [mail] = stack.sink.snapshot()
    body = mail.get_body(preferencelist=("html",)).get_content()
    assert f'href="{html.escape(LOGIN)}"' not in body
    [click] = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', body) if "/t/c/" in h]
    [pixel] = [html.unescape(s) for s in re.findall(r'<img src="([^"]+)"', body) if "/t/o/" in s]
    assert LOGIN in mail.get_body(preferencelist=("plain",)).get_content()  # the text part is left alone

    base = f"http://127.0.0.1:{stack.settings.web_port}"  # the links name HERALD_PUBLIC_URL, the proxy's address
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(base + _path_qs(click))
        assert answer.status_code == 302 and answer.headers["location"] == LOGIN
        forged = await client.get(base + _path_qs(click).replace("shop.example.com", "evil.example"))
        assert forged.status_code == 403 and "location" not in forged.headers
        image = await client.get(base + _path_qs(pixel))
        assert image.status_code == 200 and image.headers["content-type"] == "image/gif"

    await stack.wait_statuses(lambda ss: {Status.OPENED, Status.CLICKED} <= {s.status for s in ss}, timeout=20)
    sent = next(s for s in stack.statuses if s.status is Status.SENT)
    for status in (s for s in stack.statuses if s.status in (Status.OPENED, Status.CLICKED)):
        assert (status.message_id, status.event_type, status.tenant, status.recipient, status.provider) == (
            sent.message_id, "signup.welcome", "acme", sent.recipient, sent.provider)


def _path_qs(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"
