"""The app factory: `create_app(settings)` builds a Faust app with Herald's agents, views and runtime.

No module-level app and no global settings: tests build as many apps as they like.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import faust
from faust.types import TP, TopicT

from channels.base import Sender
from channels.rendering.render import BUNDLED_TEMPLATES, Renderer
from consumers import hooks
from consumers.clock import utcnow
from consumers.console.app import add_console
from consumers.console.context import ConsoleContext
from consumers.console.ratings_query import rating_reader
from consumers.identity import KeyRing
from consumers.inbound.admin import serve_admin
from consumers.inbound.api import answers_expiry, register_api_view
from consumers.inbound.hearback import HearBack, HearBackHooks
from consumers.inbound.preference_page import preference_ledger
from consumers.inbound.tracking import Tracking, TrackingLinks
from consumers.inbound.web import (
    harden_public_server,
    register_document_view,
    register_tracking_views,
    register_views,
)
from consumers.inbound.webhooks_api import register_status_webhook_views
from consumers.observe.content_index import ContentIndex
from consumers.observe.lag import KafkaOffsets, LagMonitor, Lane
from consumers.observe.metrics import Metrics
from consumers.observe.timeline import StatusTimeline, TopicReader
from consumers.ownership import Ownership, follow_rebalances
from consumers.pipeline.agents import batched_agent, guarded_agent
from consumers.pipeline.conversions import Attribution
from consumers.pipeline.critical import CriticalLane, Route
from consumers.pipeline.delivery import Backoff, DeliveryHooks, DeliveryStage
from consumers.pipeline.digests import install_digests
from consumers.pipeline.ingest import IngestStage
from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import PENDING_ACKS, Publisher, Record
from consumers.pipeline.router import Router
from consumers.pipeline.scheduler import Scheduler
from consumers.pipeline.status_webhooks import StatusWebhooks
from consumers.senders import build_senders, webhook_receivers
from consumers.state.conversations import Conversations
from consumers.state.documents import Documents
from consumers.state.retention import (
    Janitor,
    Rule,
    caps_expiry,
    dedupe_expiry,
    documents_expiry,
    questions_expiry,
    sends_expiry,
)
from consumers.state.sends import SendLedger
from consumers.state.stores import State, worker_directory
from consumers.topics import kafka_client_kwargs, topic_specs
from schemas.catalog import Catalog
from schemas.settings import Settings

BUNDLED_CATALOG = BUNDLED_TEMPLATES / "catalog.yaml"


class FaustPublisher:
    """`Publisher` over the app's own producer, with raw bytes in and out."""

    def __init__(self, topics: Mapping[str, TopicT]) -> None:
        self.topics = topics

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Mapping[str, bytes] | None = None, *, durable: bool = False) -> None:
        sent = await self.topics[topic].send(key=key, value=value, headers=dict(headers) if headers else None)
        if durable:
            # Faust commits an offset without waiting for what its handler produced: a record that must not be
            # lost when the worker dies right after the commit is awaited until the broker has it — at the end
            # of the batch when an agent handles records in batches, else right here.
            batch = PENDING_ACKS.get()
            if batch is not None:
                batch.append(sent)
            else:
                await sent


def load_catalog(settings: Settings) -> Catalog:
    return Catalog.load(settings.catalog or BUNDLED_CATALOG)


def faust_config(settings: Settings) -> dict[str, Any]:
    """Settings -> Faust configuration, with the values measured to work on Tansu and Kafka."""
    conf: dict[str, Any] = dict(
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        store="memory://",
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        broker_commit_interval=0.5,
        producer_linger=0.005,
        producer_max_request_size=settings.max_record_bytes,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_port=settings.web_port,
        # Faust binds `web_bind` (default 0.0.0.0), not `web_host`; and its own pages stay off the public port.
        web_bind=settings.web_host,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        datadir=str(Path(settings.data_dir) / "faust" / settings.app_id),
        autodiscover=False,
        topic_allow_declare=True,
    )
    if settings.kafka_security_protocol != "PLAINTEXT":
        from consumers.topics import kafka_client_kwargs

        kw = kafka_client_kwargs(settings)
        if settings.kafka_security_protocol.startswith("SASL"):
            conf["broker_credentials"] = faust.SASLCredentials(
                username=kw["sasl_plain_username"], password=kw["sasl_plain_password"],
                mechanism=settings.kafka_sasl_mechanism, ssl_context=kw.get("ssl_context"))
        else:
            conf["broker_credentials"] = faust.SSLCredentials(kw["ssl_context"])
    return conf


