"""Herald's configuration: environment variables prefixed `HERALD_` (documented in README.md)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 16


class Settings(BaseSettings):
    """Every knob, read from `HERALD_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore")

    env: Literal["dev", "production"] = Field(default="dev", description="production requires HERALD_SECRET.")
    kafka_bootstrap: str = Field(default="localhost:9092", description="Bootstrap servers, comma-separated.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str = Field(default="PLAIN", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    topic_prefix: str = Field(default="herald.", description="Prefix of every topic.")
    partitions: int = Field(default=3, ge=1, description="Partitions per topic when Herald creates topics.")
    replication_factor: int = Field(default=1, ge=1, description="Replication when Herald creates topics.")
    app_id: str = Field(default="herald", description="Faust app id: consumer group and table names.")
    data_dir: Path = Field(default=Path(".herald"), description="Local state: Faust data, dev mail sink.")
    catalog: Path | None = Field(default=None, description="Catalog YAML; the bundled one when unset.")
    templates: Path | None = Field(default=None, description="Templates folder; the bundled one when unset.")
    default_locale: str = Field(default="en", description="Last locale of every fallback chain.")
    brand_name: str = Field(default="Herald Shop", description="Company name used in templates.")

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
    receipt_grace: timedelta = Field(default=timedelta(days=3), description="How long a send record is kept "
                                     "after its message expires, so late receipts still find it (seconds or "
                                     "ISO 8601 duration).")
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
    web_host: str = Field(default="127.0.0.1", description="Interface of the web server.")
    web_port: int = Field(default=6066, description="Webhooks, tracking, /metrics, /messages/{id}.")
    secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
                              description="Signs links, hashes recipients.")
    log_level: str = Field(default="info", description="debug, info, warning or error.")

    @model_validator(mode="after")
    def _production_needs_secret(self) -> Settings:
        if self.env == "production" and ("secret" not in self.model_fields_set
                                         or len(self.secret.get_secret_value()) < MIN_SECRET_LENGTH):
            raise ValueError(f"HERALD_SECRET is required (at least {MIN_SECRET_LENGTH} characters) "
                             "when HERALD_ENV=production")
        return self

    def as_env(self) -> dict[str, str]:
        """These settings as `HERALD_*` variables, for starting a worker process with the same configuration."""
        env = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"HERALD_{name.upper()}"] = str(value)
        return env

    def topic(self, name: str) -> str:
        """Full topic name for a short name such as `status` or `dispatch.email`."""
        return f"{self.topic_prefix}{name}"
