"""The consent and preference ledger: one `Preferences` document per recipient id in a `KeyValueStore`.

In workers the store is a `TopicStore(settings, "preferences")` over the compacted `herald.preferences` topic, so
every worker holds every document in memory and a change made by one (a STOP, an unsubscribe) reaches the others
through the topic. `consent` is the pure decision the router applies before it dispatches anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from consumers.kvstore import KeyValueStore
from schemas.catalog import Channel
from schemas.preferences import Preferences

log = logging.getLogger(__name__)

# WhatsApp's customer service window: free-form messages only within 24 h of the person's last message.
WHATSAPP_WINDOW = timedelta(hours=24)

Change = Callable[[Preferences], Preferences]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def consent(prefs: Preferences | None, *, category: str, channel: str, address_hash: str | None) -> str | None:
    """Why a message may NOT be sent to this recipient on this channel, or None when it may.

    In order: `suppressed_address` (the address bounced or complained), `opted_out` (a STOP stops everything on
    the channel, transactional included), `consent` (promotional without explicit opt-in on the channel; no
    document means no consent).
    """
    if prefs is not None and address_hash is not None and address_hash in prefs.suppressed:
        return "suppressed_address"
    if prefs is not None and channel in prefs.opted_out:
        return "opted_out"
    if category == "promotional" and (prefs is None or channel not in prefs.promotional_opt_in):
        return "consent"
    return None


def whatsapp_session_open(prefs: Preferences | None, now: datetime) -> bool:
    """True when the person wrote on WhatsApp within the last 24 h, so free-form text may be sent."""
    last = prefs.last_inbound.get(Channel.WHATSAPP) if prefs is not None else None
    return last is not None and now - last < WHATSAPP_WINDOW


def edit(prefs: Preferences, *, opt_out: Iterable[str] = (), opt_in: Iterable[str] = (),
         promotional: Mapping[str, bool] | None = None, preferred_channel: str | None = None,
         locale: str | None = None, timezone: str | None = None) -> Preferences:
    """A copy of `prefs` with the given changes (what `herald prefs set` and the helpers below apply)."""
    opted_out, promo = set(prefs.opted_out), set(prefs.promotional_opt_in)
    for channel in opt_out:
        opted_out.add(Channel(channel))
        # A STOP revokes consent: after a later START, promotions need a fresh opt-in.
        promo.discard(Channel(channel))
    for channel in opt_in:
        opted_out.discard(Channel(channel))
    for channel, allowed in (promotional or {}).items():
        (promo.add if allowed else promo.discard)(Channel(channel))
    update: dict[str, object] = {"opted_out": sorted(opted_out), "promotional_opt_in": sorted(promo)}
    if preferred_channel is not None:
        update["preferred_channel"] = Channel(preferred_channel)
    if locale is not None:
        update["locale"] = locale
    if timezone is not None:
        update["timezone"] = timezone
    return prefs.model_copy(update=update)


class PreferenceLedger:
    """Reads and changes recipients' preferences. Each change is a read-modify-write of the whole document.

    Within a worker a change cannot interleave with another (no await between reading the document and storing
    it locally); across workers the latest write wins, which the compacted topic makes eventually consistent.
    """

    def __init__(self, store: KeyValueStore, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.store = store
        self.clock = clock

    async def ready(self) -> None:
        """Returns once the store holds every document written before (call before the first `get`)."""
        await self.store.ready()

    def get(self, recipient_id: str) -> Preferences | None:
        """The recipient's document, or None. A stored document that does not validate raises `ValueError`:
        consent fails closed rather than forgetting an opt-out."""
        raw = self.store.get(recipient_id)
        return None if raw is None else Preferences.model_validate_json(raw)

    async def update(self, recipient_id: str, change: Change, *, source: str) -> Preferences:
        """Applies `change` to the current document (an empty one when there is none) and stores the result with
        `updated_at` and `source` set. A change that changes nothing writes nothing."""
        await self.store.ready()
        now = self.clock()
        current = self.get(recipient_id)
        base = current or Preferences(recipient_id=recipient_id, updated_at=now, source=source)
        changed = change(base.model_copy(deep=True))
        # Re-validate: `model_copy(update=…)` in a change does not, and a bad channel must not reach the topic.
        document = Preferences.model_validate(
            {**changed.model_dump(warnings=False), "recipient_id": recipient_id, "updated_at": now, "source": source})
        if current is not None and _same(current, document):
            return current
        await self.store.put(recipient_id, document.model_dump_json().encode())
        # No recipient id in the log: ids may be phone numbers or emails (`herald publish --to`).
        log.info("preferences updated", extra={"source": source})
        return document

    async def opt_out(self, recipient_id: str, channel: str, *, source: str = "reply") -> Preferences:
        """STOP: nothing more on this channel, transactional included, until START."""
        return await self.update(recipient_id, lambda p: edit(p, opt_out=[channel]), source=source)

    async def opt_in(self, recipient_id: str, channel: str, *, source: str = "reply") -> Preferences:
        """START: the channel is no longer opted out (promotional consent is not given back)."""
        return await self.update(recipient_id, lambda p: edit(p, opt_in=[channel]), source=source)

    async def set_promotional(self, recipient_id: str, channel: str, allowed: bool, *,
                              source: str = "unsubscribe") -> Preferences:
        return await self.update(recipient_id, lambda p: edit(p, promotional={channel: allowed}), source=source)

    async def suppress(self, recipient_id: str, address_hash: str, reason: str, *,
                       source: str = "receipt") -> Preferences:
        """Never send to this address again (it bounced, complained or is unregistered)."""
        def change(p: Preferences) -> Preferences:
            return p.model_copy(update={"suppressed": {**p.suppressed, address_hash: reason}})
        return await self.update(recipient_id, change, source=source)

    async def record_inbound(self, recipient_id: str, channel: str, at: datetime, *,
                             source: str = "reply") -> Preferences:
        """The person wrote on `channel` at `at`; an older webhook arriving late never moves the time back."""
        when = at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # naive times are UTC by convention

        def change(p: Preferences) -> Preferences:
            key = Channel(channel)
            last = p.last_inbound.get(key)
            if last is not None and last >= when:
                return p
            return p.model_copy(update={"last_inbound": {**p.last_inbound, key: when}})
        return await self.update(recipient_id, change, source=source)


def _same(a: Preferences, b: Preferences) -> bool:
    fields = {"updated_at", "source"}
    return a.model_dump(exclude=fields) == b.model_dump(exclude=fields)
