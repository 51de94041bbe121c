"""Templates rendered with the catalog's sample data: what `herald templates check|preview` and the console's
template pages show. One type on one channel in one locale, every channel of a type, the locales a type has, SMS
segment facts and the PDF document. Sample data only: nothing here ever sees a real recipient or payload.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.errors import RenderError
from channels.rendering.attachments import DEFAULT_CREATED_AT
from channels.rendering.pdf import html_to_pdf
from channels.rendering.render import DEFAULT_FOLDER, Rendered, Renderer
from channels.segments import sms_segments
from schemas.catalog import CatalogEntry

SAMPLE_RECIPIENTS: tuple[dict[str, Any], ...] = ({"id": "sample-1", "name": "Ana"}, {"id": "sample-2", "name": None})
SAMPLE_TIMEZONE = "Europe/Madrid"
SAMPLE_IDS = {"message_id": "msg-sample", "event_id": "evt-sample", "tenant": None}
# Parts that machines read: they must parse as JSON.
STRUCTURED_PARTS = {"webhook": "json", "whatsapp": "template"}


def shipped_locales(renderer: Renderer) -> list[str]:
    """Locales that have at least one template file."""
    return sorted({p.name.split(".")[1] for p in renderer.root.glob("*/*.j2") if not p.parent.name.startswith("_")})


def known_locale(tag: str) -> bool:
    """Whether babel knows the tag (`es-ES`, `pt_BR`, `de`); `xx-YY` it does not."""
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(tag.replace("_", "-"), sep="-")
    except (ValueError, UnknownLocaleError):
        return False
    return True


def type_channels(entry: CatalogEntry) -> list[str]:
    """A type's channels in fallback order, then the webhook, whose shared template serves every type."""
    return list(dict.fromkeys([c.value for c in entry.channels] + ["webhook"]))


def sample_context(payload: Mapping[str, Any], *, to: Mapping[str, Any] | None = None,
                   template_globals: Mapping[str, Any] | None = None, **ids: Any) -> dict[str, Any]:
    """The variables a send gives a template, filled with sample values (`ids` overrides `SAMPLE_IDS`)."""
    return {**(template_globals or {}), **SAMPLE_IDS, **ids, "to": dict(to or SAMPLE_RECIPIENTS[0]),
            "payload": payload}


def render_sample(renderer: Renderer, event_type: str, channel: str, locale: str, payload: Mapping[str, Any], *,
                  timezone: str = SAMPLE_TIMEZONE, to: Mapping[str, Any] | None = None,
                  template_globals: Mapping[str, Any] | None = None, **ids: Any) -> Rendered:
    """Render one type on one channel as a send would, with sample data; raises `RenderError` where it fails."""
    return renderer.render(event_type, channel, locale=locale, timezone=timezone,
                           context=sample_context(payload, to=to, template_globals=template_globals, **ids))


def structure_problems(channel: str, rendered: Rendered) -> list[str]:
    """Parts that must be machine-readable, checked as such."""
    part = STRUCTURED_PARTS.get(channel)
    if part is None or part not in rendered.parts:
        return []
    try:
        json.loads(rendered[part])
    except ValueError:
        return [f"{part} part is not valid JSON"]
    return []


def locale_note(renderer: Renderer, event_type: str, channel: str, locale: str) -> str | None:
    """What a reader should know about the locale a template was chosen in (None when it is the one asked for)."""
    found = renderer.resolve(event_type, channel, locale)
    if found is None:
        return None
    folder, chosen = found
    if not known_locale(locale):
        return f"unknown locale {locale!r}; rendered in {chosen}"
    if folder == DEFAULT_FOLDER:  # the shared template (webhook JSON) is the same in every language
        return None
    if chosen.split("-")[0] != locale.replace("_", "-").split("-")[0].lower():
        return f"no {locale} template for {event_type}/{channel}; rendered in {chosen}"
    return None


