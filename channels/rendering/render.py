"""Renders `templates/<type>/<channel>.<locale>.<part>.j2` in a sandbox, in the recipient's language.

Locale chain: `es-MX -> es -> <default>`. HTML parts are autoescaped; every variable must exist
(`StrictUndefined`). Money, dates and times are formatted with babel in the recipient's locale and zone.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time
from babel.numbers import (
    NumberPattern,
    format_currency,
    format_decimal,
    format_percent,
    get_currency_precision,
    get_currency_symbol,
)
from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError, pass_context
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from channels.errors import RenderError
from channels.rendering.documents import compute_due_notice, compute_invoice, compute_policy

# Which parts make up a message on each channel; the first is the one whose presence picks the locale.
CHANNEL_PARTS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "html", "text"),
    "sms": ("text",),
    "whatsapp": ("text",),
    "voice": ("speech",),
    "push": ("title", "body"),
    "webhook": ("json",),
}
# Parts rendered when the chosen locale has them: a voice keypad prompt, WhatsApp's approved-template
# parameters (JSON), an email's PDF attachment (HTML that channels/rendering/pdf.py turns into a PDF).
OPTIONAL_PARTS: dict[str, tuple[str, ...]] = {
    "voice": ("menu",),
    "whatsapp": ("template",),
    "email": ("pdf",),
}
AUTOESCAPED_SUFFIXES = (".html.j2", ".pdf.j2")

BUNDLED_TEMPLATES = Path(__file__).resolve().parents[1] / "bundled"
DEFAULT_FOLDER = "_default"

# Babel separates amounts and times with no-break spaces (U+00A0, U+202F). They are not GSM-7, so one of
# them would turn an SMS into UCS-2 and cut its segment size from 160 to 70 characters.
PLAIN_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " "})
PLAIN_TEXT_CHANNELS = frozenset({"sms", "voice"})


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered message: its parts by name, the locale actually used and the template id."""

    template: str
    locale: str
    parts: Mapping[str, str]

    def __getitem__(self, part: str) -> str:
        return self.parts[part]


def locale_chain(tag: str, default: str = "en") -> list[str]:
    """`es-MX` -> `['es-MX', 'es', 'en']`; tags are normalised to `ll` or `ll-RR`."""
    parts = tag.replace("_", "-").split("-")
    lang = parts[0].lower()
    chain = []
    if len(parts) > 1 and parts[1]:
        chain.append(f"{lang}-{parts[1].upper() if len(parts[1]) == 2 else parts[1]}")
    chain.append(lang)
    if default not in chain:
        chain.append(default)
    return chain


@lru_cache(maxsize=256)
def _babel_locale(tag: str) -> Locale:
    for candidate in locale_chain(tag):
        try:
            return Locale.parse(candidate, sep="-")
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse("en")


def _to_decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise RenderError(f"not a number: {type(value).__name__}", reason="template_value") from exc


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise RenderError("not an ISO 8601 date or time", reason="template_value") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _loc(ctx: Context) -> Locale:
    return _babel_locale(ctx.get("_format_locale", "en"))


def _tz(ctx: Context) -> ZoneInfo:
    return ZoneInfo(ctx.get("_timezone", "UTC"))


@pass_context
def money(ctx: Context, amount: Any, currency: str) -> str:
    """`59.90|money('EUR')` -> `59,90 €` in Spanish."""
    return format_money(_to_decimal(amount), str(currency), _loc(ctx))


@dataclass(frozen=True, slots=True)
class _MoneyFormat:
    """A locale's standard currency pattern set to one currency's digits, and that currency's symbol."""

    pattern: NumberPattern
    code: str
    symbol: str


@lru_cache(maxsize=512)
def _money_format(loc: Locale, currency: str) -> _MoneyFormat | None:
    """What `format_currency` looks up on every call, looked up once; None where the shortcut in `format_money`
    could differ from it (a quote the pattern or the inserted text holds, the currency's long name, no code)."""
    pattern = loc.currency_formats["standard"]
    symbol = get_currency_symbol(currency, loc)
    if not currency or "'" in pattern.pattern or "'" in symbol or "'" in currency or "¤¤¤" in pattern.pattern:
        return None
    digits = get_currency_precision(currency)
    fixed = copy.copy(pattern)
    fixed.frac_prec = (digits, digits)  # what apply() does with `currency_digits=True`
    return _MoneyFormat(fixed, currency.upper(), symbol)


