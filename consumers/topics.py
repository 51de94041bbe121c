"""Every topic Herald uses, declared once, and created up front with explicit partitions; and how a tool reads one
to its end without joining a group (`reading_consumer`, `records_to_end`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from schemas.catalog import Catalog, Channel, Priority
from schemas.settings import Settings

log = logging.getLogger(__name__)

LANES = ("", ".critical")
STATE_TOPICS = ("state.contacts", "state.dedupe", "state.caps", "state.schedules", "state.sends",
                "state.documents", "state.webhooks", "state.consent", "state.api_requests",
                "state.status_webhooks", "state.status_outbox", "state.digests", "state.conversions")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    short: str
    compacted: bool = False
    timeline_window: bool = False  # records expire with HERALD_TIMELINE_RETENTION (personal data kept no longer)

    def configs(self, settings: Settings) -> dict[str, str]:
        """The topic's configuration at creation."""
        if self.timeline_window:
            # Compacted as well where a later record of a key replaces what it said (`herald forget`).
            return {"cleanup.policy": "compact,delete" if self.compacted else "delete",
                    "retention.ms": str(int(settings.timeline_retention.total_seconds() * 1000))}
        if self.compacted:
            return {"cleanup.policy": "compact"}
        return {}


def topic_specs() -> list[TopicSpec]:
    """Short names of every topic (prefix added by `Settings.topic`)."""
    specs = [TopicSpec("events"), TopicSpec("events.critical"), TopicSpec("status"), TopicSpec("replies"),
             TopicSpec("preferences", compacted=True), TopicSpec("deadletter"),
             # Receipts heard on any worker, keyed by message id, for the worker that owns the message's partition.
             TopicSpec("receipts"),
             # What sent messages said, for the console, where the type and HERALD_CONSOLE_PERSONAL_DATA allow it.
             TopicSpec("content", compacted=True, timeline_window=True),
             # Statuses a tenant's registered endpoint did not take (consumers/pipeline/status_outbox.py).
             TopicSpec("webhooks.deadletter")]
    # Herald's own durable state (consumers/state/kvstore.py): compacted; partitioned or replicated by store.
    specs += [TopicSpec(name, compacted=True) for name in STATE_TOPICS]
    specs += [TopicSpec(f"dispatch.{channel.value}{lane}") for channel in Channel for lane in LANES]
    return specs


def dispatch_topic(channel: str, critical: bool = False) -> str:
    """Short name of the dispatch topic of a channel and lane."""
    return f"dispatch.{channel}{'.critical' if critical else ''}"


def event_lane(catalog: Catalog | None, event_type: str) -> str:
    """Short name of the topic an event of this type is published to: the critical lane for the catalog's critical
    types (codes, password resets), so they never wait behind a backlog; `events` for every other (or unknown) one."""
    entry = catalog.get(event_type) if catalog else None
    return "events.critical" if entry is not None and entry.priority is Priority.CRITICAL else "events"


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection arguments shared by every aiokafka client Herald opens (and, through `faust_config`, Faust).

    With SSL or SASL_SSL the TLS context verifies the brokers against `HERALD_KAFKA_SSL_CAFILE` (else the system's
    CAs) and presents `HERALD_KAFKA_SSL_CERTFILE`/`KEYFILE` for mutual TLS. Raises `ValueError`, naming the
    setting, when those files do not load.
    """
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap,
                              "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                      sasl_plain_username=settings.kafka_sasl_username,
                      sasl_plain_password=(settings.kafka_sasl_password.get_secret_value()
                                           if settings.kafka_sasl_password else None))
    if settings.kafka_security_protocol.endswith("SSL"):
        import ssl

        from aiokafka.helpers import create_ssl_context

        cafile, certfile, keyfile = settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile
        try:
            context = create_ssl_context(cafile=cafile)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            where = f"HERALD_KAFKA_SSL_CAFILE={cafile}" if cafile else "the system's CA store"
            raise ValueError(f"{where} holds no usable CA certificate: {getattr(exc, 'reason', None) or exc}") from exc
        if certfile is not None:
            key_password = settings.kafka_ssl_key_password

            def password() -> str:
                # Without a callable OpenSSL would prompt on the terminal for an encrypted key's password.
                if key_password is None:
                    raise ValueError("the private key is encrypted; set HERALD_KAFKA_SSL_KEY_PASSWORD")
                return key_password.get_secret_value()

            try:
                context.load_cert_chain(certfile, keyfile, password)
            except (OSError, ValueError) as exc:
                detail = str(exc)
                if isinstance(exc, ssl.SSLError):
                    # OpenSSL says only "PEM lib" for a file that is not PEM and for a wrong key password.
                    detail = exc.reason if exc.reason not in (None, "PEM_LIB") else (
                        "not a PEM certificate and key"
                        + (", or HERALD_KAFKA_SSL_KEY_PASSWORD is wrong" if key_password is not None else ""))
                raise ValueError(f"HERALD_KAFKA_SSL_CERTFILE={certfile}"
                                 + (f", HERALD_KAFKA_SSL_KEYFILE={keyfile}" if keyfile else "")
                                 + f": the client certificate and key do not load: {detail}") from exc
        kwargs["ssl_context"] = context
    return kwargs


async def ensure_topics(settings: Settings, *, attempts: int = 30) -> list[str]:
    """Create every missing topic with `settings.partitions` partitions; returns the ones created."""
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    for attempt in range(attempts):
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(settings.topic(spec.short), num_partitions=settings.partitions,
                     replication_factor=settings.replication_factor,
                     topic_configs=spec.configs(settings))
            for spec in topic_specs() if settings.topic(spec.short) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another worker created them at the same time
            except KafkaError as exc:
                log.warning("topic creation reported %s", type(exc).__name__)
        return [t.name for t in wanted]
    finally:
        await admin.close()


QUIET_MS = 200  # an empty poll this long, past the end offsets, ends a reading


def reading_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A consumer for reading topics from their start without a group (assign, seek, `records_to_end`). A short
    fetch wait: a reading ends on an empty poll, which should not cost the broker's default wait."""
    return AIOKafkaConsumer(**kafka_client_kwargs(settings), enable_auto_commit=False, auto_offset_reset="earliest",
                            fetch_max_wait_ms=100)


async def records_to_end(consumer: AIOKafkaConsumer, parts: Sequence[TopicPartition],
                         end: Mapping[TopicPartition, int], idle_timeout: float) -> AsyncIterator[ConsumerRecord]:
    """Every record from the consumer's positions on: at least to the end offsets, then until a poll comes back
    empty. The end offsets alone are not enough: the embedded broker (Tansu) answers ListOffsets "latest" with
    fewer than it holds (1 for a partition of 3 records written in one batch)."""
    while True:
        behind = any([await consumer.position(tp) < end[tp] for tp in parts])
        batch = await consumer.getmany(*parts, timeout_ms=int(idle_timeout * 1000) if behind else QUIET_MS)
        records = [record for part in batch.values() for record in part]
        for record in records:
            yield record
        if not records and not behind:
            return
