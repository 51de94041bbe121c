"""HTML (from an `email.<locale>.pdf.j2` template) to PDF with fpdf2: deterministic bytes, no network, no files.

fpdf2's core fonts (Helvetica…) are latin-1 only, so a DejaVu TrueType font is used when one is installed
(Debian's `fonts-dejavu-core`, on the python machine image, puts it under /usr/share/fonts/truetype/dejavu; no
Python package in the venv ships one). Without it the PDF falls back to Helvetica and characters outside
latin-1 become `?` (the euro sign becomes `EUR`). Characters the DejaVu font lacks (CJK…) also become `?`, so
fpdf2 never logs them as missing glyphs (its warning would quote message text).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from fpdf import FPDF
from fpdf.enums import TextEmphasis
from fpdf.errors import FPDFException
from fpdf.fonts import TTFFont
from fpdf.html import HTML2FPDF

from channels.errors import Rejected, RenderError

MAX_PDF_BYTES = 2 * 1024 * 1024
UNICODE_FAMILY = "DejaVu"
CORE_FAMILY = "helvetica"
# Regular, bold, italic, bold italic: fpdf2 needs one file per style that the HTML uses.
DEJAVU_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf",
                "BI": "DejaVuSans-BoldOblique.ttf"}
FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),  # Debian, Ubuntu
    Path("/usr/share/fonts/dejavu-sans-fonts"),  # Fedora
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),  # Arch
    Path("/usr/local/share/fonts"),
    Path("/Library/Fonts"),  # macOS, when installed by hand
)
# Latin-1 stand-ins for common characters the core fonts lack.
CORE_REPLACEMENTS = {"\u20ac": "EUR", "\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'",
                     "\u201c": '"', "\u201d": '"', "\u2022": "*", "\u2026": "...", "\u00a0": " ", "\u202f": " ",
                     "\u2009": " "}

FontChoice = Path | Literal["auto", "core"]


@cache
def find_unicode_font(dirs: tuple[Path, ...] = FONT_DIRS) -> Path | None:
    """The first folder holding the regular DejaVu Sans font, or None."""
    return next((d for d in dirs if (d / DEJAVU_FILES[""]).is_file()), None)


class _SafeHTML2FPDF(HTML2FPDF):
    """fpdf2's HTML renderer with `<img>` ignored (it would read local files or fetch URLs at send time) and
    text mapped to characters the chosen font can draw."""

    def __init__(self, pdf: FPDF, *args: Any, text_filter: Callable[[str], str] = str, **kwargs: Any) -> None:
        super().__init__(pdf, *args, **kwargs)
        self.text_filter = text_filter

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            return
        super().handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        super().handle_data(self.text_filter(data))


class _PDF(FPDF):
    """Loads italic DejaVu faces on first use: parsing one costs ~20 ms, and most documents never use italics."""

    HTML2FPDF_CLASS = _SafeHTML2FPDF

    def __init__(self, unicode_folder: Path | None) -> None:
        super().__init__()
        self.unicode_folder = unicode_folder
        if unicode_folder is not None:
            # Regular and bold up front: table headings look bold faces up without going through set_font.
            self._add_face("")
            self._add_face("B")

    def _add_face(self, face: str) -> None:
        assert self.unicode_folder is not None
        path = self.unicode_folder / DEJAVU_FILES[face]
        # A folder without the bold or italic file still renders: those styles reuse the regular face.
        self.add_font(UNICODE_FAMILY, face, path if path.is_file() else self.unicode_folder / DEJAVU_FILES[""])

    def set_font(self, family: str | None = None, style: str | TextEmphasis = "", size: float = 0) -> None:
        letters = style.style if isinstance(style, TextEmphasis) else style
        face = "".join(ch for ch in sorted(letters.upper()) if ch in "BI")
        if (self.unicode_folder is not None and (family or self.font_family).lower() == UNICODE_FAMILY.lower()
                and UNICODE_FAMILY.lower() + face not in self.fonts):
            self._add_face(face)
        super().set_font(family, style, size)


def _core_text(text: str) -> str:
    """Latin-1 only: known stand-ins first (the euro sign becomes "EUR"), then `?`."""
    out = "".join(CORE_REPLACEMENTS.get(ch, ch) for ch in text)
    return out.encode("latin-1", "replace").decode("latin-1")


def _font_text(codepoints: frozenset[int]) -> Callable[[str], str]:
    """Characters the font has a glyph for, else `?`."""

    def text_filter(text: str) -> str:
        return "".join(ch if ord(ch) in codepoints or ch in "\n\r\t" else "?" for ch in text)

    return text_filter


def html_to_pdf(html: str, *, title: str, created_at: datetime, font: FontChoice = "auto") -> bytes:
    """A PDF of `html`: identical bytes for identical input (`created_at` is the only date written into it).

    `font`: "auto" uses DejaVu Sans when installed, else Helvetica; "core" forces Helvetica; a folder path uses
    the DejaVu files in it. Raises `RenderError` when fpdf2 cannot lay the HTML out, and `Rejected`
    (`attachment_too_large`) above 2 MiB.
    """
    folder = find_unicode_font() if font == "auto" else None if font == "core" else font
    pdf = _PDF(folder)
    pdf.set_creation_date(created_at)
    pdf.set_creator("Herald")
    if folder is not None:
        family = UNICODE_FAMILY
        regular = pdf.fonts[UNICODE_FAMILY.lower()]
        assert isinstance(regular, TTFFont)  # added from a .ttf file by `_PDF`
        text_filter = _font_text(frozenset(regular.cmap))
    else:
        family, text_filter = CORE_FAMILY, _core_text
    pdf.set_title(text_filter(title))
    pdf.set_font(family, size=11)
    pdf.add_page()
    try:
        pdf.write_html(html, font_family=family, warn_on_tags_not_matching=False, text_filter=text_filter)
        data = bytes(pdf.output())
    except (FPDFException, NotImplementedError, AssertionError, AttributeError, ValueError, LookupError,
            TypeError) as exc:
        # fpdf2 refuses some layouts (nested tables, tags mixed in table cells…) with assorted exceptions:
        # the template is wrong, which is permanent.
        raise RenderError(f"pdf: {type(exc).__name__}", reason="template_error") from exc
    if len(data) > MAX_PDF_BYTES:
        raise Rejected("generated PDF is over 2 MiB", code="attachment_too_large")
    return data
