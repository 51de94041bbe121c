"""Issue 16 acceptance (digests): three comments for one person within the window reach the SMTP sink as ONE email
holding all three, also when the worker is SIGKILLed after collecting them and before the window closes."""

from __future__ import annotations

import asyncio
import signal
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml

from consumers.cli.publish import make_event
from schemas.status import DeliveryStatus, Status
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

ANA = {"id": "user-digest-ana", "email": "ana.digest@example.org", "name": "Ana"}
THREAD = {"thread_id": "T-311", "thread_title": "Weekend trip to Lisbon", "thread_url": "https://forum.example.com/t/311"}
COMMENTS = [("Marta", "I can book the train tickets tonight."),
            ("Jonas", "Saturday morning works for me."),
            ("Lucía", "Count me in. Who brings the guidebook?")]


def with_window(stack: Stack, tmp_path: Path, window: str) -> None:
    """The tests' always-open catalog with `comment.posted` collecting for `window`."""
    assert stack.settings.catalog is not None
    catalog = yaml.safe_load(Path(stack.settings.catalog).read_text(encoding="utf-8"))
    catalog["types"]["comment.posted"]["digest"]["window"] = window
    path = tmp_path / "catalog.digests.yaml"
    path.write_text(yaml.safe_dump(catalog, allow_unicode=True, sort_keys=False), encoding="utf-8")
    stack.settings = stack.settings.model_copy(update={"catalog": path})


async def publish_comments(stack: Stack) -> None:
    await stack.publish([make_event("comment.posted", ANA, {**THREAD, "author": author, "excerpt": excerpt},
                                    source="it/digests", idempotencykey=f"comment-{i}")
                         for i, (author, excerpt) in enumerate(COMMENTS)])


def digested(statuses: list[DeliveryStatus]) -> list[DeliveryStatus]:
    return [s for s in statuses if s.status is Status.DIGESTED]


def digest_sent(statuses: list[DeliveryStatus]) -> list[DeliveryStatus]:
    return [s for s in statuses if s.status is Status.SENT and s.event_type == "comment.posted"]


def mails_to_ana(stack: Stack) -> list[EmailMessage]:
    return [m for m in stack.sink.snapshot() if m["To"].addresses[0].addr_spec == ANA["email"]]


def assert_one_digest_email(stack: Stack, statuses: list[DeliveryStatus]) -> None:
    [mail] = mails_to_ana(stack)
    assert mail["Subject"] == "3 new comments on Weekend trip to Lisbon"
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    for author, excerpt in COMMENTS:
        assert f"- {author}: {excerpt}" in text
    # The three events say which digest took them; the digest's message is an event of its own, with its own id.
    details = {s.detail for s in digested(statuses)}
    [sent] = digest_sent(statuses)
    assert details == {f"digest:{sent.event_id}"}
    assert sent.message_id not in {s.message_id for s in digested(statuses)}


async def settle(stack: Stack, seconds: float = 3.0) -> None:
    """Long enough for a second email, were one coming, to reach the sink."""
    await asyncio.sleep(seconds)


async def test_digests__three_comments_within_the_window_are_one_email(stack: Stack, tmp_path: Path) -> None:
    with_window(stack, tmp_path, "3s")
    stack.start_worker()
    await publish_comments(stack)
    await stack.wait_statuses(lambda s: len(digested(s)) == 3 and len(digest_sent(s)) == 1, timeout=60)
    statuses = list(stack.statuses)
    assert mails_to_ana(stack) and len(mails_to_ana(stack)) == 1
    await settle(stack)
    assert_one_digest_email(stack, statuses)


async def test_digests__a_worker_killed_before_the_window_closes_sends_the_digest_once_after_restart(
        stack: Stack, tmp_path: Path) -> None:
    with_window(stack, tmp_path, "15s")
    worker = stack.start_worker()
    await publish_comments(stack)
    await stack.wait_statuses(lambda s: len(digested(s)) == 3, timeout=60)  # collected: the digest is stored
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    stack.workers.remove(worker)
    assert mails_to_ana(stack) == []  # killed before the window closed
    stack.start_worker()
    await stack.wait_statuses(lambda s: len(digest_sent(s)) == 1, timeout=90)
    await settle(stack)
    await stack.wait_statuses(lambda s: len(digest_sent(s)) >= 1, timeout=30)  # every status so far, read again
    assert len(digest_sent(stack.statuses)) == 1
    assert_one_digest_email(stack, stack.statuses)