def format_money(amount: Decimal, currency: str, loc: Locale) -> str:
    """`babel.numbers.format_currency(amount, currency, locale=loc)`, the same text, about twice as fast.

    babel's `NumberPattern.apply` works out the currency's plural long name for every amount, even for patterns
    that never show it (the standard ones), and looks the pattern, digits and symbol up again each time. Here the
    pattern formats the number alone (no currency), then the currency signs are replaced as apply() replaces them.
    tests/unit/test_render.py compares both over many locales, currencies and amounts.
    """
    found = _money_format(loc, currency)
    if found is None:
        return format_currency(amount, currency, locale=loc)
    text: str = found.pattern.apply(amount, loc)
    return text.replace("¤¤", found.code).replace("¤", found.symbol) if "¤" in text else text


@pass_context
def number(ctx: Context, value: Any) -> str:
    return format_decimal(_to_decimal(value), locale=_loc(ctx))


@pass_context
def percent(ctx: Context, value: Any) -> str:
    """`-5.2|percent` -> `-5,2 %` in Spanish (the value is already in percent)."""
    loc = _loc(ctx)
    return format_percent(_to_decimal(value) / 100, format=_percent_pattern(loc), locale=loc)


@lru_cache(maxsize=64)
def _percent_pattern(loc: Locale) -> str:
    """The locale's own percent pattern (spacing, sign position) with up to two decimals."""
    return re.sub(r"0(?=[^0#]*$)", "0.##", loc.percent_formats[None].pattern, count=1)


