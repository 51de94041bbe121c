"""The catalog: what Herald does with each event type. Loaded from YAML and validated at start-up."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Category(StrEnum):
    TRANSACTIONAL = "transactional"
    PROMOTIONAL = "promotional"


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    BULK = "bulk"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    VOICE = "voice"
    PUSH = "push"
    WEBHOOK = "webhook"


class KeypadAction(StrEnum):
    REPEAT = "repeat"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    AGENT = "agent"


class QuietHours(StrEnum):
    RESPECT = "respect"
    IGNORE = "ignore"


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: Any) -> Any:
    """Accept `90s`, `10m`, `2h`, `7d` besides what pydantic accepts for a timedelta."""
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    return value


class CatalogError(ValueError):
    """The catalog file is missing, unreadable or invalid; the message says where."""


class CatalogEntry(BaseModel):
    """How Herald handles one event type."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", description="What the event means, for template authors.")
    category: Category = Field(description="transactional needs no opt-in; promotional needs consent.")
    priority: Priority = Field(description="critical goes through the critical lane.")
    channels: list[Channel] = Field(min_length=1, description="Channels in fallback order.")
    ttl: timedelta = Field(description="Not sent once this old (e.g. `10m`).", examples=["10m"])
    quiet_hours: QuietHours = Field(default=QuietHours.RESPECT, description="respect or ignore quiet hours.")
    keypad: dict[str, KeypadAction] = Field(
        default_factory=dict, description="Voice keypad menu: digit -> repeat, confirm, cancel or agent.",
        examples=[{"1": "repeat", "0": "agent"}])
    required: list[str] = Field(default_factory=list,
                                description="Payload fields the templates need; missing ones are rejected.")
    sample: dict[str, Any] = Field(default_factory=dict,
                                   description="Sample payload for `herald templates check|preview` and the demo.")

    @field_validator("ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("channels")
    @classmethod
    def _no_repeats(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("a channel appears twice")
        return value

    @field_validator("keypad")
    @classmethod
    def _digits(cls, value: dict[str, KeypadAction]) -> dict[str, KeypadAction]:
        if bad := [k for k in value if k not in "0123456789*#" or len(k) != 1]:
            raise ValueError(f"keypad keys must be single keys 0-9, * or #: {bad}")
        return value

    @model_validator(mode="after")
    def _sample_covers_required(self) -> CatalogEntry:
        if self.sample and (missing := [f for f in self.required if f not in self.sample]):
            raise ValueError(f"sample lacks required fields {missing}")
        if self.ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        return self


_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class Catalog(BaseModel):
    """Event type -> entry. Unknown types are rejected, never guessed."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(default=1, description="Catalog format version.")
    types: dict[str, CatalogEntry] = Field(description="Entries by event type.")

    @field_validator("types")
    @classmethod
    def _names(cls, value: dict[str, CatalogEntry]) -> dict[str, CatalogEntry]:
        if bad := [name for name in value if not _TYPE_NAME.match(name)]:
            raise ValueError(f"event type names must be dotted lowercase words: {bad}")
        return value

    def get(self, event_type: str) -> CatalogEntry | None:
        return self.types.get(event_type)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """Read and validate a catalog file, raising `CatalogError` with every problem and its place."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise CatalogError(f"catalog {path} is not valid YAML: {exc}") from exc
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
            raise CatalogError(f"catalog {path} is invalid:\n" + "\n".join(lines)) from exc
