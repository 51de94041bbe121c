"""`herald templates check|preview`: render templates with the catalog's sample data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from channels.errors import RenderError
from channels.rendering.render import Rendered, Renderer
from channels.segments import sms_segments
from consumers.app import load_catalog
from schemas.settings import Settings

SAMPLE_RECIPIENTS = ({"id": "sample-1", "name": "Ana"}, {"id": "sample-2", "name": None})
SMS_SEGMENT_WARNING = 2


def shipped_locales(renderer: Renderer) -> list[str]:
    """Locales that have at least one template file."""
    return sorted({p.name.split(".")[1] for p in renderer.root.glob("*/*.j2") if not p.parent.name.startswith("_")})


def _renderer(settings: Settings) -> Renderer:
    return Renderer(settings.templates, default_locale=settings.default_locale,
                    globals_={"brand": settings.brand_name, "document_url": None})


def check_templates(settings: Settings) -> tuple[list[str], list[str], int]:
    """Render every (type, channel, locale); returns (errors, warnings, renders).

    A type's email must exist in every shipped locale; other channels fall back along the locale chain
    (and to `_default/`), and a fallback is reported as a warning. Every type is also rendered for the
    webhook channel, whose shared template serves them all.
    """
    catalog = load_catalog(settings)
    renderer = _renderer(settings)
    locales = shipped_locales(renderer)
    problems: list[str] = []
    warnings: list[str] = []
    count = 0
    for event_type, entry in catalog.types.items():
        channels = list(dict.fromkeys([c.value for c in entry.channels] + ["webhook"]))
        for channel in channels:
            for locale in locales:
                found = renderer.resolve(event_type, channel, locale)
                if found is None:
                    problems.append(f"{event_type}/{channel}: no template for {locale} or any fallback")
                    break
                if found[1] != locale and found[0] != "_default":
                    (problems if channel == "email" else warnings).append(
                        f"{event_type}/{channel}: no {locale} template (falls back to {found[1]})")
                for to in SAMPLE_RECIPIENTS:
                    try:
                        rendered = renderer.render(event_type, channel, locale=locale, timezone="Europe/Madrid",
                                                   context={"to": to, "payload": entry.sample,
                                                            "message_id": "msg-sample", "event_id": "evt-sample",
                                                            "tenant": None})
                        count += 1
                    except RenderError as exc:
                        problems.append(f"{event_type}/{channel}.{locale}: {exc}")
                        break
                    problems.extend(f"{event_type}/{channel}.{locale}: {p}" for p in _structure(channel, rendered))
                    if channel == "sms":
                        encoding, segments = sms_segments(rendered["text"])
                        if segments > SMS_SEGMENT_WARNING:
                            warnings.append(f"{event_type}/sms.{locale}: {segments} segments ({encoding})")
    return problems, warnings, count


def _structure(channel: str, rendered: Rendered) -> list[str]:
    """Parts that must be machine-readable are checked as such."""
    checks = {"webhook": "json", "whatsapp": "template"}
    part = checks.get(channel)
    if part is None or part not in rendered.parts:
        return []
    try:
        json.loads(rendered[part])
    except ValueError:
        return [f"{part} part is not valid JSON"]
    return []


@dataclass(frozen=True)
class Preview:
    """A rendered template and what the reader should know about how it was chosen."""

    rendered: Rendered
    warnings: list[str]


def known_locale(tag: str) -> bool:
    """Whether babel knows the tag (`es-ES`, `pt_BR`, `de`); `xx-YY` it does not."""
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(tag.replace("_", "-"), sep="-")
    except (ValueError, UnknownLocaleError):
        return False
    return True


def preview(settings: Settings, event_type: str, channel: str, locale: str, timezone: str,
            payload: dict[str, Any] | None) -> Preview:
    """Render one type on one channel for `herald templates preview`, with the catalog's sample payload unless one
    is given. A `LookupError` for an unknown type or a channel without a template, a `ValueError` for a payload
    without the type's required fields; a `RenderError` when the template needs more than the payload has."""
    from consumers.cli.checks import unknown_type

    catalog = load_catalog(settings)
    entry = catalog.get(event_type)
    if entry is None:
        raise LookupError(unknown_type(catalog, event_type))
    if payload is not None and (missing := [f for f in entry.required if f not in payload]):
        raise ValueError(f"payload lacks {', '.join(missing)} (required by {event_type}: "
                         f"{', '.join(entry.required)})")
    renderer = _renderer(settings)
    chosen = renderer.resolve_locale(event_type, channel, locale)
    if chosen is None:
        raise LookupError(f"no {channel} template for {event_type}")
    warnings = []
    if not known_locale(locale):
        warnings.append(f"unknown locale {locale!r}; rendered in {chosen}")
    elif chosen.split("-")[0] != locale.replace("_", "-").split("-")[0].lower():
        warnings.append(f"no {locale} template for {event_type}/{channel}; rendered in {chosen}")
    rendered = renderer.render(event_type, channel, locale=locale, timezone=timezone,
                               context={"to": SAMPLE_RECIPIENTS[0],
                                        "payload": entry.sample if payload is None else payload,
                                        "message_id": "msg-preview"})
    return Preview(rendered, warnings)
