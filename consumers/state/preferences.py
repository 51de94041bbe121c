"""The consent and preference ledger: one `Preferences` document per recipient id in a `KeyValueStore`.

In workers the store is a `TopicStore(settings, "preferences")` over the compacted `herald.preferences` topic, so
every worker holds every document in memory and a change made by one (a STOP, an unsubscribe) reaches the others
through the topic. `consent` is the pure decision the router applies before it dispatches anything.

Carriers and the TCPA/CTIA rules treat a STOP per phone number, and a mailbox's unsubscribe per mailbox, whoever
Herald thinks the number or mailbox belongs to. So what an address itself says (STOP/START from a number,
one-click or provider unsubscribe of a mailbox) is also kept per address, in `AddressConsents` over the compacted
`herald.state.consent` topic, keyed by the HMAC of the normalised address: it holds before Herald ever sent to
the address, and for every recipient id that has it. `PreferenceLedger.refusal` checks both before every send.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from channels.errors import InvalidRecipient
from channels.phone import to_e164
from consumers.clock import utcnow
from consumers.identity import KeyRing, recipient_hash
from consumers.state.kvstore import KeyValueStore
from consumers.state.topic_choices import ledger_key, topic_refusal
from schemas.catalog import Channel
from schemas.preferences import Preferences

log = logging.getLogger(__name__)

# WhatsApp's customer service window: free-form messages only within 24 h of the person's last message.
WHATSAPP_WINDOW = timedelta(hours=24)

Change = Callable[[Preferences], Preferences]

# Refusal reasons, strongest first, when the recipient's preferences and the address's record both refuse.
REFUSALS = ("suppressed_address", "opted_out", "consent")
PHONE_CHANNELS = frozenset({"sms", "voice", "whatsapp"})
# Keys of `AddressConsents`: `sha256:…` for an address, this prefix + recipient id for promotional opt-in times.
PROMOTIONAL_PREFIX = "optin|"


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


@functools.lru_cache(maxsize=16384)  # the router asks for every candidate channel of every event
def normalise_address(channel: str, address: str) -> str:
    """The form an address is keyed by: E.164 for a phone number (SMS, voice, WhatsApp; `whatsapp:` and a missing
    `+` tolerated, as vendors write them), lower case for anything else (email)."""
    text = address.strip()
    if channel not in PHONE_CHANNELS:
        return text.lower()
    if text[:9].lower() == "whatsapp:":
        text = text[9:].strip()
    try:
        return to_e164(text if text.startswith("+") else "+" + text)[0]
    except InvalidRecipient:  # not a valid number: the same digits must still give the same key
        digits = "".join(c for c in text if c.isdigit())
        return "+" + digits if digits else text.lower()


def address_key(secret: bytes, channel: str, address: str) -> str:
    """The key of an address's consent record: HMAC-SHA256 (HERALD_SECRET) of the normalised address."""
    return recipient_hash(secret, normalise_address(channel, address))


class AddressStop(BaseModel):
    """A STOP from one address on one channel."""

    model_config = ConfigDict(extra="ignore")

    at: datetime
    # Recipient ids this STOP opted out in their own preferences (it did not find them opted out already): the
    # address's START opts those back in, and nobody else (an opt-out made through `herald prefs` stays).
    recipients: list[str] = Field(default_factory=list)


class AddressConsent(BaseModel):
    """What one address said about itself, whoever it belongs to. Never swept (like preferences)."""

    model_config = ConfigDict(extra="ignore")

    stopped: dict[Channel, AddressStop] = Field(default_factory=dict)
    # Promotional consent withdrawn by the mailbox (one-click unsubscribe, the provider's unsubscribe event), and
    # when: a recipient's promotional opt-in given through the ledger after that time lifts it for that recipient.
    unsubscribed: dict[Channel, datetime] = Field(default_factory=dict)
    updated_at: datetime
    source: str = ""


_PROMOTIONAL_TIMES = TypeAdapter(dict[Channel, datetime])


def address_consent(record: AddressConsent | None, *, category: str, channel: str,
                    promotional_since: datetime | None = None) -> str | None:
    """Why the address's own record refuses a message, or None: `opted_out` (the address sent STOP on this
    channel), `consent` (promotional to an address that unsubscribed, unless the recipient's promotional opt-in is
    newer)."""
    if record is None:
        return None
    if channel in record.stopped:
        return "opted_out"
    unsubscribed = record.unsubscribed.get(Channel(channel))
    if category == "promotional" and unsubscribed is not None and (
            promotional_since is None or promotional_since <= unsubscribed):
        return "consent"
    return None


