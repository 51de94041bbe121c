"""Phone numbers: parsed and validated to E.164 with `phonenumbers`, and the sender chosen per country."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import phonenumbers
from pydantic_settings import NoDecode

from channels.errors import InvalidRecipient


def to_e164(number: str, *, provider: str | None = None) -> tuple[str, str | None]:
    """(`+34600111222`, `ES`) for a valid number; `InvalidRecipient` otherwise."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidRecipient("not a phone number", code="invalid_number", provider=provider) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidRecipient("not a valid phone number", code="invalid_number", provider=provider)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.region_code_for_number(parsed)


# A `key=value,…` map read from one environment variable. Without `NoDecode`, pydantic-settings JSON-decodes a
# dict field's variable before any validator runs, so `default=+1…,ES=+34…` would fail at start-up.
EnvMap = Annotated[dict[str, str], NoDecode]


def parse_env_map(value: Any) -> Any:
    """`default=+15005550006,ES=+34910000000` or a JSON object (string or dict) -> a dict."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return json.loads(value)
    if isinstance(value, str):
        pairs = (item.split("=", 1) for item in value.split(",") if "=" in item)
        return {k.strip(): v.strip() for k, v in pairs}
    return value


def sender_for(region: str | None, senders: Mapping[str, str]) -> str:
    """The configured sender for a country, else the `default` one."""
    return senders.get(region or "", senders.get("default", ""))
