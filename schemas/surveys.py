"""What the catalog says about a type that asks for a rating (`survey`): its scale, how long a rating counts and
what it carries, and whether Herald thanks the person. Models only; reading a rating out of a reply lives in
consumers/inbound/ratings.py, the `<type>.rated` record in consumers/inbound/replies.py."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.durations import parse_duration

# Channels on which a person can answer a survey: keypad digits on a call, a text reply.
SURVEY_CHANNELS = frozenset({"voice", "sms", "whatsapp"})
_RATING_RANGE = re.compile(r"^\s*1\s*-\s*(\d+)\s*$")


class SurveyQuestion(BaseModel):
    """The open question a survey leaves behind: how long a rating counts, and what of the payload it carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expires: timedelta | None = Field(
        default=None, description="How long after the message a rating is taken (later, a number is just a "
        "reply): the type's `ttl` when unset, and never more than 7 days (how long Herald keeps any open "
        "question).", examples=["2d"])
    keep: list[str] = Field(default_factory=list, description="Payload fields every rating carries on "
                            "herald.replies, so upstream knows what was rated.", examples=[["ticket_id"]])

    @field_validator("expires", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:

        return parse_duration(value)

    @field_validator("expires")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("expires must be positive")
        return value


class Survey(BaseModel):
    """A type that asks for a rating from 1 to `scale`: a keypad key on a call, a number in a text reply. Each
    rating goes to herald.replies as `<type>.rated`. `1-5` is short for `{scale: 5}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: int = Field(default=5, ge=2, le=9, description="Ratings go from 1 to this (at most 9: one keypad key).")
    question: SurveyQuestion = Field(default_factory=SurveyQuestion,
                                     description="How long a rating counts and what it carries.")
    thanks: bool = Field(default=True, description="Thank a person who rated by SMS or WhatsApp "
                         "(`reply.acknowledged` on that channel); a call always thanks them before hanging up.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not (m := _RATING_RANGE.match(value)):
                raise ValueError(f"a rating scale looks like 1-5, not {value!r}")
            return {"scale": int(m.group(1))}
        return value

    def window(self, ttl: timedelta) -> timedelta:
        """How long after the message a rating is taken."""
        return self.question.expires or ttl