@dataclass(frozen=True, slots=True)
class SmsFacts:
    """How an SMS text goes out: GSM-7 or UCS-2, in how many segments, and its length in characters."""

    encoding: str
    segments: int
    characters: int


def sms_facts(text: str) -> SmsFacts:
    encoding, segments = sms_segments(text)
    return SmsFacts(encoding, segments, len(text))


@dataclass(frozen=True)
class ChannelPreview:
    """One channel of a type rendered with sample data: the parts, or the `RenderError` message where it failed."""

    channel: str
    rendered: Rendered | None
    error: str | None = None
    note: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def sms(self) -> SmsFacts | None:
        """Segment facts of an SMS (None on other channels, or when it did not render)."""
        if self.channel != "sms" or self.rendered is None:
            return None
        return sms_facts(self.rendered["text"])

    @property
    def has_document(self) -> bool:
        return self.rendered is not None and "pdf" in self.rendered.parts


def preview_channels(renderer: Renderer, event_type: str, entry: CatalogEntry, locale: str, *,
                     timezone: str = "UTC", template_globals: Mapping[str, Any] | None = None,
                     **ids: Any) -> list[ChannelPreview]:
    """Every channel of a type rendered in `locale`; a channel that fails says why and the others still render."""
    previews = []
    for channel in type_channels(entry):
        note = locale_note(renderer, event_type, channel, locale)
        try:
            rendered = render_sample(renderer, event_type, channel, locale, entry.template_payload(), timezone=timezone,
                                     template_globals=template_globals, **ids)
        except RenderError as exc:
            previews.append(ChannelPreview(channel, None, error=str(exc), note=note))
            continue
        previews.append(ChannelPreview(channel, rendered, note=note,
                                       problems=tuple(structure_problems(channel, rendered))))
    return previews


def sample_document(rendered: Rendered, created_at: datetime = DEFAULT_CREATED_AT) -> bytes:
    """The PDF an email with a `pdf` part attaches; `RenderError` where fpdf2 cannot lay it out."""
    return html_to_pdf(rendered["pdf"], title=rendered["subject"], created_at=created_at)


@dataclass(frozen=True, slots=True)
class LocaleCell:
    """One shipped locale of a type's channel: the locale it renders in, and the error where it fails."""

    locale: str
    rendered_in: str | None
    shared: bool = False  # from `_default/` (one template for every type)
    error: str | None = None

    @property
    def state(self) -> str:
        """ok (its own template), fallback (another locale's), error (fails, or no template at all)."""
        if self.error is not None or self.rendered_in is None:
            return "error"
        return "ok" if self.shared or self.rendered_in == self.locale else "fallback"


@dataclass
class MatrixRow:
    """One type of the catalog: each of its channels' locale cells (a channel it does not use has none)."""

    event_type: str
    channels: dict[str, list[LocaleCell]] = field(default_factory=dict)

    @property
    def failing(self) -> bool:
        return any(cell.state == "error" for cells in self.channels.values() for cell in cells)


def matrix_row(renderer: Renderer, event_type: str, entry: CatalogEntry, locales: list[str], *,
               template_globals: Mapping[str, Any] | None = None) -> MatrixRow:
    """Render every channel of a type in every shipped locale, for both sample recipients (one has no name)."""
    row = MatrixRow(event_type)
    for channel in type_channels(entry):
        cells = []
        for locale in locales:
            found = renderer.resolve(event_type, channel, locale)
            if found is None:
                cells.append(LocaleCell(locale, None, error=f"no {channel} template for {locale} or any fallback"))
                continue
            error = None
            for to in SAMPLE_RECIPIENTS:
                try:
                    rendered = render_sample(renderer, event_type, channel, locale, entry.template_payload(), to=to,
                                             template_globals=template_globals)
                except RenderError as exc:
                    error = str(exc)
                    break
                if problems := structure_problems(channel, rendered):
                    error = "; ".join(problems)
                    break
            cells.append(LocaleCell(locale, found[1], shared=found[0] == DEFAULT_FOLDER, error=error))
        row.channels[channel] = cells
    return row

