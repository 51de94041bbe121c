"""The catalog: what Herald does with each event type. Loaded from YAML and validated at start-up."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.digests import Digest, digest_problem
from schemas.durations import parse_duration
from schemas.experiments import Conversion, Variants, conversion_problem
from schemas.surveys import SURVEY_CHANNELS, Survey
from schemas.topics import PreferenceTopic, check_topics


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
    RATE = "rate"  # keys 1..scale of a `survey`: set by the survey, never by hand


class QuietHours(StrEnum):
    RESPECT = "respect"
    IGNORE = "ignore"


_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def check_window(value: str | None) -> str | None:
    """`HH:MM-HH:MM`, the local hours when a message may be sent (may wrap past midnight)."""
    if value is not None and not _WINDOW.match(value):
        raise ValueError(f"window must look like 08:00-21:00, not {value!r}")
    return value


class ScheduleRule(BaseModel):
    """Send `before` a date in the payload, e.g. 7 days before `payload.appointment_at`."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="Payload field holding an ISO 8601 date-time.", examples=["appointment_at"])
    before: timedelta = Field(description="How long before that time.", examples=["7d"])

    @field_validator("before", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)


class FrequencyCap(BaseModel):
    """At most `count` messages of a category per recipient in each `per` window."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, examples=[3])
    per: timedelta = Field(examples=["1d"])

    @field_validator("per", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)


class Tracking(BaseModel):
    """What Herald tracks in a type's email: opens (a pixel) and clicks (links through a redirect)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    opens: bool = Field(default=True, description="Add an open pixel; `opened` statuses.")
    clicks: bool = Field(default=True, description="Wrap http(s) links in signed redirects; `clicked` statuses.")


NOT_TRACKED = Tracking(opens=False, clicks=False)


class CatalogError(ValueError):
    """The catalog file is missing, unreadable or invalid; the message says where."""


