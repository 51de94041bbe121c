"""Preference topics: named groups of catalog types a person may turn off, as a whole or per channel (the
catalog's `preference_topics`; a type names its own in `topic`, else its category is its topic).

Models and pure functions over the catalog only. The choices themselves live in the preference ledger
(`schemas/preferences.py` `TopicChoice`); the consent check applies them (consumers/state/preferences.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:  # schemas.catalog imports this module for `PreferenceTopic`
    from schemas.catalog import Catalog, CatalogEntry, Channel

# A topic's name is part of a status `detail` (`preference:<topic>/<channel>`) and of the page's form fields.
TOPIC_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_LANGUAGE = re.compile(r"[a-z]{2,3}")
# Every type belongs to a topic; one that names none is in its category's, which exists without being declared.
CATEGORY_TOPICS = ("transactional", "promotional")


class PreferenceTopic(BaseModel):
    """A topic of the catalog: how the preference page names it, and whether it may be turned off."""

    model_config = ConfigDict(extra="forbid")

    label: dict[str, str] = Field(
        default_factory=dict, description="What the preference page calls the topic, per language; English, else "
        "the topic's name, where the person's language has none.",
        examples=[{"en": "Shipping updates", "es": "Envíos", "de": "Versand"}])
    required: bool = Field(default=False, description="Cannot be turned off: the page shows it locked and the API "
                           "refuses to turn it off (422). A promotional type never belongs to a required topic.")

    @field_validator("label")
    @classmethod
    def _languages(cls, value: dict[str, str]) -> dict[str, str]:
        if bad := [k for k in value if not _LANGUAGE.fullmatch(k)]:
            raise ValueError(f"label keys must be lower-case language codes like es: {bad}")
        if any(not text.strip() or len(text) > 80 for text in value.values()):
            raise ValueError("labels must be 1 to 80 characters")
        return value


def check_topics(catalog: Catalog) -> None:
    """Raise `ValueError` when a topic is misnamed, a type names an undeclared topic, or a promotional type is in a
    required topic (promotions always have a way out)."""
    if bad := [name for name in catalog.preference_topics if not TOPIC_NAME.fullmatch(name)]:
        raise ValueError(f"preference topic names must be lower-case words (a-z, 0-9, _ and -): {bad}")
    for name, entry in catalog.types.items():
        if entry.topic is not None and entry.topic not in catalog.preference_topics \
                and entry.topic not in CATEGORY_TOPICS:
            raise ValueError(f"types.{name}: topic {entry.topic!r} is not one of preference_topics")
        if entry.category == "promotional" and topic_required(catalog, topic_of(entry)):
            raise ValueError(f"types.{name}: a promotional type cannot be in required topic {topic_of(entry)!r}")


def topic_of(entry: CatalogEntry) -> str:
    """A type's topic: its `topic`, else its category."""
    return entry.topic or entry.category.value


def topic_required(catalog: Catalog, topic: str) -> bool:
    declared = catalog.preference_topics.get(topic)
    return declared is not None and declared.required


def preference_topic(catalog: Catalog, entry: CatalogEntry) -> str | None:
    """The topic whose choices apply to a type's messages, or None when none do: a critical type, or one in a
    required topic, is sent whatever the person chose there (consent still applies)."""
    topic = topic_of(entry)
    return None if entry.priority == "critical" or topic_required(catalog, topic) else topic


def topics(catalog: Catalog) -> dict[str, list[CatalogEntry]]:
    """Every topic with its types: the declared ones in catalog order, then the categories types fall back to.
    A declared topic no type names is listed too (with no types)."""
    found: dict[str, list[CatalogEntry]] = {name: [] for name in catalog.preference_topics}
    for entry in catalog.types.values():
        found.setdefault(topic_of(entry), []).append(entry)
    return found


def topic_locked(catalog: Catalog, topic: str) -> bool:
    """Whether a person may not turn the topic off: it is required, or every type in it is critical."""
    entries = topics(catalog).get(topic, [])
    return topic_required(catalog, topic) or all(e.priority == "critical" for e in entries)


def topic_channels(catalog: Catalog, topic: str) -> list[Channel]:
    """The channels the topic's types use, in the order they first appear in the catalog."""
    return list(dict.fromkeys(c for entry in topics(catalog).get(topic, []) for c in entry.channels))


def topic_label(catalog: Catalog, topic: str, language: str) -> str:
    """The topic's label in `language`, else in English, else its name."""
    declared = catalog.preference_topics.get(topic)
    labels = declared.label if declared is not None else {}
    return labels.get(language) or labels.get("en") or topic