class AddressConsents:
    """Address-level consent records in a `KeyValueStore` (`herald.state.consent` in workers).

    Writes wait for the broker's acknowledgement: an inbound STOP is answered 200 only once it is durable, so a
    provider retries one Herald could not record.

    Records are keyed with `HERALD_SECRET`; after a rotation, those keyed with a secret still in
    `HERALD_SECRET_PREVIOUS` are found too (`keys`), so an address's STOP or unsubscribe outlives the rotation."""

    def __init__(self, store: KeyValueStore, secret: bytes | KeyRing, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.ring = KeyRing.of(secret)
        self.secret = self.ring.current
        self.clock = clock

    def key(self, channel: str, address: str) -> str:
        """The key new records of the address are written under (the current secret)."""
        return address_key(self.secret, channel, address)

    def keys(self, channel: str, address: str) -> list[str]:
        """Every key the address's records may be under: the current secret's first, then the older ones'."""
        return list(dict.fromkeys(address_key(secret, channel, address) for secret in self.ring.all))

    def record(self, key: str) -> AddressConsent | None:
        """The address's record; one that does not validate raises `ValueError` (consent fails closed)."""
        raw = self.store.get(key)
        return None if raw is None else AddressConsent.model_validate_json(raw)

    def promotional_since(self, recipient_id: str, channel: str) -> datetime | None:
        """When the recipient last gained promotional consent on `channel` through the ledger, if known."""
        raw = self.store.get(PROMOTIONAL_PREFIX + recipient_id)
        return None if raw is None else _PROMOTIONAL_TIMES.validate_json(raw).get(Channel(channel))

    async def update(self, key: str, change: Callable[[AddressConsent], AddressConsent], *,
                     source: str) -> AddressConsent:
        await self.store.ready()
        now = self.clock()
        current = self.record(key)
        changed = change((current or AddressConsent(updated_at=now, source=source)).model_copy(deep=True))
        if current is not None and changed.model_dump(exclude={"updated_at", "source"}) == current.model_dump(
                exclude={"updated_at", "source"}):
            return current
        document = changed.model_copy(update={"updated_at": now, "source": source})
        await self.store.put(key, document.model_dump_json().encode(), durable=True)
        log.info("address consent updated", extra={"source": source})  # never the address, not even its hash
        return document

    async def stop(self, key: str, channel: str, recipient_id: str | None, *, source: str = "reply") -> None:
        """The address stopped `channel`; `recipient_id` is one whose own opt-out this STOP makes."""
        now = self.clock()

        def change(record: AddressConsent) -> AddressConsent:
            stop = record.stopped.get(Channel(channel)) or AddressStop(at=now)
            if recipient_id and recipient_id not in stop.recipients:
                stop = stop.model_copy(update={"recipients": [*stop.recipients, recipient_id]})
            return record.model_copy(update={"stopped": {**record.stopped, Channel(channel): stop}})
        await self.update(key, change, source=source)

    async def start(self, key: str, channel: str, *, source: str = "reply") -> None:
        """The address's START: its own STOP of `channel` is gone."""
        def change(record: AddressConsent) -> AddressConsent:
            return record.model_copy(update={"stopped": {c: s for c, s in record.stopped.items() if c != channel}})
        await self.update(key, change, source=source)

    async def unsubscribe(self, key: str, channel: str, *, source: str = "unsubscribe") -> None:
        """The mailbox withdrew promotional consent on `channel` (the latest time is kept)."""
        now = self.clock()

        def change(record: AddressConsent) -> AddressConsent:
            return record.model_copy(update={"unsubscribed": {**record.unsubscribed, Channel(channel): now}})
        await self.update(key, change, source=source)

    async def promotional_given(self, recipient_id: str, channels: Iterable[Channel], at: datetime) -> None:
        """The recipient gained promotional consent on `channels` at `at` (it outranks older unsubscribes)."""
        await self.store.ready()
        key = PROMOTIONAL_PREFIX + recipient_id
        raw = self.store.get(key)
        times = {} if raw is None else _PROMOTIONAL_TIMES.validate_json(raw)
        times.update({Channel(c): at for c in channels})
        await self.store.put(key, _PROMOTIONAL_TIMES.dump_json(times), durable=True)


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

    def __init__(self, store: KeyValueStore, *, clock: Callable[[], datetime] = utcnow,
                 addresses: AddressConsents | None = None) -> None:
        self.store = store
        self.clock = clock
        # Without it (the CLI, older tests) inbound keywords apply to the recipient id only, as before.
        self.addresses = addresses

    async def ready(self) -> None:
        """Returns once the store holds every document written before (call before the first `get`)."""
        await self.store.ready()
        if self.addresses is not None:
            await self.addresses.store.ready()

    def refusal(self, recipient_id: str, *, category: str, channel: str, address: str,
                address_hash: str | None, previous_hashes: Iterable[str] = (), topic: str | None = None,
                tenant: str | None = None) -> str | None:
        """Why a message may NOT go to `address` on `channel`: the recipient's preferences (`consent`) and what
        the address itself said (`address_consent`), the strongest reason first, then the person's choice for
        `topic` (`preference:<topic>/<channel>`, from `tenant`'s document); None when it may go.
        `previous_hashes` are the address's hashes under older secrets (a suppression recorded before a rotation),
        and the address's records under every secret of the ring count."""
        prefs = self.get(recipient_id)
        reasons = {consent(prefs, category=category, channel=channel, address_hash=h)
                   for h in (address_hash, *previous_hashes)}
        if self.addresses is not None:
            since = (self.addresses.promotional_since(recipient_id, channel)
                     if category == "promotional" else None)
            reasons |= {address_consent(self.addresses.record(key), category=category, channel=channel,
                                        promotional_since=since) for key in self.addresses.keys(channel, address)}
        found = next((reason for reason in REFUSALS if reason in reasons), None)
        if found is not None or topic is None:
            return found
        return topic_refusal(self.get(recipient_id, tenant=tenant) if tenant else prefs, topic=topic, channel=channel)

    def get(self, recipient_id: str, *, tenant: str | None = None) -> Preferences | None:
        """The recipient's document (`tenant`'s own with a tenant: consumers/state/topic_choices.py), or None. A
        stored document that does not validate raises `ValueError`: consent fails closed rather than forgetting
        an opt-out."""
        raw = self.store.get(ledger_key(tenant, recipient_id))
        return None if raw is None else Preferences.model_validate_json(raw)

    async def update(self, recipient_id: str, change: Change, *, source: str, tenant: str | None = None,
                     durable: bool = False) -> Preferences:
        """Applies `change` to the current document (an empty one when there is none; `tenant`'s own with a tenant)
        and stores the result with `updated_at` and `source` set, awaiting the broker when `durable`. A change that
        changes nothing writes nothing."""
        await self.store.ready()
        now = self.clock()
        current = self.get(recipient_id, tenant=tenant)
        base = current or Preferences(recipient_id=recipient_id, updated_at=now, source=source)
        changed = change(base.model_copy(deep=True))
        # Re-validate: `model_copy(update=…)` in a change does not, and a bad channel must not reach the topic.
        document = Preferences.model_validate(
            {**changed.model_dump(warnings=False), "recipient_id": recipient_id, "updated_at": now, "source": source,
             "tenant": tenant})
        if current is not None and _same(current, document):
            return current
        stored = (ledger_key(tenant, recipient_id), document.model_dump_json().encode())
        await (self.store.put(*stored, durable=True) if durable else self.store.put(*stored))
        # No recipient id in the log: ids may be phone numbers or emails (`herald publish --to`).
        log.info("preferences updated", extra={"source": source})
        gained = set(document.promotional_opt_in) - set(current.promotional_opt_in if current else ())
        if gained and self.addresses is not None and not tenant:  # after the document: a failure fails safe
            await self.addresses.promotional_given(recipient_id, gained, now)
        return document

    async def opt_out(self, recipient_id: str, channel: str, *, source: str = "reply") -> Preferences:
        """STOP: nothing more on this channel, transactional included, until START."""
        return await self.update(recipient_id, lambda p: edit(p, opt_out=[channel]), source=source)

    async def opt_in(self, recipient_id: str, channel: str, *, source: str = "reply") -> Preferences:
        """START: the channel is no longer opted out (promotional consent is not given back)."""
        return await self.update(recipient_id, lambda p: edit(p, opt_in=[channel]), source=source)

    async def stop_address(self, channel: str, address: str, recipient_id: str | None, *,
                           source: str = "reply") -> None:
        """STOP from `address`: `channel` is stopped for that address whoever it belongs to, before Herald ever
        sent to it too. The recipient it is known to belong to is opted out in their preferences as well (what
        `herald prefs get` and readers of `herald.preferences` see), and the address remembers doing it."""
        if self.addresses is None or not address:
            if recipient_id:
                await self.opt_out(recipient_id, channel, source=source)
            return
        key = self.addresses.key(channel, address)
        made = None
        if recipient_id:
            prefs = self.get(recipient_id)
            records = [r for k in self.addresses.keys(channel, address) if (r := self.addresses.record(k))]
            stops = [stop for r in records if (stop := r.stopped.get(Channel(channel)))]
            ours = any(recipient_id in stop.recipients for stop in stops)
            if ours or prefs is None or Channel(channel) not in prefs.opted_out:
                made = recipient_id
        await self.addresses.stop(key, channel, made, source=source)  # first: the address holds whatever follows
        if made:
            await self.opt_out(made, channel, source=source)

    async def start_address(self, channel: str, address: str, recipient_id: str | None, *,
                            source: str = "reply") -> None:
        """START from `address`: undoes that address's own STOP of `channel` and the recipients' opt-outs that
        STOP made, nothing else (an opt-out set with `herald prefs`, or another number's STOP, stays)."""
        if self.addresses is None or not address:
            if recipient_id:
                await self.opt_in(recipient_id, channel, source=source)
            return
        for key in self.addresses.keys(channel, address):  # a STOP keyed before a rotation is undone too
            record = self.addresses.record(key)
            stop = record.stopped.get(Channel(channel)) if record else None
            if stop is None:
                continue
            for made in stop.recipients:  # before the address's record: a retried START still finds them
                await self.opt_in(made, channel, source=source)
            await self.addresses.start(key, channel, source=source)

    async def unsubscribe_address(self, channel: str, *, address: str | None = None, key: str | None = None,
                                  source: str = "unsubscribe") -> None:
        """The mailbox (`address`, or its `key` from a signed link) withdrew promotional consent on `channel`,
        for every recipient id that has it."""
        if self.addresses is None:
            return
        key = key or (self.addresses.key(channel, address) if address else None)
        if key:
            await self.addresses.unsubscribe(key, channel, source=source)

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
