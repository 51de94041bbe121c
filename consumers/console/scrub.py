"""A dead letter's payload with nothing personal left: its JSON structure, every value replaced by its type and
length, except the ids, the event type, the tenant and the timestamps, which support needs to find the message
(and which are not personal, unless an id is itself an address, a number or a link: then it goes too).

`scrubbed(value)` gives the lines of an indented, JSON-like text; a scrubbed value reads
`\u2039string, 15 chars\u203a` (single angle quotes: no JSON string looks like it).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

INDENT = "  "
L, R = "\u2039", "\u203a"  # single angle quotes around what stands for a value
MAX_ID = 120  # characters: a longer "id" is not an id one types
# Keys whose values are kept (when they pass `shareable`): ids, the event type, the tenant, timestamps. Case
# matters: `paid` or `format` are not an id or a time.
ID_KEY = re.compile(r"(^|_)(id|ID)$|[a-z]Id$|^subject$")
TYPE_KEYS = frozenset({"event_type", "eventType"})  # and `type` at the top level (the CloudEvent's)
TENANT_KEYS = frozenset({"tenant"})
TIME_KEY = re.compile(r"^(time|sendat|at|timestamp)$|_at$|[a-z]At$")
# What a kept value must not be: an address, a phone number (7 or more digits and nothing but phone signs), a link.
_PHONE = re.compile(r"\+?[\d\s().-]+")
_LINK = re.compile(r"://|^www\.|^(mailto|tel|sms|whatsapp):", re.IGNORECASE)


def shareable(value: str) -> bool:
    """Whether a text may be shown as an id: short, and not an address, a phone number or a link."""
    phone = _PHONE.fullmatch(value) is not None and sum(c.isdigit() for c in value) >= 7
    return len(value) <= MAX_ID and "@" not in value and not phone and not _LINK.search(value)


def _is_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def kept(key: str, value: Any, *, top: bool = False) -> bool:
    """Whether a value under `key` is shown as it is (`top`: a member of the document's top-level object)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return False
    if isinstance(value, int | float):
        return bool(ID_KEY.search(key) or TIME_KEY.search(key))  # a numeric id, or an epoch time
    if ID_KEY.search(key) or key in TENANT_KEYS or key in TYPE_KEYS or (top and key == "type"):
        return shareable(value)
    if TIME_KEY.search(key):
        return _is_time(value)
    return False


def describe(value: Any) -> str:
    """A value's type and size, never the value."""
    if value is None:
        return f"{L}null{R}"
    if isinstance(value, bool):
        return f"{L}boolean{R}"
    if isinstance(value, int):
        return f"{L}integer{R}"
    if isinstance(value, float):
        return f"{L}number{R}"
    if isinstance(value, str):
        return f"{L}string, {len(value)} char{'s' if len(value) != 1 else ''}{R}"
    return f"{L}{type(value).__name__}{R}"


def _key(key: str) -> str:
    """A key as shown: keys are structure, but one that is itself an address or a number is not shown."""
    return orjson.dumps(key).decode() if shareable(key) else f"{L}key, {len(key)} chars{R}"


def _lines(value: Any, depth: int, *, key: str = "", top: bool = False, root: bool = False) -> list[str]:
    """`value` (under `key`) as indented lines; `root`: the document itself, whose members are `top`."""
    pad = INDENT * depth
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        inner: list[str] = []
        for i, (k, v) in enumerate(value.items()):
            shown = _lines(v, depth + 1, key=str(k), top=root)
            inner += [f"{INDENT * (depth + 1)}{_key(str(k))}: {shown[0].lstrip()}", *shown[1:]]
            inner[-1] += "," if i < len(value) - 1 else ""
        return [pad + "{", *inner, pad + "}"]
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        items: list[str] = [pad + f"[  // {len(value)} item{'s' if len(value) != 1 else ''}"]
        for i, v in enumerate(value):
            shown = _lines(v, depth + 1, key=key)  # a list of ids is a list of ids
            shown[-1] += "," if i < len(value) - 1 else ""
            items += shown
        return [*items, pad + "]"]
    if kept(key, value, top=top):
        return [pad + orjson.dumps(value).decode()]
    return [pad + describe(value)]


def scrubbed(value: bytes) -> list[str]:
    """The lines of `value` with nothing personal: a JSON document's structure, or what the bytes are."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [f"{L}not JSON, {len(value):,} byte{'s' if len(value) != 1 else ''}{R}"]
    return _lines(doc, 0, root=True)


def clear(value: bytes) -> str:
    """The payload as it is (only where HERALD_CONSOLE_PERSONAL_DATA allows): indented when it is JSON."""
    try:
        return orjson.dumps(orjson.loads(value), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return value.decode(errors="replace")
