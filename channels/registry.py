"""Providers by key (`<channel>.<vendor>`), imported on first use; extendable through entry points.

Third-party packages add providers under the entry-point group `herald.providers`, named like the keys here.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

PROVIDERS: dict[str, str] = {
    "email.smtp": "channels.providers.email:SmtpEmailProvider",
    "email.sendgrid": "channels.providers.sendgrid:SendgridEmailProvider",
    "sms.twilio": "channels.providers.sms:TwilioSmsProvider",
    "sms.vonage": "channels.providers.sms:VonageSmsProvider",
    "whatsapp.meta": "channels.providers.whatsapp:MetaWhatsappProvider",
    "voice.twilio": "channels.providers.voice:TwilioVoiceProvider",
    "push.fcm": "channels.providers.push:FcmPushProvider",
    "webhook.standard": "channels.providers.webhook:StandardWebhookProvider",
}

ENTRY_POINT_GROUP = "herald.providers"


class UnknownProvider(LookupError):
    pass


@cache
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def provider_class(key: str) -> type[Any]:
    """The class registered under `key`, e.g. `sms.twilio`."""
    target = PROVIDERS.get(key) or _entry_points().get(key)
    if target is None:
        known = ", ".join(sorted({*PROVIDERS, *_entry_points()}))
        raise UnknownProvider(f"no provider {key!r}; known: {known}")
    module, _, name = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


def parse_provider_spec(spec: str) -> dict[str, list[str]]:
    """`email=smtp,sendgrid;sms=twilio` -> `{"email": ["smtp", "sendgrid"], "sms": ["twilio"]}` (order = failover)."""
    chains: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.replace("\n", ";").split(";"))):
        channel, _, vendors = part.partition("=")
        names = [v.strip() for v in vendors.split(",") if v.strip()]
        if not channel.strip() or not names:
            raise ValueError(f"bad provider entry {part!r}; expected channel=vendor[,vendor…]")
        chains[channel.strip()] = names
    return chains
