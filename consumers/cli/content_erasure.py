"""`herald forget` in `herald.content`: every message content kept for the console whose recipient is the person
forgotten is replaced by a `ContentErased` record under the same key. Every worker's console index deletes the
content when it reads one; the topic is `compact,delete`, so compaction removes the content from the log too."""

from __future__ import annotations

from datetime import datetime

import orjson

from consumers.cli.publish import read_topic
from consumers.pipeline.records import Publisher
from schemas.content import ContentErased
from schemas.settings import Settings


async def person_contents(settings: Settings, recipient_id: str) -> list[str]:
    """Message ids whose newest `herald.content` record is content sent to `recipient_id` (read from the start of
    the topic; holds only that person's ids). Records from before `recipient_id` was written cannot be matched."""
    theirs: set[str] = set()
    async for record in read_topic(settings, "content"):
        try:
            doc = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            continue
        message_id = doc.get("message_id") if isinstance(doc, dict) else None
        if not isinstance(message_id, str):
            continue
        if doc.get("erased") is not True and doc.get("recipient_id") == recipient_id:
            theirs.add(message_id)
        else:  # erased already, or (a resend under the same id) someone else's now
            theirs.discard(message_id)
    return sorted(theirs)


async def erase_contents(settings: Settings, publisher: Publisher, recipient_id: str, now: datetime) -> int:
    """Replace each content of `recipient_id` with a `ContentErased` record; how many were replaced."""
    doomed = await person_contents(settings, recipient_id)
    for message_id in doomed:
        erased = ContentErased(message_id=message_id, at=now)
        await publisher.send("content", message_id.encode(), erased.model_dump_json().encode(), durable=True)
    return len(doomed)
