"""What the catalog says about a digest type (`digest`): its events are collected per recipient (and key value) and
sent as one message. The model only; collecting and closing live in consumers/pipeline/digests.py."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.durations import parse_duration


class Digest(BaseModel):
    """Collect a type's events per recipient (and per `key` value) and send one message for them: when `window`
    has passed since the first, or at once when `max_events` or `max_bytes` is reached. Templates get
    `payload.events` (the collected payloads, oldest first) and `payload.count`."""

    model_config = ConfigDict(extra="forbid")

    window: timedelta = Field(description="How long a digest collects, from its first event.", examples=["1h"])
    max_events: int = Field(default=50, ge=1, le=1000, description="A digest with this many events is sent at "
                            "once.", examples=[10])
    max_bytes: int = Field(default=65_536, ge=1024, le=524_288, description="Collected payloads (as JSON) past "
                           "this size are sent at once; keep it well under HERALD_MAX_EVENT_BYTES.")
    key: str | None = Field(default=None, description="Payload field (one of `required`): one digest per "
                            "recipient and value of it (per thread); per recipient when unset.",
                            examples=["thread_id"])
    samples: list[dict[str, Any]] = Field(default_factory=list, description="Collected payloads `herald templates "
                                          "check|preview` render; the type's `sample` when empty.")

    @field_validator("window", mode="before")
    @classmethod
    def _parsed(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("window must be positive")
        return value

    @staticmethod
    def payload(events: list[dict[str, Any]]) -> dict[str, Any]:
        """The payload of a digest's message: what its templates render."""
        return {"events": events, "count": len(events)}


def digest_problem(digest: Digest | None, *, critical: bool, timed: bool, required: Collection[str]) -> str | None:
    """What is wrong with a type's `digest` (`critical`: the type is; `timed`: it has `schedule`, `cancel_key` or
    `cancels`), or None."""
    if digest is None:
        return None
    if critical:
        return "a critical type cannot be a digest: it must go at once"
    if timed:
        return "a digest type cannot have `schedule`, `cancel_key` or `cancels`"
    if digest.key is not None and digest.key not in required:
        return f"digest.key {digest.key!r} must be one of the required fields"
    for index, sample in enumerate(digest.samples):
        if missing := [f for f in required if f not in sample]:
            return f"digest.samples[{index}] lacks required fields {missing}"
    return None
