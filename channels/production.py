"""Fail fast in production: no enabled provider may run on development credentials.

Each provider's settings class names its credentials and signing secrets in `DEV_DEFAULTS` (field -> what to set
instead); the field's default is the development value the provider simulator accepts, so anyone can forge
receipts, replies or signatures with it. `production_problems` walks the providers `HERALD_PROVIDERS` enables and
lists every such setting still at its development default or empty, one line each, naming the variable.
`herald worker` calls it before it connects to anything (Herald's own settings are checked by `Settings` itself).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from channels.registry import UnknownProvider, parse_provider_spec, provider_class
from schemas.settings import Settings


def _plain(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return "" if value is None else str(value)


def _env_prefix(config_class: type[BaseModel]) -> str:
    return str(config_class.model_config.get("env_prefix", ""))


def dev_default_problems(config: BaseModel) -> list[str]:
    """Every credential of `config` (its class's `DEV_DEFAULTS`) that is empty or still its development default."""
    config_class = type(config)
    prefix = _env_prefix(config_class)
    problems = []
    for field, what in getattr(config_class, "DEV_DEFAULTS", {}).items():
        var = f"{prefix}{field}".upper()
        value = _plain(getattr(config, field)).strip()
        if not value:
            problems.append(f"{var} is empty; set {what}")
        elif value == _plain(config_class.model_fields[field].get_default(call_default_factory=True)).strip():
            problems.append(f"{var} is the development default; set {what}")
    return problems


def _provider_problems(key: str) -> list[str]:
    try:
        provider = provider_class(key)
    except UnknownProvider as exc:
        return [f"HERALD_PROVIDERS: {exc}"]
    config_class = getattr(provider, "settings_class", None)
    if not (isinstance(config_class, type) and issubclass(config_class, BaseModel)):
        return []  # configured through Herald's own settings (SMTP), checked by `Settings`
    prefix = _env_prefix(config_class)
    try:
        config = config_class()
    except ValidationError as exc:
        return [f"{prefix}{'_'.join(str(p) for p in e['loc'])}".upper() + f": {e['msg']}" for e in exc.errors()]
    problems = dev_default_problems(config)
    if callable(more := getattr(config, "production_problems", None)):  # a provider's own rules (webhook keys)
        problems += more()
    if "base_url" in config_class.model_fields and not getattr(config, "base_url", None):
        # Without it the provider would talk to the simulator (`channels.http.base_url_for` refuses that too,
        # but only once the worker has connected to Kafka).
        problems.append(f"{prefix}BASE_URL must be set when HERALD_ENV=production")
    return problems


def production_problems(settings: Settings) -> list[str]:
    """What stops the enabled providers from running in production, one line per setting; empty outside it."""
    if settings.env != "production":
        return []
    try:
        chains = parse_provider_spec(settings.providers)
    except ValueError as exc:
        return [f"HERALD_PROVIDERS: {exc}"]
    problems: list[str] = []
    for channel, vendors in chains.items():
        for vendor in vendors:
            problems += _provider_problems(f"{channel}.{vendor}")
    # SMS and voice through Twilio read the same variables: say each once.
    return list(dict.fromkeys(problems))
