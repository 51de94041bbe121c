"""The `herald` command line as a person types it: every mistake is one line on stderr and a non-zero exit code,
never a traceback (unexpected errors too, unless --debug asks for it); `publish` checks before it sends; `--to`
reads key=value pairs and addresses; `status` is in time order, filtered and fits; `dlq replay` of nothing fails;
`templates preview` is raw when piped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from consumers.app import load_catalog
from consumers.cli import commands as cli
from consumers.cli import dlq, publish, templatecheck
from consumers.cli.checks import address_id, check_event, parse_recipient
from consumers.cli.dlq import DeadLetter
from consumers.cli.publish import make_event
from schemas.settings import Settings
from schemas.status import DeliveryStatus, Status

pytestmark = pytest.mark.unit

NO_KAFKA = {"HERALD_KAFKA_BOOTSTRAP": "127.0.0.1:1"}  # nothing listens on port 1: refused at once
FULL_ORDER = '{"order_id": "1", "total": "9.90", "currency": "EUR", "items": []}'


def herald(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli.app, list(args), env={**NO_KAFKA, **env})


def assert_one_line_error(result: Result, exit_code: int) -> str:
    """The contract of a mistake: that exit code, nothing on stdout, one line on stderr, no traceback."""
    assert result.exit_code == exit_code, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # exited on purpose, not an exception the runner caught
    return line


# --- mistakes: one line, non-zero --------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "exit_code", "says"), [
    # Kafka unreachable (3)
    (["status"], 3, "cannot reach Kafka at 127.0.0.1:1"),
    (["publish", "order.confirmed", "--to", "ana@example.com"], 3, "cannot reach Kafka at 127.0.0.1:1"),
    (["dlq", "list"], 3, "cannot reach Kafka"),
    (["dlq", "replay", "--all"], 3, "cannot reach Kafka"),
    (["prefs", "get", "user-42"], 3, "cannot reach Kafka"),
    # the command line is wrong (2)
    (["publish", "order.confirmed", "--to", "ana@example.com", "--data", "{bad"], 2, "--data: not valid JSON"),
    (["publish", "order.confirmed", "--to", "ana@example.com", "--data", "[1, 2]"], 2, "must be a JSON object"),
    (["publish", "order.confirmed", "--to", "not-an-email"], 2, "'not-an-email' is not an email"),
    (["publish", "order.confirmed", "--to", "id=u1,colour=red"], 2, "unknown key 'colour'"),
    (["publish", "order.confirmed", "--to", "id=u1,email=ana@"], 2, "email: value is not a valid email"),
    (["publish", "order.confirmed", "--to", "+1"], 2, "'+1' is not a phone number"),
    (["publish", "order.confirmed"], 2, "Missing option '--to'"),
    (["templates", "preview", "order.confirmed", "--data", "{bad"], 2, "--data: not valid JSON"),
    (["templates", "preview", "order.confirmed", "--channel", "pigeon"], 2, "'pigeon' is not a channel"),
    (["templates", "preview", "order.confirmed", "--timezone", "Mars/Olympus"], 2, "not an IANA time zone"),
    (["templates", "preview", "order.confirmed", "--part", "body"], 2, "no part 'body' (subject, html, text)"),
    (["status", "--status", "sent,lost"], 2, "unknown status lost"),
    (["dlq", "replay"], 2, "say which"),
    (["dlq", "replay", "zero"], 2, "'zero' is not PARTITION/OFFSET"),
    (["no-such-command"], 2, "No such command 'no-such-command'"),
    (["status", "--bogus"], 2, "No such option: --bogus"),
    # the command refused (1), before any Kafka: these run with Kafka unreachable
    (["publish", "no.such.type", "--to", "ana@example.com"], 1, "unknown event type 'no.such.type'"),
    (["publish", "order.confirmd", "--to", "ana@example.com"], 1, "did you mean order.confirmed"),
    (["publish", "order.confirmed", "--to", "ana@example.com", "--data", '{"order_id": "1"}'], 1,
     "payload lacks total, currency, items"),
    (["publish", "order.confirmed", "--to", "id=user-42"], 1, "no address on any channel order.confirmed uses"),
    (["templates", "preview", "order.confirmed", "--data", '{"order_id": "1"}'], 1,
     "payload lacks total, currency, items"),
    (["templates", "preview", "no.such.type"], 1, "unknown event type 'no.such.type'"),
    (["templates", "preview", "order.confirmed", "--data", FULL_ORDER.replace('"9.90"', '"lots"')], 1,
     "cannot render: not a number"),
    (["templates", "preview", "order.confirmed", "--data", FULL_ORDER.replace("[]", '[{"sku": "A1"}]')], 1,
     "cannot render: order.confirmed/email.en.html.j2: 'dict object' has no attribute 'name'"),
], ids=lambda v: "_".join(v)[:60] if isinstance(v, list) else None)
def test_cli_mistake__is_one_line_on_stderr_and_a_nonzero_exit(args: list[str], exit_code: int, says: str) -> None:
    line = assert_one_line_error(herald(*args), exit_code)
    assert line.startswith("error: ") and says in line


def test_cli_mistake__a_bad_setting_is_one_configuration_line() -> None:
    line = assert_one_line_error(herald("status", HERALD_KAFKA_SECURITY_PROTOCOL="CARRIER_PIGEON"), 2)
    assert line.startswith("configuration error: HERALD_KAFKA_SECURITY_PROTOCOL")


def test_cli_mistake__a_check_failure_is_reported_before_kafka_is_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = fake_producer(monkeypatch)
    assert_one_line_error(herald("publish", "no.such.type", "--to", "ana@example.com"), 1)
    assert sent == []


# --- unexpected errors: one line, or the traceback with --debug ----------------------------------------------------

@pytest.fixture
def broken_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(settings: Settings) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(templatecheck, "check_templates", boom)


def test_cli_unexpected_error__is_one_line_that_says_how_to_see_the_traceback(broken_check: None) -> None:
    line = assert_one_line_error(herald("templates", "check"), 4)
    assert line == "error: unexpected RuntimeError: boom (run with --debug or HERALD_DEBUG=1 for the traceback)"


@pytest.mark.parametrize(("args", "env"), [
    (["--debug", "templates", "check"], {}), (["templates", "check", "--debug"], {}),
    (["templates", "check"], {"HERALD_DEBUG": "1"}),
], ids=["debug_before", "debug_after_the_subcommand", "HERALD_DEBUG"])
def test_cli_unexpected_error__with_debug_prints_the_traceback(broken_check: None, args: list[str],
                                                              env: dict[str, str]) -> None:
    result = herald(*args, **env)
    assert result.exit_code == 4
    assert result.stderr.startswith("Traceback") and "RuntimeError: boom" in result.stderr
    assert result.stderr.splitlines()[-1] == "error: unexpected RuntimeError: boom"


def test_cli_debug__shows_the_traceback_of_a_known_error_too() -> None:
    result = herald("status", "--debug")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr and "KafkaConnectionError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: cannot reach Kafka")


def test_cli_help__still_prints_help_and_exits_0() -> None:
    result = herald("--help")
    assert result.exit_code == 0 and "--debug" in result.stdout and "publish" in result.stdout


@pytest.mark.parametrize("args", [["status"], ["publish", "order.confirmed", "--to", "ana@example.com"]])
def test_cli_process__kafka_unreachable_is_one_line_without_traceback_or_unclosed_client(args: list[str]) -> None:
    # A real process: what interpreter shutdown and garbage collection print (aiokafka's "Unclosed …") count too.
    done = subprocess.run([sys.executable, "-m", "consumers", *args], env={**os.environ, **NO_KAFKA},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["error: cannot reach Kafka at 127.0.0.1:1 (HERALD_KAFKA_BOOTSTRAP): "
                                        "is it running?"]


# --- publish: --to, the recipient id, the check -------------------------------------------------------------------

def fake_producer(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`herald publish` without Kafka: the events it would have sent."""
    sent: list[dict[str, Any]] = []

    class FakeProducer:
        def __init__(self, settings: Settings, catalog: object = None) -> None:
            pass

        async def __aenter__(self) -> FakeProducer:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def publish(self, event: dict[str, Any], *, wait: bool = False) -> None:
            sent.append(event)

    monkeypatch.setattr(publish, "EventProducer", FakeProducer)
    return sent


