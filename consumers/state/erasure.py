"""`herald forget RECIPIENT`: erase what Herald's own state holds about one person (GDPR article 17).

Herald's state lives in compacted topics (`consumers/state/kvstore.py`); erasing is writing tombstones, which every
running worker applies to its replica at once and compaction then removes from the log. What is erased:

- the preference document (`herald.preferences`), frequency-cap counters (`herald.state.caps`), messages that may
  still convert (`herald.state.conversions`);
- messages waiting to be sent (`herald.state.schedules`: each gets a `cancelled` status with detail `erased`),
  send-ledger records (`herald.state.sends`) and document-link records (`herald.state.documents`), which hold
  the person's addresses and the message's payload; open digests (`herald.state.digests`), whose events are then
  never sent;
- open questions and address-to-person links (`herald.state.contacts`) for every address found in those
  records or given on the command line.

What is not (see SECURITY.md): append-only topics (`herald.events`, `herald.replies`, `herald.deadletter`) keep
what was written until their retention deletes it; `herald.status` holds no clear personal data (recipients are
keyed hashes); dedupe keys are hashes of event keys, not of people; address-level opt-outs are kept, because
honouring a STOP is the reason to hold them, but the person's id is taken out of them (`herald.state.consent`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError

from consumers.state.conversations import Conversations
from consumers.state.digests import DigestStore
from consumers.state.kvstore import KeyValueStore
from consumers.state.preferences import PROMOTIONAL_PREFIX, AddressConsent
from consumers.state.topic_choices import split_key
from schemas.dispatch import Dispatch

log = logging.getLogger(__name__)

ADDRESS_CHANNELS = ("email", "sms", "whatsapp", "voice", "push")


@dataclass
class Erasure:
    """What `forget` deleted, per store, and the addresses whose contact state it looked for."""

    deleted: dict[str, int] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)  # message ids of scheduled messages
    addresses: int = 0

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def _dispatch_of(raw: bytes | None) -> Dispatch | None:
    """The dispatch inside a stored value: a dispatch itself (documents) or a record that has one (schedule
    entries, send records)."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
        if isinstance(value, dict) and isinstance(value.get("dispatch"), dict):
            value = value["dispatch"]
        return Dispatch.model_validate(value)
    except (orjson.JSONDecodeError, ValidationError, TypeError):
        return None


def _addresses(d: Dispatch) -> set[tuple[str, str]]:
    return {(channel, address) for channel in ADDRESS_CHANNELS if (address := d.to.address_for(channel))}


async def _delete(store: KeyValueStore, keys: Iterable[str]) -> int:
    count = 0
    for key in keys:
        await store.delete(key)
        count += 1
    return count


async def _scrub_consent(store: KeyValueStore, recipient_id: str) -> int:
    """Address opt-outs stay (they are why Herald may not write to the address); the person's id leaves them: the
    list of recipients a STOP opted out, and their promotional opt-in times. Returns how many records changed."""
    changed = 0
    if store.get(PROMOTIONAL_PREFIX + recipient_id) is not None:
        await store.delete(PROMOTIONAL_PREFIX + recipient_id)
        changed += 1
    for key in store.list_keys():
        if key.startswith(PROMOTIONAL_PREFIX) or (raw := store.get(key)) is None:
            continue
        try:
            record = AddressConsent.model_validate_json(raw)
        except ValidationError:
            continue
        if not any(recipient_id in stop.recipients for stop in record.stopped.values()):
            continue
        stopped = {channel: stop.model_copy(update={"recipients": [r for r in stop.recipients if r != recipient_id]})
                   for channel, stop in record.stopped.items()}
        await store.put(key, record.model_copy(update={"stopped": stopped}).model_dump_json().encode(), durable=True)
        changed += 1
    return changed


Cancelled = Callable[[Dispatch], Awaitable[object]]


async def _untold(d: Dispatch) -> None:
    return None


async def forget(stores: Mapping[str, KeyValueStore], recipient_id: str, *, secret: bytes,
                 addresses: Sequence[tuple[str, str]] = (), cancelled: Cancelled = _untold) -> Erasure:
    """Erase `recipient_id` from `stores` (names as in `consumers.state.stores.State`: preferences, caps, schedules,
    sends, documents, contacts, and `consent` when given). `addresses` are (channel, address) pairs to clear
    besides those found; `cancelled(dispatch)` is told of each scheduled message erased (its `cancelled` status)."""
    result = Erasure()
    found: set[tuple[str, str]] = set(addresses)

    preferences = stores["preferences"]  # the person's own document and every tenant's (`@<tenant>/<id>`)
    result.deleted["preferences"] = await _delete(preferences, [k for k in preferences.list_keys()
                                                                if split_key(k)[1] == recipient_id])
    caps = stores["caps"]
    result.deleted["caps"] = await _delete(caps, [k for k in caps.list_keys() if k.startswith(f"{recipient_id}|")])
    if (goals := stores.get("conversions")) is not None:  # keyed `<recipient id>|…` too
        result.deleted["conversions"] = await _delete(goals, [k for k in goals.list_keys()
                                                              if k.startswith(f"{recipient_id}|")])

    for name in ("schedules", "sends", "documents"):
        store, doomed = stores[name], []
        for key in store.list_keys():
            d = _dispatch_of(store.get(key))
            if d is None or d.to.id != recipient_id:
                continue
            found |= _addresses(d)
            doomed.append(key)
            if name == "schedules" and d.message_id not in result.cancelled:
                result.cancelled.append(d.message_id)
                await cancelled(d)
        result.deleted[name] = await _delete(store, doomed)
    if (digests := stores.get("digests")) is not None:  # open digests: their events would still be sent
        result.deleted["digests"] = await DigestStore(digests).erase(recipient_id)

    contacts = stores["contacts"]
    conversations = Conversations(contacts, secret)
    doomed_contacts = {conversations.key(channel, address) for channel, address in found}
    for key in contacts.list_keys():  # questions asked at an address nothing above names any more
        raw = contacts.get(key)
        try:
            if raw is not None and orjson.loads(raw).get("recipient_id") == recipient_id:
                doomed_contacts.add(key)
        except (orjson.JSONDecodeError, AttributeError):
            continue
    result.deleted["contacts"] = await _delete(contacts, [k for k in doomed_contacts if contacts.get(k)])
    if (consent := stores.get("consent")) is not None:
        result.deleted["consent"] = await _scrub_consent(consent, recipient_id)
    result.addresses = len(found)
    log.info("recipient erased", extra={"stores": ",".join(f"{k}={v}" for k, v in result.deleted.items())})
    return result