def track_ownership(app: faust.App, settings: Settings) -> Ownership:
    """This worker's partitions (consumers/ownership.py), from the rebalances of the events topic."""
    return follow_rebalances(app, settings.partitions, settings.topic("events"))


def retention_rules(state: State, settings: Settings, catalog: Catalog, conversations: Conversations) -> list[Rule]:
    """What the janitor sweeps and when each entry expires (consumers/state/retention.py)."""
    return [Rule("state.dedupe", state.dedupe, dedupe_expiry(settings.dedupe_window), partitioned=True),
            Rule("state.caps", state.caps, caps_expiry(catalog), partitioned=True),
            Rule("state.sends", state.sends, sends_expiry(settings.receipt_grace), partitioned=True),
            Rule("state.contacts", state.contacts, questions_expiry(conversations.max_age)),
            Rule("state.documents", state.documents, documents_expiry),
            # Webhook delivery ids: first-seen times, remembered as long as idempotency keys are (HearBack's window).
            Rule("state.webhooks", state.webhooks, dedupe_expiry(settings.dedupe_window)),
            Rule("state.api_requests", state.api_requests, answers_expiry(settings.dedupe_window)),
            Rule("state.schedules", state.schedules, None, partitioned=True), Attribution.retention(state.conversions),
            Rule("preferences", state.preferences, None)]


