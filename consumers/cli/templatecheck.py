"""`herald templates check|preview`: render templates with the catalog's sample data (the rendering itself lives in
channels/rendering/preview.py, which the console's template pages share)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.errors import RenderError
from channels.rendering.preview import (
    SAMPLE_RECIPIENTS,
    known_locale,
    locale_note,
    render_sample,
    shipped_locales,
    structure_problems,
    type_channels,
)
from channels.rendering.render import Rendered, Renderer
from channels.rendering.variants import render_variants
from channels.segments import sms_segments
from consumers.app import load_catalog
from schemas.settings import Settings

SMS_SEGMENT_WARNING = 2

__all__ = ["SAMPLE_RECIPIENTS", "Preview", "check_templates", "known_locale", "preview", "shipped_locales"]


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
        variant_problems, variant_renders = render_variants(renderer, event_type, entry, locales)  # variants' own
        problems, count = problems + variant_problems, count + variant_renders
        for channel in type_channels(entry):
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
                        rendered = render_sample(renderer, event_type, channel, locale, entry.template_payload(), to=to)
                        count += 1
                    except RenderError as exc:
                        problems.append(f"{event_type}/{channel}.{locale}: {exc}")
                        break
                    problems.extend(f"{event_type}/{channel}.{locale}: {p}"
                                    for p in structure_problems(channel, rendered))
                    if channel == "sms":
                        encoding, segments = sms_segments(rendered["text"])
                        if segments > SMS_SEGMENT_WARNING:
                            warnings.append(f"{event_type}/sms.{locale}: {segments} segments ({encoding})")
    return problems, warnings, count


@dataclass(frozen=True)
class Preview:
    """A rendered template and what the reader should know about how it was chosen."""

    rendered: Rendered
    warnings: list[str]


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
    if renderer.resolve_locale(event_type, channel, locale) is None:
        raise LookupError(f"no {channel} template for {event_type}")
    note = locale_note(renderer, event_type, channel, locale)
    rendered = render_sample(renderer, event_type, channel, locale, entry.template_payload(payload),
                             timezone=timezone, message_id="msg-preview")
    return Preview(rendered, [note] if note else [])
