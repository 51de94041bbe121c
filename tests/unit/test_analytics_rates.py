"""The README's analytics example (deploy/analytics/rates.py) computes its rates right from status records."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from schemas.status import DeliveryStatus, Status

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "analytics" / "rates.py"
AT = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("herald_rates_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


rates_example = load()


def status(message_id: str, state: Status, event_type: str | None = "order.confirmed", channel: str | None = "email",
           **extra: Any) -> dict[str, Any]:
    """A record as Herald writes it (through the model, so the example reads the real contract)."""
    record = DeliveryStatus(message_id=message_id, status=state, event_type=event_type, channel=channel, at=AT)
    return {**orjson.loads(record.model_dump_json()), **extra}


RECORDS = [
    # order.confirmed by email: 4 sent; m1 delivered, opened twice and clicked; m2 delivered (receipt repeated by a
    # vendor retry); m3 opened with no delivery event; m4 bounced; m5 suppressed (never sent, not counted).
    *(status(m, Status.ACCEPTED) for m in ("m1", "m2", "m3", "m4", "m5")),
    *(status(m, Status.SENT) for m in ("m1", "m2", "m3", "m4")),
    status("m1", Status.DELIVERED), status("m1", Status.OPENED), status("m1", Status.OPENED),
    status("m1", Status.CLICKED),
    status("m2", Status.DELIVERED), status("m2", Status.DELIVERED),
    status("m3", Status.OPENED),
    status("m4", Status.BOUNCED),
    status("m5", Status.SUPPRESSED),
    # appointment.reminder by SMS: 2 sent, one delivered and replied to; the reply's record was written before v1
    # (no type, no channel) and a newer one carries a field this example has never heard of.
    status("s1", Status.SENT, "appointment.reminder", "sms"), status("s2", Status.SENT, "appointment.reminder", "sms"),
    status("s1", Status.DELIVERED, "appointment.reminder", "sms", cost_eur="0.0075"),
    status("s1", Status.REPLIED, None, None),
    # A status of a whole event: no channel, no row.
    status("evt-x", Status.REJECTED, "order.confirmed", None),
]


def test_rates__per_type_and_channel_over_messages_sent_each_counted_once() -> None:
    rows = {(r.event_type, r.channel): r for r in rates_example.rates(RECORDS)}
    assert set(rows) == {("appointment.reminder", "sms"), ("order.confirmed", "email")}
    email = rows[("order.confirmed", "email")]
    assert (email.sent, email.delivered, email.opened, email.clicked, email.replied) == (4, 3, 2, 1, 0)
    assert (email.rate(email.delivered), email.rate(email.opened), email.rate(email.clicked)) == (0.75, 0.5, 0.25)
    sms = rows[("appointment.reminder", "sms")]
    assert (sms.sent, sms.delivered, sms.replied, sms.rate(sms.replied)) == (2, 1, 1, 0.5)


def test_rates__the_script_reads_json_lines_and_prints_one_row_per_type_and_channel(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "status.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in RECORDS) + b"\n")
    assert rates_example.main(["--file", str(path)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["type", "channel", "sent", "delivered", "opened", "clicked", "replied"]
    assert [r.split() for r in rows] == [
        ["appointment.reminder", "sms", "2", "50.0%", "0.0%", "0.0%", "50.0%"],
        ["order.confirmed", "email", "4", "75.0%", "50.0%", "25.0%", "0.0%"]]