def test_publish__to_as_key_value_pairs_is_the_recipient_as_its_help_says(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = fake_producer(monkeypatch)
    result = herald("publish", "order.confirmed", "--to", "id=user-42,email=ana@example.com,locale=es-ES")
    assert result.exit_code == 0, result.output
    assert sent[0]["data"]["to"] == {"id": "user-42", "email": "ana@example.com", "locale": "es-ES"}
    assert sent[0]["subject"] == "user-42"
    assert "for user-42 to herald.events" in result.stdout


def test_publish__no_check_sends_what_the_check_would_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = fake_producer(monkeypatch)
    result = herald("publish", "no.such.type", "--to", "ana@example.com", "--data", "{}", "--no-check")
    assert result.exit_code == 0, result.output
    assert sent[0]["type"] == "no.such.type" and sent[0]["data"]["payload"] == {}


def test_publish__empty_data_is_an_empty_payload_not_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_producer(monkeypatch)
    line = assert_one_line_error(herald("publish", "order.confirmed", "--to", "ana@example.com", "--data", "{}"), 1)
    assert "payload lacks order_id, total, currency, items" in line


@pytest.mark.parametrize(("to", "expected"), [
    ("ana@example.com", {"id": address_id("ana@example.com"), "email": "ana@example.com"}),
    ("+34 600 111 222", {"id": address_id("+34600111222"), "phone": "+34600111222"}),
    ("bounce=ana@example.com", {"id": address_id("bounce=ana@example.com"), "email": "bounce=ana@example.com"}),
    ("id=user-42, email=ana@example.com", {"id": "user-42", "email": "ana@example.com"}),
    ("phone=+34 600-111-222", {"id": address_id("+34600111222"), "phone": "+34600111222"}),
    ('{"id": "user-42", "push_token": "tok"}', {"id": "user-42", "push_token": "tok"}),
], ids=["email", "phone_normalised", "email_with_equals_sign", "pairs", "pair_phone_normalised", "json"])
def test_parse_recipient__reads_every_documented_form(to: str, expected: dict[str, str]) -> None:
    assert parse_recipient(to) == expected


def test_address_id__is_unique_to_the_address_and_the_same_for_the_same_address() -> None:
    ids = {parse_recipient(to)["id"] for to in ("ana@example.com", "ana@example.org", "ana@shop.example.com")}
    assert len(ids) == 3  # the same local part, three people
    assert parse_recipient("Ana@Example.com ")["id"] == parse_recipient("ana@example.com")["id"]
    assert parse_recipient("+34 600 111 222")["id"] == parse_recipient("+34600111222")["id"] != parse_recipient(
        "+34600111223")["id"]
    assert address_id("ana@example.com").startswith("addr-") and len(address_id("ana@example.com")) == 21


def test_parse_recipient__locale_option_overrides_and_no_check_keeps_what_it_cannot_validate() -> None:
    assert parse_recipient("id=u1,email=ana@example.com,locale=de", "es-ES")["locale"] == "es-ES"
    assert parse_recipient("id=u1,email=not-an-address", check=False)["email"] == "not-an-address"
    with pytest.raises(ValueError, match="email"):
        parse_recipient("id=u1,email=not-an-address")


def test_check_event__a_channel_restriction_without_its_address_is_refused() -> None:
    catalog = load_catalog(Settings())
    event = make_event("order.confirmed", {"id": "u1", "email": "ana@example.com"},
                       {"order_id": "1", "total": "1", "currency": "EUR", "items": []}, channels=["sms"])
    assert check_event(catalog, event) == [
        "the recipient has no address on any channel order.confirmed uses (sms)"]
    assert check_event(catalog, {**event, "channels": None}) == []


# --- status: time order, filters, width -----------------------------------------------------------------------------

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@dataclass
class FakeRecord:
    value: bytes


def st(message: str, status: Status, seconds: int, **fields: Any) -> FakeRecord:
    return FakeRecord(DeliveryStatus(message_id=message, status=status, at=T0 + timedelta(seconds=seconds),
                                     **fields).model_dump_json().encode())


DETAIL = ("a long explanation of what went wrong in the provider's answer, longer than any terminal is wide once "
          "the other columns are drawn next to it")
# Partition order: message a's statuses, then message b's; in time they interleave. The receipt names no type.
TOPIC = [
    st("msg-aaaa00000000000000000001", Status.ACCEPTED, 0, event_id="evt-1", event_type="order.confirmed",
       channel="email"),
    st("msg-aaaa00000000000000000001", Status.SENT, 3, event_id="evt-1", event_type="order.confirmed",
       channel="email", detail="250 queued"),
    st("msg-aaaa00000000000000000001", Status.DELIVERED, 9, channel="email"),
    st("msg-bbbb00000000000000000002", Status.ACCEPTED, 1, event_id="evt-2", event_type="password.reset",
       channel="sms"),
    st("msg-bbbb00000000000000000002", Status.DEAD_LETTERED, 5, event_id="evt-2", event_type="password.reset",
       channel="sms", error="internal_error", detail=DETAIL),
]


@pytest.fixture
def status_topic(monkeypatch: pytest.MonkeyPatch) -> list[FakeRecord]:
    records = list(TOPIC)

    async def read(settings: Settings, short: str, *, follow: bool = False) -> AsyncIterator[list[FakeRecord]]:
        assert short == "status"
        yield records

    monkeypatch.setattr(publish, "read_batches", read)
    return records


def shown(result: Result) -> list[tuple[str, str]]:
    assert result.exit_code == 0, result.output
    return [(s["message_id"][4:8], s["status"]) for s in map(orjson.loads, result.stdout.splitlines())]


def test_status__is_in_time_order_not_partition_order(status_topic: list[FakeRecord]) -> None:
    assert shown(herald("status", "--json")) == [("aaaa", "accepted"), ("bbbb", "accepted"), ("aaaa", "sent"),
                                                 ("bbbb", "dead_lettered"), ("aaaa", "delivered")]


@pytest.mark.parametrize(("args", "expected"), [
    (["--message", "msg-bbbb"], [("bbbb", "accepted"), ("bbbb", "dead_lettered")]),
    (["-m", "msg-aaaa00000000000000000001", "--status", "sent,delivered"], [("aaaa", "sent"), ("aaaa", "delivered")]),
    (["--event", "evt-1"], [("aaaa", "accepted"), ("aaaa", "sent"), ("aaaa", "delivered")]),
    (["--type", "order.*", "--status", "delivered"], [("aaaa", "delivered")]),  # the receipt's type, learned
    (["--status", "dead_lettered", "--status", "accepted"], [("aaaa", "accepted"), ("bbbb", "accepted"),
                                                             ("bbbb", "dead_lettered")]),
    (["--type", "password.reset", "--event", "evt-1"], []),
], ids=["message_prefix", "message_and_statuses", "event_includes_receipts", "type_pattern_includes_receipts",
        "repeated_status", "filters_combine"])
def test_status__filters_by_message_event_type_and_status(status_topic: list[FakeRecord], args: list[str],
                                                          expected: list[tuple[str, str]]) -> None:
    assert shown(herald("status", "--json", *args)) == expected


def test_status__an_unreadable_record_is_left_out_with_one_warning(status_topic: list[FakeRecord]) -> None:
    status_topic.append(FakeRecord(b"not a status"))
    result = herald("status", "--json")
    assert len(shown(result)) == 5
    assert result.stderr.splitlines() == ["warning: 1 record of herald.status could not be read as a status (left "
                                          "out)"]


@pytest.mark.parametrize("width", [80, 100, 140, 200])
def test_status__the_table_fits_the_terminal_and_never_cuts_a_status_or_a_time(status_topic: list[FakeRecord],
                                                                                 width: int) -> None:
    result = herald("status", COLUMNS=str(width))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in result.stdout
    assert {"10:00:05", "dead_lettered", "password.reset"} <= set(result.stdout.split())
    words = DETAIL.replace(",", "").split()
    assert set(words) <= set(result.stdout.replace(",", "").split())  # the detail wraps, it is not cut
    ids = {word for word in result.stdout.split() if word.startswith("msg-")}
    assert ids == ({"msg-aaaa00000000000000000001", "msg-bbbb00000000000000000002"} if width >= 150
                   else {"msg-aaaa0000", "msg-bbbb0000"})  # whole ids when they fit, else 12 characters
    assert ("latency" in result.stdout) is (width >= 120)


def test_status__piped_without_columns_is_not_cut_at_80(status_topic: list[FakeRecord],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    result = herald("status")
    assert result.exit_code == 0
    assert max(len(line) for line in result.stdout.splitlines()) > 80 and "latency" in result.stdout


def test_status__nothing_matching_says_so_on_stderr(status_topic: list[FakeRecord]) -> None:
    result = herald("status", "--type", "invoice.*")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no status in herald.status matches\n")


# --- dlq replay of nothing ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "says"), [
    (["--all"], "nothing replayed: no dead letter matches"),
    (["--reason", "invalid_json"], "nothing replayed: no dead letter matches"),
    (["0/99"], "nothing replayed: no dead letter at 0/99"),
])
def test_dlq_replay__of_nothing_fails_with_one_line(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                    says: str) -> None:
    async def none(settings: Settings) -> list[DeadLetter]:
        return []

    monkeypatch.setattr(dlq, "dead_letters", none)
    assert assert_one_line_error(herald("dlq", "replay", *args), 1) == f"error: {says}"


