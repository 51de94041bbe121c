"""How the simulator behaves: configuration (`SimConfig`, `HERALD_SIM_*`) and fault injection.

Everything random draws from one `random.Random(seed)`, never the global generator, so a seeded run repeats.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The parsed fields of a vendor request (JSON object, form or query), read once by the simulator's middleware.
PAYLOAD: web.RequestKey[Any] = web.RequestKey("sim_payload", object)
# Addresses ending like this fail for good at request time, on every vendor that takes phone numbers.
UNROUTABLE_SUFFIX = "0000"


class RecipientRule(BaseModel):
    """What happens to messages for one address (E.164 number, email address or push token)."""

    model_config = ConfigDict(extra="forbid")

    fail: Literal["permanent", "undelivered"] | None = Field(
        default=None, description="permanent: failed/bounced for good; undelivered: sent, then not delivered.")
    voice: Literal["busy", "no-answer", "failed"] | None = Field(default=None, description="How a call ends.")
    reply_text: str | None = Field(default=None, description="The person answers this text after delivery.")
    reply_times: int | None = Field(default=None, ge=1, description="How many messages the person answers with "
                                    "`reply_text` (people answer a question, not its acknowledgement); every one "
                                    "when unset.")
    reply_digits: str | None = Field(default=None, description="Keys pressed at a voice <Gather>.")
    open: bool | None = Field(default=None, description="Email opened / WhatsApp read (read unless false).")
    click: str | None = Field(default=None, description="Email: this link is clicked.")


class RateLimit(BaseModel):
    """The next `count` vendor requests get 429 with `Retry-After: retry_after`."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=0, ge=0)
    retry_after: int = Field(default=1, ge=0)


class SimConfig(BaseSettings):
    """`HERALD_SIM_*`, overridable at run time through `POST /_sim/config` (merged, not replaced)."""

    model_config = SettingsConfigDict(env_prefix="HERALD_SIM_", extra="ignore")

    herald_url: str | None = Field(default=None, description="Where callbacks go; Settings().public_url if unset.")
    latency_ms: int = Field(default=0, ge=0, description="Added before answering every vendor request.")
    callback_delay_ms: int = Field(default=50, ge=0, description="Pause before each callback of a message.")
    callback_retries: int = Field(default=3, ge=0, description="Retries of a callback Herald did not accept.")
    callback_backoff_ms: int = Field(default=200, ge=0, description="First retry pause; doubles each time.")
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of requests answered 5xx.")
    timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share held, then answered 504.")
    timeout_hold_s: float = Field(default=30.0, ge=0.0, description="How long a timed-out request is held.")
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    seed: int | None = Field(default=None, description="Seed of all randomness (ids, faults, durations).")
    recipients: dict[str, RecipientRule] = Field(default_factory=dict, description="Rules keyed by address.")
    customer_status: int = Field(default=204, ge=200, le=599, description="What /customer/webhook answers "
                                 "to a validly signed request (e.g. 500 or 410).")
    vonage_callback_method: Literal["POST", "GET"] = Field(
        default="POST", description="Vonage webhooks: POST JSON, or GET with a query string.")
    meta_reengagement: Literal["webhook", "sync"] = Field(
        default="webhook", description="Free-form WhatsApp outside the 24 h window: accepted then failed "
        "(131047) on the webhook, as Cloud API does; or refused at once with 131047.")

    def merged(self, patch: Mapping[str, Any]) -> SimConfig:
        """A copy with `patch` merged in; a recipient set to null is removed."""
        data = self.model_dump()
        for key, value in patch.items():
            if key == "recipients" and isinstance(value, Mapping):
                rules = dict(data.get("recipients") or {})
                for address, rule in value.items():
                    if rule is None:
                        rules.pop(address, None)
                    else:
                        rules[address] = {**(rules.get(address) or {}), **dict(rule)}
                data["recipients"] = rules
            elif key == "rate_limit" and isinstance(value, Mapping):
                data["rate_limit"] = {**data["rate_limit"], **dict(value)}
            else:
                data[key] = value
        return SimConfig.model_validate(data)


Fault = Literal["timeout", "rate_limit", "server_error"]


@dataclass(slots=True)
class FaultDecision:
    kind: Fault
    retry_after: int | None = None


class Behaviour:
    """The live configuration plus the state it drives: the random generator and the rate-limit budget."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed if config.seed is not None else int.from_bytes(os.urandom(8)))
        self.rate_limited_left = config.rate_limit.count
        self.replies_sent: Counter[str] = Counter()  # by address without `+`, for `reply_times`

    def update(self, patch: Mapping[str, Any]) -> None:
        """Merge run-time configuration; a new seed or rate limit restarts the generator or the budget."""
        self.config = self.config.merged(patch)
        if "seed" in patch and self.config.seed is not None:
            self.rng = random.Random(self.config.seed)
        if "rate_limit" in patch:
            self.rate_limited_left = self.config.rate_limit.count
        if "recipients" in patch:
            self.replies_sent.clear()

    def rule_for(self, address: str | None) -> RecipientRule:
        """The rule for an address, matched as given, with a leading `+`, or case-insensitively for email."""
        if not address:
            return RecipientRule()
        rules = self.config.recipients
        for key in (address, f"+{address}", address.lower()):
            if key in rules:
                return rules[key]
        lowered = address.lower()
        return next((rule for key, rule in rules.items() if key.lower() == lowered), RecipientRule())

    def reply_for(self, address: str, rule: RecipientRule) -> str | None:
        """The text the person answers this delivered message with, if they still answer (`reply_times`)."""
        key = address.lstrip("+")
        if not rule.reply_text or (rule.reply_times is not None and self.replies_sent[key] >= rule.reply_times):
            return None
        self.replies_sent[key] += 1
        return rule.reply_text

    @staticmethod
    def unroutable(number: str | None) -> bool:
        return bool(number and number.rstrip().endswith(UNROUTABLE_SUFFIX))

    def draw_fault(self) -> FaultDecision | None:
        """Decide, for one vendor request, whether it times out, is rate limited or fails with a 5xx."""
        cfg = self.config
        if cfg.timeout_rate and self.rng.random() < cfg.timeout_rate:
            return FaultDecision("timeout")
        if self.rate_limited_left > 0:
            self.rate_limited_left -= 1
            return FaultDecision("rate_limit", cfg.rate_limit.retry_after)
        if cfg.error_rate and self.rng.random() < cfg.error_rate:
            return FaultDecision("server_error")
        return None

    async def request_latency(self) -> None:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)

    async def callback_pause(self) -> None:
        if self.config.callback_delay_ms:
            await asyncio.sleep(self.config.callback_delay_ms / 1000)

    def hex_id(self, length: int) -> str:
        return f"{self.rng.getrandbits(length * 4):0{length}x}"

    def token(self, length: int, alphabet: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
              ) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(length))
