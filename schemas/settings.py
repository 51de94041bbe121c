"""Herald's configuration: environment variables prefixed `HERALD_` (documented in README.md)."""

from __future__ import annotations

import importlib.util
import math
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The SASL mechanisms aiokafka implements (aiokafka/conn.py). GSSAPI needs the `gssapi` package and a Kerberos
# ticket; OAUTHBEARER needs a token provider object, which Herald does not configure, so it is refused.
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"]
SASL_MECHANISMS: tuple[str, ...] = get_args(SaslMechanism)

# HERALD_SECRET in production: at least this many bits, estimated as length * log2(distinct characters).
MIN_SECRET_BITS = 128
# Secrets published in this repository (compose, the example Secret, tests, benchmarks) and the usual fillers:
# anyone can read them, so they sign and hash nothing in production.
KNOWN_PUBLIC_SECRETS = frozenset({
    "change-me-in-production-please",  # docker-compose.yml's default until issue 11
    "EXAMPLE-ONLY-replace-with-32-random-bytes",  # deploy/k8s/secret.example.yaml
    "test-secret", "test-secret-for-simulator", "test-secret-for-voice",  # tests
    "bench", "bench-secret-0123456789",  # bench/
    "secret", "changeme", "change-me", "password", "herald",
})
# Words that only a placeholder contains (`EXAMPLE-ONLY-kafka-password`, `change-me-…`), compared lower-cased.
PLACEHOLDER_MARKERS = ("example-only", "change-me", "changeme", "replace-me", "replace-with")
GENERATE_SECRET = "generate one with `openssl rand -base64 32`"