@pass_context
def date_filter(ctx: Context, value: Any, fmt: str = "long") -> str:
    """A calendar date; a full timestamp is first moved to the recipient's zone."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return format_date(value, fmt, locale=_loc(ctx))
    try:
        return format_date(date.fromisoformat(str(value)), fmt, locale=_loc(ctx))
    except ValueError:
        return format_date(_to_datetime(value).astimezone(_tz(ctx)).date(), fmt, locale=_loc(ctx))


@pass_context
def datetime_filter(ctx: Context, value: Any, fmt: str = "medium") -> str:
    return format_datetime(_to_datetime(value), fmt, tzinfo=_tz(ctx), locale=_loc(ctx))


@pass_context
def time_filter(ctx: Context, value: Any, fmt: str = "short") -> str:
    return format_time(_to_datetime(value), fmt, tzinfo=_tz(ctx), locale=_loc(ctx))


@pass_context
def price(ctx: Context, amount: Any, currency: str) -> str:
    """A unit price: the currency's decimals at least, more when the price has them (`0.1234|price('EUR')` ->
    `0,1234 €`), where `money` would round it."""
    return format_currency(_to_decimal(amount), str(currency), locale=_loc(ctx), decimal_quantization=False)


def iban(value: Any, masked: bool = False) -> str:
    """An IBAN in groups of four; `masked` keeps the country, check digits and last four (a debited account)."""
    text = "".join(str(value).split()).upper()
    if masked and len(text) > 8:
        text = text[:4] + "*" * (len(text) - 8) + text[-4:]
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))


@pass_context
def country(ctx: Context, code: Any) -> str:
    """`'DE'|country` -> `Alemania` in Spanish; an unknown code as it is."""
    return str(_loc(ctx).territories.get(str(code).upper(), code))


def build_environment(root: Path) -> ImmutableSandboxedEnvironment:
    """The sandboxed, strict Jinja2 environment every template renders in; templates cannot mutate their data."""
    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(root)),
        autoescape=lambda name: bool(name) and name.endswith(AUTOESCAPED_SUFFIXES),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=2000,
    )
    env.filters.update(money=money, number=number, percent=percent, date=date_filter,
                       datetime=datetime_filter, time=time_filter, price=price, iban=iban, country=country,
                       # Documents: the payload validated and every amount computed (channels/rendering/documents.py)
                       invoice=compute_invoice, due_notice=compute_due_notice, policy=compute_policy)
    return env


class Renderer:
    """Finds the right template for a type, channel and locale, and renders all its parts."""

    def __init__(self, root: Path | None = None, *, default_locale: str = "en",
                 globals_: Mapping[str, Any] | None = None) -> None:
        self.root = (root or BUNDLED_TEMPLATES).resolve()
        self.default_locale = default_locale
        self.env = build_environment(self.root)
        self.env.globals.update(globals_ or {})
        self._resolved: dict[tuple[str, str, str], tuple[str, str] | None] = {}
        self._optional: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self._variant: dict[tuple[str, str, str], frozenset[str]] = {}

    def _path(self, event_type: str, channel: str, locale: str, part: str) -> str:
        return f"{event_type}/{channel}.{locale}.{part}.j2"

    def resolve(self, event_type: str, channel: str, locale: str) -> tuple[str, str] | None:
        """(folder, locale): the first locale in the chain with every part of this channel, looking in the
        type's folder and then in `_default/` (channel templates shared by every type); None if neither has it."""
        key = (event_type, channel, locale)
        if key not in self._resolved:
            parts = CHANNEL_PARTS.get(channel, ("text",))
            self._resolved[key] = next(
                ((folder, loc) for folder in (event_type, DEFAULT_FOLDER)
                 for loc in locale_chain(locale, self.default_locale)
                 if all((self.root / self._path(folder, channel, loc, p)).is_file() for p in parts)),
                None,
            )
        return self._resolved[key]

    def _optional_parts(self, folder: str, channel: str, locale: str) -> tuple[str, ...]:
        """The optional parts this folder has for a channel and locale, looked up on disk once (like `resolve`)."""
        key = (folder, channel, locale)
        if (found := self._optional.get(key)) is None:
            found = self._optional[key] = tuple(p for p in OPTIONAL_PARTS.get(channel, ())
                                                if (self.root / self._path(folder, channel, locale, p)).is_file())
        return found

    def variant_parts(self, event_type: str, folder: str, channel: str, locale: str) -> frozenset[str]:
        """The parts a variant's folder (`<type>/<folder>/`, catalog `variants.<name>.templates`) has for a channel
        and locale: they replace the type's own; the others are the type's. Looked up on disk once."""
        key = (f"{event_type}/{folder}", channel, locale)
        if (found := self._variant.get(key)) is None:
            parts = (*CHANNEL_PARTS.get(channel, ("text",)), *OPTIONAL_PARTS.get(channel, ()))
            found = self._variant[key] = frozenset(
                p for p in parts if (self.root / self._path(key[0], channel, locale, p)).is_file())
        return found

    def resolve_locale(self, event_type: str, channel: str, locale: str) -> str | None:
        """The locale the message would be rendered in, or None when no template exists."""
        found = self.resolve(event_type, channel, locale)
        return found[1] if found else None

    def has_template(self, event_type: str, channel: str) -> bool:
        return self.resolve_locale(event_type, channel, self.default_locale) is not None

    def render(self, event_type: str, channel: str, *, locale: str, timezone: str = "UTC",
               context: Mapping[str, Any], variant_folder: str | None = None) -> Rendered:
        """Render every part; raises `RenderError` (permanent) on a missing template or variable. With
        `variant_folder` (a variant's templates), the parts that folder has in the chosen locale replace the type's."""
        found = self.resolve(event_type, channel, locale)
        if found is None:
            raise RenderError(f"no {channel} template for {event_type}", reason="template_missing")
        folder, chosen = found
        # Numbers and dates follow the recipient's regional format only when the text is in their language:
        # an English fallback for a French reader reads best with English dates, not a mix.
        same_language = locale.replace("_", "-").split("-")[0].lower() == chosen.split("-")[0]
        variables = {**context, "event_type": event_type, "locale": chosen,
                     "_format_locale": locale if same_language else chosen, "_timezone": timezone}
        parts: dict[str, str] = {}
        optional = self._optional_parts(folder, channel, chosen)
        replaced = self.variant_parts(event_type, variant_folder, channel, chosen) if variant_folder else frozenset()
        for part in (*CHANNEL_PARTS.get(channel, ("text",)), *optional):
            source = f"{event_type}/{variant_folder}" if part in replaced else folder
            name = self._path(source, channel, chosen, part)
            try:
                text = self.env.get_template(name).render(variables)
                parts[part] = text.translate(PLAIN_SPACES) if channel in PLAIN_TEXT_CHANNELS else text
            except UndefinedError as exc:
                raise RenderError(f"{name}: {exc.message}", reason="template_variable") from exc
            except SecurityError as exc:
                raise RenderError(f"{name}: unsafe template operation", reason="template_unsafe") from exc
            except (TemplateNotFound, TemplateSyntaxError) as exc:
                raise RenderError(f"{name}: {exc}", reason="template_error") from exc
            except RenderError:
                raise
            except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
                raise RenderError(f"{name}: {type(exc).__name__}", reason="template_value") from exc
        return Rendered(template=f"{event_type}/{channel}", locale=chosen, parts=parts)
