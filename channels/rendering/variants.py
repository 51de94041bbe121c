"""Template variants on disk, checked: what `herald templates check` says of a type's `variants`.

Layout: a variant's `templates` is a folder inside the type's folder (`templates/payment.due/variants/b/`) holding
files named as the type's own (`email.en.subject.j2`). The parts it has replace the type's in that locale; the
others are the type's own. So a variant that replaces a part of a channel must replace it in every locale the type
has for that channel: else the readers of the missing language get the control's text under the variant's name, and
the comparison is quietly wrong. The check says so, and renders every variant's channels in every shipped locale
with the sample data, as a send would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from channels.errors import RenderError
from channels.rendering.preview import SAMPLE_RECIPIENTS, SAMPLE_TIMEZONE, sample_context, structure_problems
from channels.rendering.render import CHANNEL_PARTS, OPTIONAL_PARTS, Renderer
from schemas.catalog import CatalogEntry


def _own_locales(folder: Path, channel: str) -> set[str]:
    """The locales a type's folder has a channel in (its first part's files)."""
    first = CHANNEL_PARTS.get(channel, ("text",))[0]
    return {p.name.split(".")[1] for p in folder.glob(f"{channel}.*.{first}.j2")}


def variant_file_problems(renderer: Renderer, event_type: str, entry: CatalogEntry) -> list[str]:
    """Missing folders, files that name no channel part, and parts replaced in some of the type's locales only."""
    problems: list[str] = []
    for name, variant in sorted(entry.variants.items()):
        if variant.templates is None:
            continue
        where = f"{event_type} variant {name}"
        folder = renderer.root / event_type / variant.templates
        files = sorted(p.name for p in folder.glob("*.j2")) if folder.is_dir() else []
        if not files:
            problems.append(f"{where}: no templates in {event_type}/{variant.templates}/")
            continue
        replaced: dict[str, set[tuple[str, str]]] = {}
        for file in files:
            pieces = file.split(".")
            channel = pieces[0]
            parts = (*CHANNEL_PARTS.get(channel, ()), *OPTIONAL_PARTS.get(channel, ()))
            if len(pieces) != 4 or pieces[2] not in parts:
                problems.append(f"{where}: {variant.templates}/{file} is not <channel>.<locale>.<part>.j2 of a "
                                "part the channel has")
                continue
            replaced.setdefault(channel, set()).add((pieces[1], pieces[2]))
        for channel, found in sorted(replaced.items()):
            for part in sorted({part for _, part in found}):
                for locale in sorted(_own_locales(renderer.root / event_type, channel)):
                    if (locale, part) not in found:
                        problems.append(f"{where}: no {variant.templates}/{channel}.{locale}.{part}.j2 (its {locale} "
                                        f"readers would get the type's own {part})")
    return problems


def render_variants(renderer: Renderer, event_type: str, entry: CatalogEntry,
                    locales: Sequence[str]) -> tuple[list[str], int]:
    """Every channel a variant replaces a part of, rendered in every locale for every sample recipient:
    (problems, renders)."""
    problems = variant_file_problems(renderer, event_type, entry)
    count = 0
    payload = entry.template_payload()
    for name, variant in sorted(entry.variants.items()):
        folder = renderer.root / event_type / variant.templates if variant.templates else None
        if folder is None or not folder.is_dir():
            continue
        channels = sorted({p.name.split(".")[0] for p in folder.glob("*.j2")} & set(CHANNEL_PARTS))
        for channel in channels:
            for locale in locales:
                for to in SAMPLE_RECIPIENTS:
                    try:
                        rendered = renderer.render(event_type, channel, locale=locale, timezone=SAMPLE_TIMEZONE,
                                                   context=sample_context(payload, to=to),
                                                   variant_folder=variant.templates)
                    except RenderError as exc:
                        problems.append(f"{event_type}/{channel}.{locale} variant {name}: {exc}")
                        break
                    count += 1
                    problems.extend(f"{event_type}/{channel}.{locale} variant {name}: {p}"
                                    for p in structure_problems(channel, rendered))
    return problems, count