def create_app(settings: Settings, *, senders: dict[str, Sender] | None = None,
               catalog: Catalog | None = None, publisher: Publisher | None = None,
               state: State | None = None, clock: Callable[[], datetime] = utcnow) -> faust.App:
    """Build Herald's Faust app. `senders`, `catalog`, `publisher`, `state` and the `clock` every time-based rule
    reads (quiet hours, expiry, schedules, leases) may be injected (tests)."""
    app = faust.App(settings.app_id, **faust_config(settings))
    catalog = catalog or load_catalog(settings)
    metrics = Metrics()
    ownership = track_ownership(app, settings)
    # Provider limits hold for the group: each worker sends at the share of the partitions it owns.
    senders = build_senders(settings, metrics, share=lambda: ownership.share) if senders is None else senders
    # What grows with traffic is partitioned like the events and dispatches: each worker holds what it owns.
    state = state or State.on_topics(settings, ownership=ownership, directory=worker_directory(settings))
    topics = {spec.short: app.topic(settings.topic(spec.short), key_serializer="raw", value_serializer="raw",
                                    partitions=settings.partitions)
              for spec in topic_specs()}
    publisher = publisher or FaustPublisher(topics)
    secret = settings.secret.get_secret_value().encode()
    # HERALD_SECRET and HERALD_SECRET_PREVIOUS: the current one signs and keys, all of them verify and find.
    keys = KeyRing.from_settings(settings)
    outlets = Outlets.build(publisher, metrics, secret, clock, max_record_bytes=settings.max_record_bytes)
    renderer = Renderer(settings.templates, default_locale=settings.default_locale)
    template_globals = {"brand": settings.brand_name, "document_url": None}
    documents = Documents(state.documents, renderer, keys, settings.public_url, template_globals=template_globals,
                          clock=clock, facturx_tenants=settings.facturx_tenants)
    sends = SendLedger(state.sends, clock, lease=timedelta(seconds=settings.send_lease))
    # The schedules store holds only this worker's partitions: every entry it lists is this worker's to release.
    scheduler = Scheduler(state.schedules, publisher, outlets.statuses, clock=clock,
                          on_receipt_check=hooks.receipt_check(sends, outlets))

    ledger = preference_ledger(app, settings, catalog, state, keys, metrics, template_globals, clock)  # + API, page
    conversations = Conversations(state.contacts, keys)
    consent = hooks.consent_check(ledger, keys, catalog)
    router = Router(catalog, senders.keys(), clock=clock, dedupe=state.dedupe, caps=state.caps, consent=consent,
                    dedupe_window=settings.dedupe_window, preferences=ledger.get,
                    max_ahead=settings.max_schedule_ahead)
    goals = Attribution(state.conversions, catalog, outlets.statuses, clock, partitions=settings.partitions)
    ingest = IngestStage(router, outlets, scheduler, max_event_bytes=settings.max_event_bytes,
                         max_record_bytes=settings.max_record_bytes, goals=goals)
    tracking_links = TrackingLinks(keys, settings.public_url, ttl=settings.tracking_ttl, clock=clock)
    # The console shows what messages said only where the operator allows personal data and it is signed in to.
    shows_content = settings.console_personal_data and settings.admin_token is not None
    delivery = DeliveryStage(
        renderer, senders, catalog, outlets, sends=sends, documents=documents, scheduler=scheduler, clock=clock,
        template_globals=template_globals, backoff=Backoff(max_attempts=settings.max_attempts),
        hooks=DeliveryHooks(
            consent=consent, session_open=hooks.session_open(ledger, clock),
            headers=hooks.unsubscribe_headers(secret, settings.public_url),
            track=hooks.track_email(tracking_links, catalog, enabled=settings.tracking),
            after_send=hooks.remember_after_send(state.contacts, conversations, catalog, secret, clock, goals),
            on_failure=hooks.suppress_dead_addresses(ledger, secret),
            keep_content=hooks.keep_content(publisher, catalog, clock, enabled=shows_content)))
    dead_letters = outlets.dead_letters

    async def ready_then(handler: Callable[[Record], Awaitable[None]], record: Record) -> None:
        await state.ready(record.partition)  # a partition just taken is handled once its state is read
        await handler(record)

    # The normal lane runs as Faust agents; the critical lane has a consumer of its own
    # (consumers/pipeline/critical.py), so a backlog of normal events never sits in front of a code or a password reset.
    app.agent(topics["events"], name="route_events")(
        batched_agent(partial(ready_then, ingest.handle), dead_letters, "route_events"))
    routes = {settings.topic("events.critical"): Route(ingest.handle, concurrently=False,
                                                       stage="route_critical_events")}
    for channel in senders:
        name = f"send_{channel}"
        concurrency = settings.email_concurrency if channel == "email" else settings.channel_concurrency
        app.agent(topics[f"dispatch.{channel}"], name=name, concurrency=concurrency,
                  )(guarded_agent(partial(ready_then, delivery.handle), dead_letters, name))
        routes[settings.topic(f"dispatch.{channel}.critical")] = Route(delivery.handle, concurrently=True,
                                                                       stage=f"{name}_critical")
    routes[settings.topic("receipts")] = Route(hooks.apply_receipts(sends, outlets), concurrently=False,
                                               stage="apply_receipts")
    critical = CriticalLane(settings, routes, dead_letters, ownership=ownership, ready=state.ready)

    # The worker's own loops beside the agents. Faust stops them only after its shutdown signal, when the stores
    # and senders they use are closed: they are stopped first (see `close_senders`).
    background: set[asyncio.Task[Any]] = set()

    def task(run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def tracked() -> None:
            current = asyncio.current_task()
            assert current is not None
            background.add(current)
            await run()

        tracked.__name__ = tracked.__qualname__ = run.__name__
        app.task(tracked)
        return run

    @task
    async def run_critical_lane() -> None:
        await critical.run()

    @task
    async def release_scheduled() -> None:
        await state.ready()
        await scheduler.run(settings.scheduler_interval)
    install_digests(task, ingest, state.digests, ready=state.ready, interval=settings.scheduler_interval)

    @task
    async def measure_state() -> None:
        while True:
            metrics.partitions_owned.set(len(ownership.partitions))
            for name, size in state.sizes().items():
                metrics.state_keys.labels(name).set(size)
            for kind, count in scheduler.pending_by_kind().items():
                metrics.scheduled_pending.labels(kind).set(count)
            await asyncio.sleep(settings.state_metrics_interval)

    # Both lanes' lag on this worker's partitions and the dead-letter topic's depth, asked of the broker.
    normal_topics = (settings.topic("events"), *(settings.topic(f"dispatch.{channel}") for channel in senders))
    lag = LagMonitor(metrics, KafkaOffsets(kafka_client_kwargs(settings)),
                     [Lane("normal", settings.app_id, normal_topics),
                      Lane("critical", critical.group_id, tuple(sorted(critical.routes)))],
                     owned=lambda: ownership.partitions, dead_letter_topic=settings.topic("deadletter"),
                     interval=settings.state_metrics_interval)

    @task
    async def measure_lag() -> None:
        await lag.run()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def count_rebalance(app: faust.App, assigned: set[TP], **kwargs: object) -> None:
        metrics.rebalances.inc()  # every rebalance ends in an assignment, an empty one included

    janitor = Janitor(retention_rules(state, settings, catalog, conversations), clock=clock, owns=ownership.owns,
                      metrics=metrics)

    @task
    async def sweep_expired_state() -> None:
        await state.ready()
        await janitor.run(settings.retention_interval)

    hearback = HearBack(webhook_receivers(senders), outlets, clock, ledger=ledger,
                        contacts=hooks.contacts_lookup(state.contacts, keys), replays=state.webhooks,
                        hooks=HearBackHooks(
                            on_receipt=hooks.route_receipts(publisher),
                            on_reply=hooks.answer_replies(conversations, catalog, publisher, outlets.statuses,
                                                          clock)),
                        replay_window=settings.dedupe_window, max_body_bytes=settings.webhook_max_bytes)
    register_views(app, metrics, hearback, settings.public_url, ledger=ledger, secret=keys)
    register_api_view(app, settings, catalog=catalog, channels=senders.keys(), publisher=publisher,
                      answers=state.api_requests, clock=clock)
    status_webhooks = StatusWebhooks.build(settings, app=app, store=state.status_webhooks, publisher=publisher,
                                           metrics=metrics, keys=keys, clock=clock)
    if status_webhooks is not None:  # outbound status webhooks: on with HERALD_API_KEYS
        app.agent(topics["status"], name="status_webhooks")(
            batched_agent(status_webhooks.handle, status_webhooks.guard, "status_webhooks"))
        task(status_webhooks.run)
        register_status_webhook_views(app, settings, status_webhooks.registrations, catalog=catalog, clock=clock)
    register_document_view(app, documents, metrics)
    # Served even with HERALD_TRACKING off: links already sent keep working until they expire.
    register_tracking_views(app, Tracking(tracking_links, hooks.route_receipts(publisher), metrics))
    harden_public_server(app)
    # The message timeline (admin port, /messages): every worker indexes all of herald.status, off the send path,
    # and only where HERALD_ADMIN_TOKEN lets someone ask.
    timeline = StatusTimeline(settings.topic("status"), kafka_client_kwargs(settings),
                              worker_directory(settings) / "timeline.sqlite", retention=settings.timeline_retention,
                              clock=clock) if settings.admin_token else None
    contents = TopicReader(settings.topic("content"), kafka_client_kwargs(settings),
                           worker_directory(settings) / "content.sqlite", retention=settings.timeline_retention,
                           open_index=ContentIndex, clock=clock) if shows_content else None
    ratings = rating_reader(settings, clock)  # survey ratings (herald.replies) for the rates page, with the console
    for reader in (timeline, contents, ratings):
        if reader is not None:
            task(reader.run)
    admin = serve_admin(app, settings, metrics, lanes_ready=lambda: critical.joined, timeline=timeline)
    add_console(admin, ConsoleContext(settings, metrics, timeline, settings.admin_token, keys, clock,
                                      extras={"catalog": catalog, "renderer": renderer, "contents": contents,
                                              "template_globals": template_globals, "ratings": ratings}))

    # mode's SignalHandlerT rejects every function, even one of exactly its signature: a typing bug of the library.
    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_senders(app: faust.App, **kwargs: object) -> None:
        # The agents are drained by now; the critical lane's batches in flight are cancelled uncommitted (their
        # records are read again by the partition's next owner) before the stores they read close.
        for running in background:
            running.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for sender in senders.values():
            await sender.close()
        await state.stop()

    return app