class CatalogEntry(BaseModel):
    """How Herald handles one event type."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", description="What the event means, for template authors.")
    category: Category = Field(description="transactional needs no opt-in; promotional needs consent.")
    topic: str | None = Field(default=None, description="The preference topic a person turns off to stop this "
                              "type (one of the catalog's `preference_topics`); its category when unset. Critical "
                              "types ignore preferences.", examples=["shipping"])
    priority: Priority = Field(description="critical goes through the critical lane.")
    channels: list[Channel] = Field(default_factory=list, description="Channels in fallback order.")
    ttl: timedelta = Field(description="Not sent once this old (e.g. `10m`).", examples=["10m"])
    quiet_hours: QuietHours = Field(default=QuietHours.RESPECT, description="respect or ignore quiet hours.")
    send_window: str | None = Field(default=None, description="Local hours when this type may be sent; the "
                                    "catalog's `send_window` when unset.", examples=["09:00-20:00"])
    schedule: list[ScheduleRule] = Field(default_factory=list,
                                         description="Send at these times relative to a payload date instead of now.")
    cancel_key: str | None = Field(default=None, description="Payload field naming what a later event may cancel.",
                                   examples=["appointment_id"])
    cancels: list[str] = Field(default_factory=list, description="Types whose pending messages with the same "
                               "`cancel_key` value this event cancels.", examples=[["appointment.reminder"]])
    attempts: int | None = Field(default=None, ge=1, description="Send attempts before the message fails; "
                                 "HERALD_MAX_ATTEMPTS when unset. The time-to-live is the retry deadline.")
    receipt_wait: timedelta | None = Field(default=None, description="Fall back to the next channel when no "
                                           "receipt arrives within this time.", examples=["2m"])
    keypad: dict[str, KeypadAction] = Field(
        default_factory=dict, description="Voice keypad menu: digit -> repeat, confirm, cancel or agent.",
        examples=[{"1": "repeat", "0": "agent"}])
    answers: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict, description="Text replies understood as answers: meaning (confirm or cancel) -> "
        "language -> accepted words, matched whole-message, ignoring case, accents and punctuation.",
        examples=[{"confirm": {"en": ["Y", "YES"], "es": ["S", "SI", "SÍ"]}, "cancel": {"en": ["N", "NO"]}}])
    tracking: bool | Tracking | None = Field(
        default=None, description="Open and click tracking of this type's email: false (none), true (both) or "
        "{opens, clicks}. Unset: both, except on a critical type, whose email (codes, password resets, "
        "verification links) is never tracked and may not ask to be.",
        examples=[False, {"opens": True, "clicks": False}])
    required: list[str] = Field(default_factory=list,
                                description="Payload fields the templates need; missing ones are rejected.")
    sample: dict[str, Any] = Field(default_factory=dict,
                                   description="Sample payload for `herald templates check|preview` and the demo.")
    show_content: bool = Field(
        default=False, description="Whether the console may show what this type's messages said (kept on topic "
        "herald.content only while HERALD_CONSOLE_PERSONAL_DATA is on). Never on a critical type: its messages "
        "carry codes, password-reset and verification links.")
    survey: Survey | None = Field(
        default=None, description="Ask for a rating from 1 to `scale` (voice: one keypad key, which sets `keypad` "
        "keys 1..scale to `rate`; SMS and WhatsApp: a number in the reply) and publish each answer to "
        "herald.replies as `<type>.rated`. `{scale, question: {expires, keep}, thanks}`, or `1-5` (also written "
        "`rating: 1-5`).",
        examples=["1-5", {"scale": 5, "question": {"expires": "2d", "keep": ["ticket_id"]}, "thanks": True}])
    digest: Digest | None = Field(
        default=None, description="Collect this type's events per recipient into one message (see `Digest`).",
        examples=[{"window": "1h", "max_events": 10, "key": "thread_id"}])
    conversion: Conversion | None = Field(
        default=None, description="A later event type that counts as the goal of this type's messages: Herald "
        "publishes `converted` for them when it arrives (consumers/pipeline/conversions.py).",
        examples=[{"goal": "payment.completed", "within": "7d", "match": "invoice_number"}])
    variants: Variants = Field(
        default_factory=dict, description="Template variants by name and weight; each message gets one, chosen "
        "from its id, and every status of it names it (`variant`).",
        examples=[{"a": {"weight": 50}, "b": {"weight": 50, "templates": "variants/b"}}])

    @field_validator("ttl", "receipt_wait", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("send_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        return check_window(value)

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

    @field_validator("answers", mode="before")
    @classmethod
    def _unquoted_words(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare YES, NO, ON or OFF as a boolean; say so rather than "not a valid string".
        if isinstance(value, dict):
            for meaning, languages in value.items():
                for language, words in (languages.items() if isinstance(languages, dict) else ()):
                    if isinstance(words, list) and any(isinstance(w, bool) for w in words):
                        raise ValueError(f"answers.{meaning}.{language}: quote the words (YAML reads YES and NO as "
                                         "true and false)")
        return value

    @field_validator("answers")
    @classmethod
    def _answers(cls, value: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
        if bad := [m for m in value if m not in (KeypadAction.CONFIRM, KeypadAction.CANCEL)]:
            raise ValueError(f"answers may only mean confirm or cancel, not {bad}")
        meanings: dict[tuple[str, str], str] = {}
        for meaning, languages in value.items():
            if not languages:
                raise ValueError(f"answers.{meaning}: list the accepted words per language")
            for language, words in languages.items():
                if not re.fullmatch(r"[a-z]{2,3}", language):
                    raise ValueError(f"answers.{meaning}: {language!r} is not a lower-case language code like es")
                if not words or not all(any(c.isalnum() for c in w) for w in words):
                    raise ValueError(f"answers.{meaning}.{language}: words must be a non-empty list of words")
                for word in words:  # a word cannot mean both things in one language
                    if meanings.setdefault((language, word.casefold()), meaning) != meaning:
                        raise ValueError(f"answers: {word!r} means both confirm and cancel in {language}")
        return value

    @model_validator(mode="after")
    def _sample_covers_required(self) -> CatalogEntry:
        if self.sample and (missing := [f for f in self.required if f not in self.sample]):
            raise ValueError(f"sample lacks required fields {missing}")
        if self.ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        if (self.cancels or self.schedule) and self.cancel_key and self.cancel_key not in self.required:
            raise ValueError(f"cancel_key {self.cancel_key!r} must be one of the required fields")
        if self.priority is Priority.CRITICAL and self.tracking not in (None, False, NOT_TRACKED):
            raise ValueError("a critical type is never tracked (codes, password resets, verification links): "
                             "remove `tracking` or set it to false")
        if self.priority is Priority.CRITICAL and self.show_content:
            raise ValueError("a critical type's content is never shown (codes, password resets, verification "
                             "links): remove `show_content`")
        return self

    @model_validator(mode="before")
    @classmethod
    def _rating_is_a_survey(cls, value: Any) -> Any:
        """`rating: 1-5` is short for `survey: 1-5`."""
        if isinstance(value, dict) and "rating" in value:
            if "survey" in value:
                raise ValueError("give `survey` or its shorthand `rating`, not both")
            value = {**{k: v for k, v in value.items() if k != "rating"}, "survey": value["rating"]}
        return value

    @model_validator(mode="after")
    def _survey_keys(self) -> CatalogEntry:
        """A survey owns keypad keys 1..scale (`rate`), and a message asks one question: no confirm or cancel."""
        rated = {key for key, action in self.keypad.items() if action is KeypadAction.RATE}
        if self.survey is None:
            if rated:
                raise ValueError("keypad `rate` is set by `survey`, never by hand")
            return self
        keys = [str(score) for score in range(1, self.survey.scale + 1)]
        if taken := sorted(k for k, a in self.keypad.items() if (k in keys) != (a is KeypadAction.RATE)):
            raise ValueError(f"keypad keys {taken}: keys 1-{self.survey.scale} are the survey's ratings, and only "
                             "they")
        if self.answers or any(a in (KeypadAction.CONFIRM, KeypadAction.CANCEL) for a in self.keypad.values()):
            raise ValueError("a survey asks for a rating only: remove `answers` and keypad confirm/cancel")
        if not SURVEY_CHANNELS & {c.value for c in self.channels}:
            raise ValueError("a survey needs voice, sms or whatsapp among its channels (the others cannot hear "
                             "an answer)")
        self.keypad = {**self.keypad, **dict.fromkeys(keys, KeypadAction.RATE)}
        return self

    @model_validator(mode="after")
    def _digest_fits(self) -> CatalogEntry:
        if problem := digest_problem(self.digest, critical=self.priority is Priority.CRITICAL,
                                     timed=bool(self.schedule or self.cancel_key or self.cancels),
                                     required=self.required):
            raise ValueError(problem)
        return self

    def template_payload(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """What this type's templates render for `payload` (the `sample` when None) in previews: the payload, or
        for a digest type the digest of it (of `digest.samples` for the sample), unless it is one already."""
        if self.digest is None:
            return self.sample if payload is None else payload
        if payload is None:
            return Digest.payload(self.digest.samples or [self.sample])
        events = payload.get("events")
        return Digest.payload(events) if isinstance(events, list) else Digest.payload([payload])

    def tracks(self) -> Tracking:
        """What is tracked in this type's email (see `tracking`)."""
        if self.priority is Priority.CRITICAL or self.tracking is False:
            return NOT_TRACKED
        if self.tracking is True or self.tracking is None:
            return Tracking()
        return self.tracking


