"""People's choices per preference topic in the ledger: where a tenant's document is kept, what a choice refuses,
and the tidy form every writer stores.

The ledger was keyed by recipient id alone, and a recipient id is the upstream service's: two tenants may both have
a `user-42` who are different people. So what a tenant's API key or the page of a tenant's message writes goes to
a document of that tenant, keyed `@<tenant>/<recipient id>` (the tenant percent-encoded, so its `/` can never shift
the recipient id), on the same compacted `herald.preferences` topic, with `tenant` set in it. Every document written
before keeps its key and meaning: the recipient's own document (STOP, unsubscribe, bounces, `herald prefs`), read
for every tenant's messages as before; a tenant's document adds only that tenant's topic choices. Events without a
tenant read topic choices from the recipient's own document.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, unquote

from schemas.preferences import Preferences, TopicChoice

TENANT_PREFIX = "@"


def ledger_key(tenant: str | None, recipient_id: str) -> str:
    """The key of the document that holds `tenant`'s choices for `recipient_id` (the recipient's own without one)."""
    if not tenant:
        return recipient_id
    return f"{TENANT_PREFIX}{quote(tenant, safe='')}/{recipient_id}"


def split_key(key: str) -> tuple[str | None, str]:
    """(tenant, recipient id) of a ledger key; (None, key) for a recipient's own document."""
    if key.startswith(TENANT_PREFIX) and "/" in key:
        tenant, _, recipient_id = key[len(TENANT_PREFIX):].partition("/")
        if tenant and recipient_id:
            return unquote(tenant), recipient_id
    return None, key


def preference_detail(topic: str, channel: str) -> str:
    """The `detail` of a message suppressed by a topic choice."""
    return f"preference:{topic}/{channel}"


def topic_refusal(prefs: Preferences | None, *, topic: str | None, channel: str) -> str | None:
    """`preference:<topic>/<channel>` when the person turned the topic off on the channel, else None. `topic` None
    (a critical type, a required topic) never refuses."""
    if prefs is None or topic is None or (choice := prefs.topics.get(topic)) is None:
        return None
    return None if choice.allows(channel) else preference_detail(topic, channel)


def tidy(topics: Mapping[str, TopicChoice]) -> dict[str, TopicChoice]:
    """The stored form: a channel that says what `enabled` says is left out, and so is a topic left all on, so
    the document lists what is off (and what is on inside a topic that is off)."""
    tidied: dict[str, TopicChoice] = {}
    for name in sorted(topics):
        choice = topics[name]
        channels = {c: on for c, on in sorted(choice.channels.items()) if on != choice.enabled}
        if channels or not choice.enabled:
            tidied[name] = TopicChoice(enabled=choice.enabled, channels=channels)
    return tidied
