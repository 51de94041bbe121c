"""`herald dlq`: a dead letter stored truncated is shown as such and never replayed, since its bytes are not the
original's; the rest are replayed by offset, reason or all."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from rich.console import Console
from typer.testing import CliRunner

from consumers.cli import commands as cli
from consumers.cli import dlq
from consumers.cli.dlq import DeadLetter, dead_letter_from, dead_letter_table, plan_replay
from consumers.observe.metrics import Metrics
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.records import Record
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.unit

LIMIT = 65_536
AT_MS = int(datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp() * 1000)


async def stored(offset: int, key: bytes | None, value: bytes, reason: str = "internal_error",
                 topic: str = "herald.events") -> DeadLetter:
    """A dead letter as `DeadLetters` writes it and `herald dlq` reads it back."""
    publisher = RecordingPublisher()
    letters = DeadLetters(publisher, Metrics(), max_record_bytes=LIMIT)
    await letters.send(Record(topic=topic, partition=0, offset=offset, key=key, value=value), reason=reason,
                       detail="x", stage="router")
    [sent] = publisher.on("deadletter")
    headers = {k: v.decode(errors="replace") for k, v in sent.headers.items()}
    return dead_letter_from(0, offset, AT_MS, sent.key, sent.value, headers)


async def test_dlq__a_dead_letter_cut_to_fit_is_read_as_truncated_with_its_original_size() -> None:
    whole, cut = await stored(1, b"user-42", b"{}"), await stored(2, b"user-42", b"v" * 200_000)
    assert (whole.truncated, whole.original_size, whole.value) == (False, None, b"{}")
    assert (cut.truncated, cut.original_size) == (True, 200_000)
    assert len(cut.value) < LIMIT


async def test_dlq__a_dead_letter_with_its_key_cut_is_truncated_too() -> None:
    letter = await stored(3, b"k" * 5000, b"{}")
    assert (letter.truncated, letter.original_size) == (True, None)


async def test_dlq__replay_refuses_truncated_dead_letters_and_says_why() -> None:
    letters = [await stored(1, b"u", b"{}"), await stored(2, b"u", b"v" * 200_000),
               await stored(3, b"k" * 5000, b"{}"), await stored(4, b"u", b"{}", topic="")]
    plan = plan_replay(letters, offsets=set(), reason=None, everything=True)
    assert [d.offset for d in plan.send] == [1]
    assert [(d.offset, why) for d, why in plan.refused] == [
        (2, "stored truncated from 200,000 bytes: not the original record, so not replayed"),
        (3, "stored truncated (its key): not the original record, so not replayed"),
        (4, "no source topic")]


async def test_dlq__replay_chooses_by_offset_or_reason() -> None:
    letters = [await stored(1, b"u", b"{}", reason="invalid_json"), await stored(2, b"u", b"{}"),
               await stored(3, b"u", b"v" * 200_000, reason="invalid_json")]
    by_offset = plan_replay(letters, offsets={"0/2"}, reason=None, everything=False)
    assert ([d.offset for d in by_offset.send], by_offset.refused) == ([2], [])
    by_reason = plan_replay(letters, offsets=set(), reason="invalid_json", everything=False)
    assert [d.offset for d in by_reason.send] == [1]
    assert [d.offset for d, _ in by_reason.refused] == [3]
    assert plan_replay(letters, offsets={"1/1"}, reason="other", everything=False) == plan_replay(
        [], offsets=set(), reason=None, everything=True)


async def test_dlq__list_shows_which_dead_letters_are_truncated() -> None:
    letters = [await stored(1, b"u", b"{}"), await stored(2, b"u", b"v" * 200_000)]
    console = Console(record=True, width=240)
    console.print(dead_letter_table(letters))
    lines = console.export_text().splitlines()
    assert any("│ truncated" in line or "┃ truncated" in line for line in lines[:4])
    [whole] = [line for line in lines if "0/1 " in line]
    [cut] = [line for line in lines if "0/2 " in line]
    assert "from 200,000 B" in cut and "from" not in whole


class FakeProducer:
    sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []

    def __init__(self, **_kwargs: object) -> None:
        pass

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send_and_wait(self, topic: str, value: bytes, *, key: bytes | None,
                            headers: list[tuple[str, bytes]]) -> None:
        self.sent.append((topic, value, key, headers))


async def test_cli_dlq_replay__sends_the_whole_ones_and_reports_the_truncated_as_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    letters = [await stored(1, b"u", b"{}"), await stored(2, b"u", b"v" * 200_000)]

    async def read(_settings: object) -> list[DeadLetter]:
        return letters

    sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []
    monkeypatch.setattr(dlq, "dead_letters", read)
    monkeypatch.setattr(dlq, "AIOKafkaProducer", FakeProducer)
    monkeypatch.setattr(FakeProducer, "sent", sent)
    # The command runs its own event loop: off this test's loop, in a thread.
    result = await asyncio.to_thread(CliRunner().invoke, cli.app, ["dlq", "replay", "--all"],
                                     env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert sent == [("herald.events", b"{}", b"u", [("herald-replayed-from", b"0/1")])]
    assert "refused 0/2: stored truncated from 200,000 bytes: not the original record, so not replayed" in result.output
    assert "replayed 1 dead letter, refused 1" in result.output
