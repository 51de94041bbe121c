"""What `herald publish` checks before it sends: the `--to` and `--data` it was given, and the event against the
catalog, the way the router would judge it (so a mistake is refused at the terminal, not as a `rejected` status).

Pure functions: a problem is a `ValueError` whose message is one line meant for the user.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from schemas.catalog import Catalog
from schemas.events import CloudEvent, Recipient

RECIPIENT_KEYS = tuple(Recipient.model_fields)
ADDRESS_ID_PREFIX = "addr-"


def address_id(address: str) -> str:
    """The recipient id of someone known only by an address: `addr-` + the first 16 hex digits of the SHA-256 of
    the normalised address (an email lower-cased, a phone in E.164). Unique to the address and the same on every
    run and every machine, so preferences, caps and `herald forget` find the same person again; not keyed, since
    it must not change with `HERALD_SECRET` (producers that know their users pass `id=` instead)."""
    return ADDRESS_ID_PREFIX + hashlib.sha256(address.strip().lower().encode()).hexdigest()[:16]


def _phone(value: str) -> str:
    from channels.errors import InvalidRecipient
    from channels.phone import to_e164

    try:
        return to_e164(value)[0]
    except InvalidRecipient as exc:
        raise ValueError(f"{value!r} is {exc}") from None


def _pairs(to: str) -> dict[str, str] | None:
    """`id=user-42,email=ana@example.com` as a dict, or None when `to` is not written as key=value pairs."""
    pairs = [part.partition("=") for part in to.split(",") if part.strip()]
    if not pairs or not all(sep and key.strip().isidentifier() for key, sep, _ in pairs):
        return None
    if len(pairs) == 1 and pairs[0][0].strip() not in RECIPIENT_KEYS and "@" in pairs[0][2]:
        return None  # an email with `=` in its local part, such as bounce=x@example.com
    found: dict[str, str] = {}
    for key, _, value in pairs:
        key = key.strip()
        if key not in RECIPIENT_KEYS:
            raise ValueError(f"unknown key {key!r} (one of {', '.join(RECIPIENT_KEYS)})")
        if key in found:
            raise ValueError(f"{key} given twice")
        found[key] = value.strip()
    return found


def parse_recipient(to: str, locale: str | None = None, *, check: bool = True) -> dict[str, Any]:
    """`--to` as the event's `data.to`: `key=value,…` pairs (the keys of `Recipient`), an email, a phone number
    (`+` and country code) or a JSON object. Without an `id`, the id is `address_id` of the email or phone.
    With `check`, the result must be a valid `Recipient`; without, only its shape is read."""
    text = to.strip()
    recipient: dict[str, Any]
    if text.startswith("{"):
        try:
            recipient = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(recipient, dict):
            raise ValueError("the JSON must be an object")
    elif (pairs := _pairs(text)) is not None:
        recipient = dict(pairs)
    elif "@" in text and "," not in text and " " not in text:
        recipient = {"email": text}
    elif text.startswith("+"):
        recipient = {"phone": _phone(text)}
    else:
        raise ValueError(f"{to!r} is not an email, a +country phone number, key=value pairs "
                         "(id=user-42,email=ana@example.com,locale=es-ES) or a JSON object")
    if check and recipient.get("phone"):
        recipient["phone"] = _phone(str(recipient["phone"]))
    if not recipient.get("id"):
        address = recipient.get("email") or recipient.get("phone")
        if not address:
            raise ValueError("give an id=, an email or a phone")
        recipient = {"id": address_id(str(address)), **recipient}
    if locale:
        recipient["locale"] = locale
    if check:
        try:
            Recipient.model_validate(recipient)
        except ValidationError as exc:
            raise ValueError(_first_problem(exc)) from None
    return recipient


def parse_payload(data: str) -> dict[str, Any]:
    """`--data` as the event's payload: a JSON object."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"must be a JSON object, not {type(payload).__name__}")
    return payload


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def unknown_type(catalog: Catalog, event_type: str) -> str:
    """`unknown event type X`, with the closest known types, or all of them when none is close."""
    close = difflib.get_close_matches(event_type, list(catalog.types), n=3)
    return f"unknown event type {event_type!r}" + (f" (did you mean {', '.join(close)}?)" if close else
                                                    f" (the catalog has {', '.join(sorted(catalog.types))})")


def check_event(catalog: Catalog, event: Mapping[str, Any]) -> list[str]:
    """Why the router would refuse this event, as lines; empty when it would route it. Checked: the envelope,
    the type is in the catalog, the payload has the type's required fields, the recipient has an address on one
    of the type's channels."""
    try:
        parsed = CloudEvent.model_validate(event)
    except ValidationError as exc:
        return [_first_problem(exc)]
    entry = catalog.get(parsed.type)
    if entry is None:
        return [unknown_type(catalog, parsed.type)]
    problems = []
    if missing := [f for f in entry.required if f not in parsed.data.payload]:
        problems.append(f"payload lacks {', '.join(missing)} (required by {parsed.type}: "
                        f"{', '.join(entry.required)})")
    channels = [c.value for c in entry.channels if not parsed.channels or c.value in parsed.channels]
    if entry.channels and not any(parsed.data.to.address_for(c) for c in channels):
        problems.append(f"the recipient has no address on any channel {parsed.type} uses ({', '.join(channels)})")
    return problems