# --- templates preview ---------------------------------------------------------------------------------------------

def test_preview__piped_is_raw_text_without_boxes_or_wrapping() -> None:
    result = herald("templates", "preview", "order.confirmed")
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:2] == ["==> subject <==", "Your order 1001 is confirmed"]
    assert [line for line in lines if line.startswith("==>")] == ["==> subject <==", "==> html <==", "==> text <=="]
    assert not any(c in result.stdout for c in "─━│") and max(map(len, lines)) > 80  # as rendered, not wrapped


def test_preview__part_prints_only_that_part() -> None:
    result = herald("templates", "preview", "order.confirmed", "--locale", "es-ES", "--part", "subject")
    assert (result.exit_code, result.stdout) == (0, "Tu pedido 1001 está confirmado\n")


@pytest.mark.parametrize(("locale", "warning"), [
    ("xx-YY", "warning: unknown locale 'xx-YY'; rendered in en"),
    ("fr-FR", "warning: no fr-FR template for order.confirmed/email; rendered in en"),
    ("es-MX", None),
])
def test_preview__warns_when_the_locale_is_unknown_or_has_no_template(locale: str, warning: str | None) -> None:
    result = herald("templates", "preview", "order.confirmed", "--locale", locale, "--part", "subject")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == ([warning] if warning else [])
