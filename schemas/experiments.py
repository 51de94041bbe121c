"""What the catalog says about measuring a type's messages: the later event that counts as their goal (conversion
attribution) and the template variants they are split between (A/B tests). Models only; the attribution lives in
consumers/pipeline/conversions.py, the choice of a variant in consumers/pipeline/variants.py."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from schemas.durations import parse_duration

# A variant's name is published on every status of its messages and is a column of the console's index.
VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# A folder inside the type's template folder: relative, no `..`, no hidden or shared (`_…`) parts.
TEMPLATE_FOLDER = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$")


class Conversion(BaseModel):
    """A later event that counts as the goal of this type's messages: `payment.completed` after a `payment.due`
    reminder, for the same recipient, within `within` of the reminder being sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    goal: str = Field(description="The event type that counts as the goal (a type of the catalog; it may have no "
                      "channels of its own).", examples=["payment.completed"])
    within: timedelta = Field(description="How long after a message was sent its goal still counts.",
                              examples=["7d"])
    match: str | None = Field(default=None, description="A payload field (one of this type's `required`) the goal "
                              "must agree on when the goal event has it too, e.g. the invoice number: a payment "
                              "converts the reminder of its own invoice only.", examples=["invoice_number"])

    @field_validator("within", mode="before")
    @classmethod
    def _within(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("within")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("within must be positive")
        return value


class Variant(BaseModel):
    """One variant of a type's templates and its share of the messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: int = Field(ge=0, le=1_000_000, description="Relative share of the messages (0 turns the variant off).",
                        examples=[50])
    templates: str | None = Field(
        default=None, description="Folder, inside the type's template folder, holding this variant's templates "
        "(`<channel>.<locale>.<part>.j2`, as the type's own); a part it lacks comes from the type's own templates. "
        "None: the type's own templates (the control).", examples=["variants/b"])

    @field_validator("templates")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        if value is not None and not TEMPLATE_FOLDER.match(value):
            raise ValueError(f"templates must be a folder inside the type's folder, like variants/b, not {value!r}")
        return value


def check_variants(variants: dict[str, Variant]) -> dict[str, Variant]:
    """Names a status may carry, and weights that choose something."""
    if bad := [name for name in variants if not VARIANT_NAME.match(name)]:
        raise ValueError(f"variant names must be short lowercase words (a, b, short_subject): {bad}")
    if variants and not sum(v.weight for v in variants.values()):
        raise ValueError("variants: at least one variant needs a weight above 0")
    return variants


Variants = Annotated[dict[str, Variant], AfterValidator(check_variants)]


def conversion_problem(name: str, conversion: Conversion | None, required: Collection[str],
                       types: Mapping[str, Any]) -> str | None:
    """What is wrong with type `name`'s `conversion` in a catalog of `types`, or None."""
    if conversion is None:
        return None
    if conversion.goal not in types:
        return f"{name}: conversion goal {conversion.goal} is not a type of the catalog"
    if conversion.goal == name:
        return f"{name}: a type cannot be its own conversion goal"
    if conversion.match is not None and conversion.match not in required:
        return f"{name}: conversion.match {conversion.match!r} must be one of the required fields"
    return None
