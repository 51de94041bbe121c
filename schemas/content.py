"""What a message said, as sent: topic `herald.content`, keyed by message id. Written only for types whose catalog
entry sets `show_content` and only while HERALD_CONSOLE_PERSONAL_DATA is on, so the console can show support staff
the message a person got; read by every worker's console index, kept for HERALD_TIMELINE_RETENTION. `herald forget`
replaces a person's records with `ContentErased` ones under the same keys; the topic is compacted as well as
time-limited, so compaction removes what they replaced."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CONTENT_SCHEMA_VERSION = "1"
MAX_PART_CHARS = 8192  # per part: enough for any SMS, push or voice script and an email's text part


class MessageContent(BaseModel):
    """The rendered text parts of one sent message (never HTML, attachments or binary parts)."""

    model_config = ConfigDict(extra="ignore")

    schema_version: str = Field(default=CONTENT_SCHEMA_VERSION, description="Major version of this record.")
    message_id: str = Field(description="Herald's message id (the record key).", examples=["msg-3f2a9c"])
    recipient_id: str | None = Field(default=None, description="The recipient's id, so `herald forget` finds what "
                                     "they were sent (absent on records from before it was added).",
                                     examples=["user-42"])
    event_type: str = Field(description="Catalog type.", examples=["order.confirmed"])
    channel: str = Field(description="Channel it went on.", examples=["email"])
    locale: str = Field(description="Locale it was rendered in.", examples=["es"])
    template: str = Field(description="Template used.", examples=["order.confirmed/email"])
    parts: dict[str, str] = Field(description=f"Text parts by name (subject, text, body, title…), each cut at "
                                  f"{MAX_PART_CHARS} characters.")
    truncated: bool = Field(default=False, description="Whether a part was cut.")
    at: datetime = Field(description="When it was sent (UTC).")


class ContentErased(BaseModel):
    """What replaces a message's content once `herald forget` erased its recipient: same key, no content."""

    model_config = ConfigDict(extra="ignore")

    schema_version: str = Field(default=CONTENT_SCHEMA_VERSION, description="Major version of this record.")
    message_id: str = Field(description="Herald's message id (the record key).", examples=["msg-3f2a9c"])
    erased: Literal[True] = Field(default=True, description="Always true: the content was erased.")
    at: datetime = Field(description="When it was erased (UTC).")
