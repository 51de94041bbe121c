"""Rich rendering of status records for `herald status`, `dev` and `demo`."""

from __future__ import annotations

from collections import Counter

from rich.table import Table

from schemas.status import DeliveryStatus

STYLES = {"sent": "green", "delivered": "green", "read": "green", "accepted": "cyan", "scheduled": "cyan",
          "retrying": "yellow", "rejected": "red", "failed": "red", "dead_lettered": "red", "bounced": "red",
          "expired": "magenta", "suppressed": "magenta", "deduplicated": "magenta"}
COLUMNS = ("at", "status", "type", "channel", "locale", "try", "latency", "message", "detail")


def status_table(title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold")
    for column in COLUMNS:
        table.add_column(column, no_wrap=column in ("at", "message"))
    return table


def status_row(s: DeliveryStatus) -> tuple[str, ...]:
    style = STYLES.get(s.status.value, "white")
    return (s.at.strftime("%H:%M:%S"), f"[{style}]{s.status.value}[/{style}]", s.event_type or "-",
            s.channel or "-", s.locale or "-", str(s.attempt),
            f"{s.latency_ms}ms" if s.latency_ms is not None else "-", s.message_id[:12], s.detail or "")


def summary_table(statuses: list[DeliveryStatus]) -> Table:
    """Last status per message, counted by type and status (receipts name only the message: its type comes
    from the message's earlier statuses)."""
    last: dict[str, DeliveryStatus] = {}
    types: dict[str, str] = {}
    for s in statuses:
        last[s.message_id] = s
        if s.event_type:
            types.setdefault(s.message_id, s.event_type)
    counts = Counter((types.get(m, "(unreadable)"), s.status.value) for m, s in last.items())
    table = Table(title="Outcome per message", header_style="bold")
    table.add_column("event type")
    table.add_column("status")
    table.add_column("messages", justify="right")
    for (event_type, status), n in sorted(counts.items()):
        style = STYLES.get(status, "white")
        table.add_row(event_type, f"[{style}]{status}[/{style}]", str(n))
    return table
