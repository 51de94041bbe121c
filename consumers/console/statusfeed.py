"""The live tail's logic, without HTTP (consumers/console/tail.py serves it): the filters, the lane of a type, the
rows a tail shows (from the index, and as they arrive), and a subscriber's bounded queue.

A row carries ids, the type, channel, status, provider and reason only: never the hashed recipient or anything
of the message's content, so nothing personal goes down the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from consumers.console.search import tone
from consumers.observe.timeline_index import TimelineIndex
from schemas.catalog import Catalog, Channel, Priority
from schemas.status import DeliveryStatus, Status

Lane = Literal["critical", "normal"]
LANES: tuple[Lane, ...] = ("critical", "normal")
RECENT = 50  # rows the page starts with
REPLAY = 500  # rows a (re)connecting stream is sent from the index at most: what the page keeps
QUEUE = 1000  # rows waiting for one slow client; the oldest are dropped beyond


def critical_types(catalog: Catalog | None) -> frozenset[str]:
    """The types the catalog routes through the critical lane (consumers/topics.py `event_lane`)."""
    if catalog is None:
        return frozenset()
    return frozenset(name for name, entry in catalog.types.items() if entry.priority is Priority.CRITICAL)


def lane_of(event_type: str | None, critical: frozenset[str]) -> Lane:
    return "critical" if event_type in critical else "normal"


class TailFilter(BaseModel):
    """What a tail shows: every field None shows everything. Read from the page's GET form (blank: any)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str | None = Field(default=None, max_length=200)
    channel: Channel | None = None
    status: Status | None = None
    lane: Lane | None = None

    @field_validator("type", "channel", "status", "lane", mode="before")
    @classmethod
    def _blank_is_any(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @classmethod
    def of(cls, query: Mapping[str, str]) -> TailFilter:
        """From a request's query; `ValidationError` for a value no status can have."""
        return cls.model_validate({name: query.get(name) for name in ("type", "channel", "status", "lane")})

    def query(self) -> dict[str, str]:
        """The filter as query parameters (the set ones only)."""
        return {name: str(value) for name, value in self.model_dump(mode="json").items() if value is not None}

    def matches(self, doc: Mapping[str, Any], critical: frozenset[str]) -> bool:
        """Whether a status (its JSON, decoded) passes."""
        event_type = doc.get("event_type")
        return ((self.type is None or event_type == self.type)
                and (self.channel is None or doc.get("channel") == self.channel.value)
                and (self.status is None or doc.get("status") == self.status.value)
                and (self.lane is None or lane_of(event_type if isinstance(event_type, str) else None,
                                                  critical) == self.lane))

    def where(self, critical: frozenset[str]) -> tuple[str, list[Any]]:
        """The filter as SQL over the index's columns, with its bound parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("event_type", self.type), ("channel", self.channel), ("status", self.status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(str(value))
        if self.lane is not None:
            names = sorted(critical)
            marks = ",".join("?" * len(names))
            if self.lane == "critical":
                clauses.append(f"event_type IN ({marks})" if names else "0")
            else:
                clauses.append(f"(event_type IS NULL OR event_type NOT IN ({marks}))" if names else "1")
            params += names
        return (" AND ".join(clauses) or "1"), params


class TailRow(BaseModel):
    """One status as the tail shows it (no recipient, no content)."""

    model_config = ConfigDict(extra="forbid")

    key: str  # what tells two rows apart, in the page and across reconnections
    message_id: str
    at: datetime
    status: str
    tone: str
    event_type: str | None
    channel: str | None
    lane: Lane
    provider: str | None
    attempt: int
    reason: str | None

    @property
    def epoch(self) -> float:
        return self.at.timestamp()


def to_row(status: DeliveryStatus, critical: frozenset[str]) -> TailRow:
    at = status.at if status.at.tzinfo else status.at.replace(tzinfo=UTC)
    reason = ": ".join(p for p in (status.error, status.detail) if p) or None
    return TailRow(key=f"{status.message_id}|{status.status.value}|{status.attempt}|{at.timestamp():.6f}",
                   message_id=status.message_id, at=at, status=status.status.value, tone=tone(status.status),
                   event_type=status.event_type, channel=status.channel, lane=lane_of(status.event_type, critical),
                   provider=status.provider, attempt=status.attempt, reason=reason)


def to_rows(values: Iterable[bytes], critical: frozenset[str]) -> list[TailRow]:
    """Rows of status records, in their order; records this version cannot read are left out."""
    rows = []
    for value in values:
        with contextlib.suppress(ValidationError):
            rows.append(to_row(DeliveryStatus.model_validate_json(value), critical))
    return rows


def recent(index: TimelineIndex, wanted: TailFilter, critical: frozenset[str], *, since: float | None = None,
           limit: int = RECENT) -> list[TailRow]:
    """The newest `limit` matching statuses (at or after `since`, epoch seconds, when given), newest first.

    The filter is read from the index on (at, event_type, channel, status) alone, newest first, so a filter that
    matches nothing costs one pass over that index, never over the statuses themselves."""
    where, params = wanted.where(critical)
    if since is not None:
        where, params = f"at >= ? AND {where}", [since, *params]
    found = index.query(f"SELECT value FROM statuses WHERE {where} ORDER BY at DESC LIMIT ?", [*params, limit])
    return to_rows((bytes(value) for (value,) in found), critical)


def _at(doc: Mapping[str, Any]) -> float | None:
    try:
        when = datetime.fromisoformat(doc["at"])
    except (KeyError, TypeError, ValueError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class Subscriber:
    """One tail client's queue of matching statuses, fed by `offer` (a `StatusTimeline` listener, on the event
    loop). Bounded: when the client cannot keep up, the oldest waiting statuses are dropped and counted, so one
    slow browser never makes a worker's memory grow.

    Statuses recorded before `floor` (epoch seconds) are not news: a worker that is catching up on the topic tells
    its listeners about a week of statuses."""

    def __init__(self, wanted: TailFilter, critical: frozenset[str], *, floor: float, capacity: int = QUEUE) -> None:
        self.wanted = wanted
        self.critical = critical
        self.floor = floor
        self.capacity = capacity
        self.closed = False
        self._waiting: deque[bytes] = deque()
        self._dropped = 0
        self._wake = asyncio.Event()

    def offer(self, values: list[bytes]) -> None:
        """Queue the matching ones of a batch of status records."""
        for value in values:
            try:
                doc = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict) or not self.wanted.matches(doc, self.critical):
                continue
            at = _at(doc)
            if at is None or at < self.floor:
                continue
            if len(self._waiting) >= self.capacity:
                self._waiting.popleft()
                self._dropped += 1
            self._waiting.append(value)
        if self._waiting:
            self._wake.set()

    def take(self) -> tuple[list[bytes], int]:
        """What waits (oldest first) and how many were dropped since the last take."""
        values, dropped = list(self._waiting), self._dropped
        self._waiting.clear()
        self._dropped = 0
        self._wake.clear()
        return values, dropped

    async def wait(self, timeout: float) -> bool:
        """Until statuses wait or the subscriber is closed (True), or `timeout` seconds pass (False)."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """End the stream (the server is stopping)."""
        self.closed = True
        self._wake.set()