class Settings(BaseSettings):
    """Every knob, read from `HERALD_*` environment variables."""

    # hide_input_in_errors: a validation error must not print the values it was given (secrets, passwords).
    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore", hide_input_in_errors=True)

    env: Literal["dev", "production"] = Field(default="dev", description="production refuses to start without a "
                                              "strong HERALD_SECRET, with development credentials or with a Kafka "
                                              "password sent in clear.")
    kafka_bootstrap: str = Field(default="localhost:9092", description="Bootstrap servers, comma-separated.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = Field(default="PLAIN", description="PLAIN (only over SASL_SSL in "
                                                "production), SCRAM-SHA-256, SCRAM-SHA-512 or GSSAPI (needs the "
                                                "`gssapi` package and a Kerberos ticket).")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA certificates (PEM) that verify the "
                                          "brokers, instead of the system's; with SSL or SASL_SSL.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate chain (PEM) for mutual "
                                            "TLS; may hold the private key too.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Private key (PEM) of the client "
                                           "certificate, when not in HERALD_KAFKA_SSL_CERTFILE.")
    kafka_ssl_key_password: SecretStr | None = Field(default=None, description="Password of an encrypted client "
                                                     "private key.")
    topic_prefix: str = Field(default="herald.", description="Prefix of every topic.")
    partitions: int = Field(default=3, ge=1, description="Partitions per topic when Herald creates topics.")
    replication_factor: int = Field(default=1, ge=1, description="Replication when Herald creates topics.")
    app_id: str = Field(default="herald", description="Faust app id: consumer group and table names.")
    data_dir: Path = Field(default=Path(".herald"), description="Local state: Faust data, dev mail sink.")
    catalog: Path | None = Field(default=None, description="Catalog YAML; the bundled one when unset.")
    templates: Path | None = Field(default=None, description="Templates folder; the bundled one when unset.")
    default_locale: str = Field(default="en", description="Last locale of every fallback chain.")
    brand_name: str = Field(default="Herald Shop", description="Company name used in templates.")
    facturx_tenants: str = Field(default="", description="Tenants whose invoice PDFs are Factur-X (PDF/A-3 with "
                                 "the EN 16931 XML embedded), comma-separated; `*` for every event. Empty: none.")

    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_pool_size: int = Field(default=8, ge=1, description="Reused SMTP connections per worker.")
    smtp_timeout: float = Field(default=15.0, gt=0, description="Seconds per SMTP command.")
    email_from: str = "Herald <no-reply@example.com>"

    providers: str = Field(default="email=smtp", description="Providers per channel in failover order, e.g. "
                           "`email=smtp,sendgrid;sms=twilio,vonage;voice=twilio;whatsapp=meta;push=fcm`.")
    public_url: str = Field(default="http://127.0.0.1:6066",
                            description="Where providers reach Herald's web server (callbacks, links).")
    sim_url: str = Field(default="http://127.0.0.1:8090",
                         description="Provider simulator; the base URL of providers without their own.")
    sim_port: int = Field(default=8090, description="Port of `herald sim`.")
    dedupe_window: timedelta = Field(default=timedelta(days=7), description="How long an idempotency key is "
                                     "remembered at the door (seconds or ISO 8601 duration).")
    max_attempts: int = Field(default=5, ge=1, description="Send attempts of a message before it fails.")
    rate_limits: str = Field(default="", description="Overrides of the vendors' published rate limits per "
                             "provider and worker, e.g. `sms.twilio=1/s;push.fcm=none` (N/s, N/min, N/h).")
    breaker_failure_threshold: int = Field(default=5, ge=1, description="Consecutive transient failures that open "
                                           "a provider's circuit.")
    breaker_reset_after: float = Field(default=30.0, gt=0, description="Seconds an open circuit waits before a "
                                       "probe.")
    send_lease: float = Field(default=10.0, gt=0, description="Seconds a `pending` send belongs to the worker "
                              "that started it; after that another worker may send it.")
    scheduler_interval: float = Field(default=0.5, gt=0, description="Seconds between scheduler passes.")
    retention_interval: float = Field(default=300.0, gt=0, description="Seconds between sweeps that delete "
                                      "expired state (dedupe keys, cap counters, send records, questions, "
                                      "documents).")
    state_metrics_interval: float = Field(default=10.0, gt=0, description="Seconds between readings of the "
                                          "state size (`herald_state_keys`) and the consumer lag "
                                          "(`herald_consumer_lag`); dead-letter depth every third reading.")
    receipt_grace: timedelta = Field(default=timedelta(days=3), description="How long a send record is kept "
                                     "after its message expires, so late receipts still find it (seconds or "
                                     "ISO 8601 duration).")
    tracking: bool = Field(default=True, description="Open and click tracking of email, for the types the catalog "
                           "does not exclude (critical types never); false: no email is tracked.")
    tracking_ttl: timedelta = Field(default=timedelta(days=30), gt=timedelta(0), description="How long an email's "
                                    "tracking links (pixel and click redirects) keep working after the message "
                                    "itself expires (its send time plus the type's `ttl`); later they answer 403 "
                                    "(seconds or ISO 8601 duration).")
    preference_link_ttl: timedelta = Field(default=timedelta(days=90), gt=timedelta(0), description="How long "
                                           "the link to the preference page in a promotional message works after "
                                           "the message is sent; later it answers 410 (seconds or ISO 8601 "
                                           "duration).")
    max_event_bytes: int = Field(default=1_048_576, ge=1024, description="Largest event record accepted; a "
                                 "larger one is `rejected` with `event_too_large` before any work.")
    max_record_bytes: int = Field(default=1_048_576, ge=65_536, description="The producer's limit on one record "
                                  "(Kafka's `max.request.size`): a dispatch over it is `rejected` with "
                                  "`dispatch_too_large`; a dead letter over it is stored truncated.")
    max_schedule_ahead: timedelta = Field(default=timedelta(days=400), description="Latest `time`, `sendat` or "
                                          "reminder accepted, from now; later ones are `rejected` with "
                                          "`invalid_time` (seconds or ISO 8601 duration).")
    critical_fetch_wait_ms: int = Field(default=100, ge=1, le=1500, description="Longest a fetch of the critical "
                                        "lane's own consumer waits for records (ms).")
    critical_batch: int = Field(default=50, ge=1, description="Most records the critical lane takes per fetch; "
                                "its offsets are committed once the whole batch has outcomes.")
    email_concurrency: int = Field(default=32, ge=1, description="Emails in flight per worker.")
    channel_concurrency: int = Field(default=16, ge=1, description="Sends in flight per worker, other channels.")
    web_host: str = Field(default="127.0.0.1", description="Interface of the public web server (the only one it "
                          "binds).")
    web_port: int = Field(default=6066, description="Public port: provider webhooks, unsubscribe and document "
                          "links. Nothing else is served there.")
    admin_host: str = Field(default="127.0.0.1", description="Interface of the admin server; set `0.0.0.0` where "
                            "probes and Prometheus reach it from outside the pod, and keep it off the internet.")
    admin_port: int = Field(default=6067, description="Admin port: /metrics, /health (liveness), /ready "
                            "(readiness).")
    admin_token: SecretStr | None = Field(default=None, description="Bearer token of the admin port's message "
                                          "timeline (`/messages`); unset or blank: the timeline is off (503) and "
                                          "no worker keeps its index.")
    timeline_retention: timedelta = Field(default=timedelta(days=7), gt=timedelta(0), description="How far back "
                                          "the message timeline reaches: each worker indexes this much of "
                                          "herald.status and prunes older statuses (seconds or ISO 8601 duration).")
    console_session_ttl: timedelta = Field(default=timedelta(hours=8), gt=timedelta(0), description="How long a "
                                           "console sign-in lasts (the admin token typed once into `/console/login`; "
                                           "seconds or ISO 8601 duration). Changing the token ends every session.")
    console_personal_data: bool = Field(default=False, description="Whether the console may show clear personal "
                                        "data (the rendered content of types whose catalog entry allows it); off, "
                                        "it shows ids, hashes and statuses only.")
    webhook_max_bytes: int = Field(default=1_048_576, ge=1024, description="Largest provider webhook body read "
                                   "(however it arrives: Content-Length or chunked); a larger one is refused "
                                   "with 413 before any work.")
    webhook_tolerance: float = Field(default=300.0, gt=0, description="Seconds a provider's signed webhook "
                                     "timestamp (SendGrid, Vonage) may be off Herald's clock; an older or later "
                                     "one is refused with 403, so a captured webhook cannot be replayed later.")
    secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
                              description="Signs links, hashes recipients.")
    # `old1,old2` in the environment; without `NoDecode` pydantic-settings would JSON-decode it first.
    secret_previous: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="Older HERALD_SECRET values, comma-separated, newest first: they still verify links "
        "and find address consent signed or keyed with them, but sign nothing new (rotation; see README).")
    # `tenant=key,tenant2=key2` in the environment (NoDecode: not JSON-decoded first, as for secret_previous).
    api_keys: Annotated[dict[str, tuple[SecretStr, ...]], NoDecode] = Field(
        default_factory=dict, description="Keys of the HTTP trigger API (`POST /v1/events` on the public port): "
        "`tenant=key` pairs, comma-separated; a tenant named twice has two keys (rotation). A key decides the "
        "tenant of the events sent with it. None set: the API is off (404).")
    api_max_batch: int = Field(default=100, ge=1, description="Most events in one `POST /v1/events` batch; more is "
                               "refused whole with 413.")
    api_max_bytes: int = Field(default=1_048_576, ge=1024, description="Largest `POST /v1/events` body read "
                               "(Content-Length or chunked); a larger one is refused with 413 before any work.")
    # Outbound status webhooks (consumers/pipeline/status_outbox.py); on only with HERALD_API_KEYS.
    status_webhooks: bool = Field(default=True, description="Tenants may register an endpoint for their statuses "
                                  "(`/v1/webhooks/status`) and workers POST them there; false: off (404).")
    status_webhook_max_attempts: int = Field(default=12, ge=1, description="Attempts to deliver one status before "
                                             "it is dead-lettered (herald.webhooks.deadletter).")
    status_webhook_retry_for: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0), description="How "
                                                "long a status may wait for its endpoint (retries, pauses) before "
                                                "it is dead-lettered (seconds or ISO 8601 duration).")
    status_webhook_concurrency: int = Field(default=4, ge=1, description="POSTs in flight per endpoint and "
                                            "worker.")
    status_webhook_pause_after: int = Field(default=10, ge=1, description="Consecutive failed attempts (timeouts, "
                                            "connection errors, 408, 429, 5xx) that pause an endpoint.")
    status_webhook_pause_for: float = Field(default=60.0, gt=0, description="Seconds a paused endpoint waits "
                                            "before one probe; its success resumes deliveries.")
    status_webhook_max_pending: int = Field(default=100_000, ge=1, description="Statuses a worker keeps waiting "
                                            "for one endpoint; more are dead-lettered at once (`backlog_full`).")
    log_level: str = Field(default="info", description="debug, info, warning or error.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_key_pairs(cls, value: Any) -> Any:
        if isinstance(value, str):
            keys: dict[str, list[str]] = {}
            for n, pair in enumerate((p.strip() for p in value.split(",") if p.strip()), 1):
                tenant, sep, key = pair.partition("=")  # at the first `=`: base64 keys may end in `=`
                if not sep or not tenant.strip() or not key.strip():  # never the key itself in the message
                    raise ValueError(f"HERALD_API_KEYS: entry {n} is not tenant=key")
                keys.setdefault(tenant.strip(), []).append(key.strip())
            return {tenant: tuple(ring) for tenant, ring in keys.items()}
        if isinstance(value, dict):  # in code: tenant -> one key or a list
            return {t: (k,) if isinstance(k, str | SecretStr) else tuple(k) for t, k in value.items()}
        return value

    @field_validator("api_keys")
    @classmethod
    def _api_keys_one_tenant_each(cls, value: dict[str, tuple[SecretStr, ...]]) -> dict[str, tuple[SecretStr, ...]]:
        owners: dict[str, set[str]] = {}
        for tenant, ring in value.items():
            if not tenant or len(tenant) > 100 or not ring:
                raise ValueError(f"HERALD_API_KEYS: tenant {tenant[:100]!r} needs a name of 1 to 100 characters "
                                 "and a key")
            for key in ring:
                owners.setdefault(key.get_secret_value(), set()).add(tenant)
        if shared := sorted({", ".join(sorted(names)) for names in owners.values() if len(names) > 1}):
            # The key decides the tenant: one key of two tenants could not say which.
            raise ValueError(f"HERALD_API_KEYS: one key is shared by {'; '.join(shared)}; give each tenant its own")
        return value

    @field_validator("secret_previous", mode="before")
    @classmethod
    def _previous_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("kafka_sasl_mechanism", mode="before")
    @classmethod
    def _sasl_mechanism(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            if value not in SASL_MECHANISMS:
                raise ValueError(f"HERALD_KAFKA_SASL_MECHANISM={value} is not a SASL mechanism aiokafka supports "
                                 f"({', '.join(SASL_MECHANISMS)})")
        return value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: Any) -> Any:
        # `HERALD_ADMIN_TOKEN=` must turn the timeline off, not make an empty bearer token valid.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: Any) -> Any:
        # `HERALD_KAFKA_SSL_CAFILE=` in a manifest means "not set", not the current directory.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        """Refuse settings that cannot work anywhere, and, in production, settings that are unsafe.

        Every problem is one line of the error, each naming its variable.
        """
        problems = self._kafka_problems()
        if self.env == "production":
            problems += self._production_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _kafka_problems(self) -> list[str]:
        problems = []
        protocol, mechanism = self.kafka_security_protocol, self.kafka_sasl_mechanism
        if protocol.startswith("SASL"):
            if mechanism == "OAUTHBEARER":
                problems.append("HERALD_KAFKA_SASL_MECHANISM=OAUTHBEARER needs a token provider, which Herald does "
                                "not configure; use SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN over SASL_SSL")
            elif mechanism == "GSSAPI":
                if importlib.util.find_spec("gssapi") is None:
                    problems.append("HERALD_KAFKA_SASL_MECHANISM=GSSAPI needs the `gssapi` package (and a Kerberos "
                                    "ticket); install it or use SCRAM-SHA-512")
            elif not self.kafka_sasl_username or not self.kafka_sasl_password:
                problems.append(f"HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD are required with "
                                f"HERALD_KAFKA_SECURITY_PROTOCOL={protocol} and mechanism {mechanism}")
        files = {"HERALD_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile, "HERALD_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
                 "HERALD_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile}
        tls_set = [name for name, path in files.items() if path is not None]
        if self.kafka_ssl_key_password is not None:
            tls_set.append("HERALD_KAFKA_SSL_KEY_PASSWORD")
        if tls_set and not protocol.endswith("SSL"):
            problems.append(f"{', '.join(tls_set)} set, but HERALD_KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                            "TLS; use SSL or SASL_SSL")
        for name, path in files.items():
            if path is not None and not path.is_file():
                problems.append(f"{name}: no such file: {path}")
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            problems.append("HERALD_KAFKA_SSL_KEYFILE needs HERALD_KAFKA_SSL_CERTFILE (the certificate it belongs to)")
        if self.kafka_ssl_key_password is not None and self.kafka_ssl_certfile is None:
            problems.append("HERALD_KAFKA_SSL_KEY_PASSWORD needs HERALD_KAFKA_SSL_CERTFILE")
        return problems

    def _production_problems(self) -> list[str]:
        problems = []
        if "secret" not in self.model_fields_set:
            problems.append(f"HERALD_SECRET is required when HERALD_ENV=production; {GENERATE_SECRET}")
        elif problem := secret_problem(self.secret.get_secret_value()):
            problems.append(f"HERALD_SECRET {problem}; {GENERATE_SECRET}")
        if self.admin_token is not None and (problem := secret_problem(self.admin_token.get_secret_value())):
            problems.append(f"HERALD_ADMIN_TOKEN {problem}; {GENERATE_SECRET}")  # unset is fine: timeline off
        for n, old in enumerate(self.secret_previous, 1):  # an old secret still verifies links: same rule
            if problem := secret_problem(old.get_secret_value()):
                problems.append(f"HERALD_SECRET_PREVIOUS (secret {n}) {problem}; {GENERATE_SECRET}")
        for tenant, ring in self.api_keys.items():  # a key is a password: the same rule as the secret
            for n, key in enumerate(ring, 1):
                if problem := secret_problem(key.get_secret_value()):
                    problems.append(f"HERALD_API_KEYS (tenant {tenant!r}, key {n}) {problem}; {GENERATE_SECRET}")
        if self.kafka_security_protocol == "SASL_PLAINTEXT" and self.kafka_sasl_mechanism == "PLAIN":
            problems.append("HERALD_KAFKA_SASL_MECHANISM=PLAIN over HERALD_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT "
                            "sends the Kafka password in clear; use SASL_SSL (or SCRAM-SHA-512)")
        for name, value in (("HERALD_KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
                            ("HERALD_SMTP_PASSWORD", self.smtp_password)):
            if value is not None and is_placeholder(value.get_secret_value()):
                problems.append(f"{name} is an example placeholder; set the real password")
        return problems

    def as_env(self) -> dict[str, str]:
        """These settings as `HERALD_*` variables, for starting a worker process with the same configuration."""
        env = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, tuple) and all(isinstance(v, SecretStr) for v in value):
                value = ",".join(v.get_secret_value() for v in value)  # HERALD_SECRET_PREVIOUS
            elif name == "api_keys":
                value = ",".join(f"{t}={k.get_secret_value()}" for t, ring in self.api_keys.items() for k in ring)
            env[f"HERALD_{name.upper()}"] = str(value)
        return env

    def topic(self, name: str) -> str:
        """Full topic name for a short name such as `status` or `dispatch.email`."""
        return f"{self.topic_prefix}{name}"


def secret_strength_bits(value: str) -> float:
    """A generous estimate of a secret's strength: length * log2(distinct characters).

    Random secrets score about their real strength (`secrets.token_urlsafe(32)`: about 210; 64 hex digits: 256);
    repetition scores low (16 spaces: 0; `abab…`: 1 bit a character), and so do words (few distinct letters).
    """
    distinct = len(set(value))
    return len(value) * math.log2(distinct) if distinct > 1 else 0.0


def is_placeholder(value: str) -> bool:
    """Whether a secret is one published in this repository or an obvious placeholder."""
    folded = value.strip().lower()
    return (folded in {known.lower() for known in KNOWN_PUBLIC_SECRETS}
            or any(marker in folded for marker in PLACEHOLDER_MARKERS))


def secret_problem(value: str) -> str | None:
    """Why `value` cannot be a production secret (completing "HERALD_SECRET …"), or None when it can."""
    if not value.strip():
        return "is blank"
    if is_placeholder(value):
        return "is a published example or test value"
    if secret_strength_bits(value) < MIN_SECRET_BITS:
        return (f"is too weak (under {MIN_SECRET_BITS} bits, estimated as its length * log2 of its distinct "
                "characters)")
    return None


def configuration_errors(exc: ValidationError) -> list[str]:
    """One line per problem of a `Settings` validation error, each naming its variable; never the values."""
    lines = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        field = ".".join(str(part) for part in error["loc"])
        for line in message.splitlines():
            lines.append(line if not field or "HERALD_" in line else f"HERALD_{field.upper()}: {line}")
    return lines
