"""The consent and preference ledger: one document per recipient on the compacted `herald.preferences` topic."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.catalog import Channel


class TopicChoice(BaseModel):
    """What a person chose for one preference topic (the catalog's `preference_topics`): on or off as a whole, and
    per channel. A channel not named follows `enabled`: `{"enabled": false, "channels": {"email": true}}` is the
    topic by email only."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="The topic on or off on every channel not named in `channels`.")
    channels: dict[Channel, bool] = Field(default_factory=dict, description="Channel -> on or off.",
                                          examples=[{"sms": False}])

    def allows(self, channel: str) -> bool:
        """Whether the person wants this topic on `channel`."""
        return self.channels.get(Channel(channel), self.enabled)


class Preferences(BaseModel):
    """What a person allows and prefers. The latest document per recipient id wins (compacted topic).

    Addresses never appear in clear: `suppressed` is keyed by the same HMAC as `DeliveryStatus.recipient`.
    """

    model_config = ConfigDict(extra="forbid")

    recipient_id: str = Field(description="The person.", examples=["user-42"])
    opted_out: list[Channel] = Field(
        default_factory=list, description="Channels the person stopped (STOP): nothing is sent there, "
        "transactional or promotional, until they opt back in (START).", examples=[["sms"]])
    promotional_opt_in: list[Channel] = Field(
        default_factory=list, description="Channels with explicit consent for promotional messages.",
        examples=[["email"]])
    suppressed: dict[str, str] = Field(
        default_factory=dict, description="Address HMAC -> reason (bounced, complained, unregistered).",
        examples=[{"sha256:9f86d0…": "bounced"}])
    preferred_channel: Channel | None = Field(default=None, description="Tried first when the type allows it.")
    locale: str | None = Field(default=None, description="Overrides the event's locale.", examples=["es-ES"])
    timezone: str | None = Field(default=None, description="Overrides the event's time zone.")
    last_inbound: dict[Channel, datetime] = Field(
        default_factory=dict, description="When the person last wrote on a channel (WhatsApp's 24 h window).")
    updated_at: datetime = Field(description="When this document was written.")
    source: str = Field(default="", description="What wrote it: reply, unsubscribe, receipt, cli, api, page.",
                        examples=["reply"])
    tenant: str | None = Field(
        default=None, description="Set on a tenant's own document (written through the preferences API or the "
        "page of a tenant's message, keyed `@<tenant>/<recipient id>`): its `topics` apply to that tenant's "
        "messages. Unset: the recipient's document, for every tenant.", examples=["acme"])
    topics: dict[str, TopicChoice] = Field(
        default_factory=dict, description="Preference topic -> what the person chose; a topic not named is on.",
        examples=[{"promotions": {"enabled": True, "channels": {"sms": False}}, "feedback": {"enabled": False}}])