_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class Catalog(BaseModel):
    """Event type -> entry. Unknown types are rejected, never guessed."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(default=1, description="Catalog format version.")
    send_window: str = Field(default="08:00-21:00", description="Local hours when non-critical messages may be "
                             "sent (quiet hours are the rest).")
    frequency_caps: dict[Category, FrequencyCap] = Field(
        default_factory=dict, description="Per recipient and category.",
        examples=[{"promotional": {"count": 3, "per": "1d"}}])
    preference_topics: dict[str, PreferenceTopic] = Field(
        default_factory=dict, description="Topics people may turn off, per channel or whole (types name theirs in "
        "`topic`); `transactional` and `promotional` exist without being declared.",
        examples=[{"shipping": {"label": {"en": "Shipping updates", "es": "Envíos"}},
                   "account": {"label": {"en": "Account and security"}, "required": True}}])
    types: dict[str, CatalogEntry] = Field(description="Entries by event type.")

    @field_validator("send_window")
    @classmethod
    def _window(cls, value: str) -> str:
        return check_window(value) or value

    @model_validator(mode="after")
    def _cancels_known_types(self) -> Catalog:
        goals = {entry.conversion.goal for entry in self.types.values() if entry.conversion}
        for name, entry in self.types.items():
            if not entry.channels and not entry.cancels and name not in goals:
                raise ValueError(f"types.{name}: channels must list at least one channel (only a type that cancels "
                                 "others or is a conversion goal may have none)")
            if problem := conversion_problem(name, entry.conversion, entry.required, self.types):
                raise ValueError(problem)
            if unknown := [t for t in entry.cancels if t not in self.types]:
                raise ValueError(f"{name} cancels unknown types {unknown}")
            for target in entry.cancels:
                if self.types[target].cancel_key != entry.cancel_key or not entry.cancel_key:
                    raise ValueError(f"{name} and {target} must share a cancel_key")
        return self

    @field_validator("types")
    @classmethod
    def _names(cls, value: dict[str, CatalogEntry]) -> dict[str, CatalogEntry]:
        if bad := [name for name in value if not _TYPE_NAME.match(name)]:
            raise ValueError(f"event type names must be dotted lowercase words: {bad}")
        return value

    @model_validator(mode="after")
    def _topics_known(self) -> Catalog:
        check_topics(self)
        return self

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
