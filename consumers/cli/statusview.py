"""Rich rendering of status records for `herald status`, `dev` and `demo`, and the filters of `herald status`."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from schemas.status import DeliveryStatus, Status

STYLES = {"sent": "green", "delivered": "green", "read": "green", "accepted": "cyan", "scheduled": "cyan",
          "retrying": "yellow", "rejected": "red", "failed": "red", "dead_lettered": "red", "bounced": "red",
          "expired": "magenta", "suppressed": "magenta", "deduplicated": "magenta"}
COLUMNS = ("at", "status", "type", "channel", "locale", "try", "latency", "message", "detail")
# Narrower than this, `herald status` leaves out the columns one reads least, so the rest are not cut.
SECONDARY = frozenset({"locale", "try", "latency"})
SECONDARY_WIDTH = 120
FULL_ID_WIDTH = 150  # from this width message ids are shown whole, else their first 12 characters
SHORT_ID = 12
PIPE_WIDTH = 160  # the width of a table written to a pipe or a file (no terminal to fit; COLUMNS overrides)


def status_columns(width: int) -> tuple[str, ...]:
    """The columns that fit a terminal `width` wide."""
    return COLUMNS if width >= SECONDARY_WIDTH else tuple(c for c in COLUMNS if c not in SECONDARY)


def table_console(console: Console) -> Console:
    """`console` on a terminal; on a pipe (no terminal, no COLUMNS) one `PIPE_WIDTH` wide, not rich's 80."""
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=PIPE_WIDTH, file=console.file)


def status_table(title: str | None = None, columns: Collection[str] = COLUMNS, *, compact: bool = False) -> Table:
    """A table of statuses with `columns` (in `COLUMNS` order). Short columns never wrap; the type and the detail
    fold. `compact`: no vertical borders, for `herald status` in a terminal."""
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
                  show_edge=not compact, pad_edge=not compact, collapse_padding=compact)
    for column in COLUMNS:
        if column in columns:
            table.add_column(column, no_wrap=column not in ("type", "detail"), overflow="fold",
                             justify="right" if column in ("try", "latency") else "left")
    return table


def status_row(s: DeliveryStatus, columns: Collection[str] = COLUMNS, *, id_width: int | None = SHORT_ID,
               types: dict[str, str] | None = None, at_format: str = "%H:%M:%S") -> tuple[str, ...]:
    """The cells of one status for `columns` (rich markup, values escaped). `types`: the message's type when the
    status lacks it (receipts); `id_width`: message ids cut to this many characters (None: whole)."""
    style = STYLES.get(s.status.value, "white")
    event_type = s.event_type or (types or {}).get(s.message_id)
    detail = ": ".join(dict.fromkeys(p for p in (s.error, s.detail) if p))
    cells = {"at": s.at.strftime(at_format), "status": f"[{style}]{s.status.value}[/{style}]",
             "type": escape(event_type or "-"), "channel": escape(s.channel or "-"), "locale": escape(s.locale or "-"),
             "try": str(s.attempt), "latency": f"{s.latency_ms}ms" if s.latency_ms is not None else "-",
             "message": escape(s.message_id[:id_width] if id_width else s.message_id),
             "detail": escape(detail)}
    return tuple(cells[c] for c in COLUMNS if c in columns)


def at_format(statuses: Collection[DeliveryStatus]) -> str:
    """Times alone when every status is of one day, else with the date too."""
    return "%H:%M:%S" if len({s.at.date() for s in statuses}) <= 1 else "%m-%d %H:%M:%S"


def status_line(s: DeliveryStatus, types: dict[str, str] | None = None) -> Text:
    """One status as one line, in fixed-width columns, for `herald status --follow`."""
    style = STYLES.get(s.status.value, "white")
    detail = ": ".join(dict.fromkeys(p for p in (s.error, s.detail) if p))
    return Text.assemble(f"{s.at:%H:%M:%S}  ", (f"{s.status.value:<13}", style),
                         f"  {s.event_type or (types or {}).get(s.message_id) or '-':<22}  {s.channel or '-':<8}  "
                         f"{s.message_id}  {detail}".rstrip())


def time_ordered(statuses: Iterable[DeliveryStatus]) -> list[DeliveryStatus]:
    """By `at`: the topic's order is per partition (per message), not the order things happened in."""
    return sorted(statuses, key=lambda s: s.at)


@dataclass
class StatusFilter:
    """Which statuses `herald status` shows. Receipts may name only their message: a status without a type or an
    event id takes its message's, learned from the message's earlier statuses (`learn`)."""

    message: str | None = None  # a message id or the start of one (the table shows 12 characters)
    event: str | None = None
    event_type: str | None = None  # a type or a pattern: order.*
    statuses: frozenset[Status] = frozenset()
    types: dict[str, str] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)

    @property
    def filtering(self) -> bool:
        return any((self.message, self.event, self.event_type, self.statuses))

    def learn(self, s: DeliveryStatus) -> None:
        if s.event_type:
            self.types.setdefault(s.message_id, s.event_type)
        if s.event_id:
            self.events.setdefault(s.message_id, s.event_id)

    def matches(self, s: DeliveryStatus) -> bool:
        if self.message is not None and not s.message_id.startswith(self.message):
            return False
        if self.event is not None and (s.event_id or self.events.get(s.message_id)) != self.event:
            return False
        event_type = s.event_type or self.types.get(s.message_id)
        if self.event_type is not None and not (event_type and fnmatchcase(event_type, self.event_type)):
            return False
        return not self.statuses or s.status in self.statuses

    def select(self, statuses: Iterable[DeliveryStatus]) -> list[DeliveryStatus]:
        """The matching ones of a batch, in time order (every one of them is learned from first)."""
        ordered = time_ordered(statuses)
        for s in ordered:
            self.learn(s)
        return [s for s in ordered if self.matches(s)]


def parse_statuses(values: Iterable[str]) -> frozenset[Status]:
    """`--status sent --status failed,bounced` as a set; a `ValueError` names the unknown ones."""
    words = [w.strip().lower() for v in values for w in v.split(",") if w.strip()]
    if unknown := [w for w in words if w not in {s.value for s in Status}]:
        raise ValueError(f"unknown status {', '.join(unknown)} (one of {', '.join(s.value for s in Status)})")
    return frozenset(Status(w) for w in words)


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
