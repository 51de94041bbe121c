"""HTML (from an `email.<locale>.pdf.j2` template) to PDF with fpdf2: deterministic bytes, no network, no files.

Tables are drawn by channels/rendering/pdf_tables.py (aligned columns, headings repeated on every page, tables kept
on one page). A template may also declare, anywhere before its first page is full:
`<html lang="es">` (the PDF's language), `<meta name="page-label" content="Página {page} de {pages}">` (a page
number in the footer of every page), `<meta name="footer" content="…">` (a line at the left of that footer: the
issuer's legal details) and `<meta name="document" content="invoice">` (what the document is, for
channels/rendering/facturx.py).

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
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

from fpdf import FPDF
from fpdf.enums import OutputIntentSubType, TextEmphasis
from fpdf.errors import FPDFException
from fpdf.fonts import TextStyle, TTFFont
from fpdf.html import DEFAULT_TAG_STYLES, HTML2FPDF, color_as_decimal
from fpdf.output import PDFICCProfile

from channels.errors import Rejected, RenderError
from channels.rendering.pdf_tables import TableBuilder

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


FOOTER_COLOR = (107, 114, 128)
FOOTER_SIZE = 7.5
TABLE_LINE_COLOR = (209, 213, 219)
HEADING_COLOR = "#111827"  # fpdf2's default headings are dark red


class _SafeHTML2FPDF(HTML2FPDF):
    """fpdf2's HTML renderer with `<img>` ignored (it would read local files or fetch URLs at send time), text
    mapped to characters the chosen font can draw, tables drawn by `TableBuilder`, and the document's `<meta>`
    declarations (page label, footer line) handed to the PDF."""

    def __init__(self, pdf: FPDF, *args: Any, text_filter: Callable[[str], str] = str, **kwargs: Any) -> None:
        super().__init__(pdf, *args, **kwargs)
        self.text_filter = text_filter
        self.table_builder: TableBuilder | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            return
        if self.table_builder is not None:
            self.table_builder.start(tag, attrs)
        elif tag == "table":
            self._end_paragraph()
            self.table_builder = TableBuilder(attrs)
        elif tag == "meta":
            found = dict(attrs)
            if isinstance(self.pdf, _PDF) and found.get("content") is not None:
                self.pdf.declare(found.get("name") or "", self.text_filter(found["content"] or ""))
        elif tag == "html" and (lang := dict(attrs).get("lang")):
            self.pdf.set_lang(lang)
        else:
            super().handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        builder = self.table_builder
        if builder is None:
            super().handle_endtag(tag)
        elif tag != "table":
            builder.end(tag)
        else:
            self.table_builder = None
            # Cells start from the text's current font (a template's `<font size="9">` around the table).
            with self.pdf.local_context(draw_color=TABLE_LINE_COLOR, line_width=0.2, font_family=self.font_family,
                                        font_size_pt=self.font_size_pt, font_style=""):
                builder.draw(self.pdf, self.font_size_pt)
            self.pdf.set_x(self.pdf.l_margin)
            self.pdf.ln(self.font_size_pt / self.pdf.k * 0.6)

    def handle_data(self, data: str) -> None:
        if self.table_builder is not None:
            self.table_builder.data(self.text_filter(data))
        else:
            super().handle_data(self.text_filter(data))

    def feed(self, data: str) -> None:
        super().feed(data)
        if self.table_builder is not None:  # a table left open is drawn, as a browser would
            self.handle_endtag("table")


class _PDF(FPDF):
    """Loads italic DejaVu faces on first use: parsing one costs ~20 ms, and most documents never use italics."""

    HTML2FPDF_CLASS = _SafeHTML2FPDF

    def __init__(self, unicode_folder: Path | None) -> None:
        super().__init__()
        self.unicode_folder = unicode_folder
        self.page_label: str | None = None
        self.footer_text: str | None = None
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

    def declare(self, name: str, content: str) -> None:
        """A template's `<meta name content>`: the page label and the footer line are drawn by `footer`."""
        if name == "page-label":
            self.page_label = content
        elif name == "footer":
            self.footer_text = content

    def footer(self) -> None:
        if not self.page_label and not self.footer_text:
            return
        with self.local_context(font_size_pt=FOOTER_SIZE, font_style="", text_color=FOOTER_COLOR):
            self.set_y(-14)
            label = ""
            if self.page_label:
                # {pages} becomes fpdf2's alias, replaced by the page count when the document is closed.
                label = self.page_label.replace("{page}", str(self.page_no())).replace("{pages}", "{nb}")
            label_width = self.get_string_width(label.replace("{nb}", "999")) + 2 if label else 0
            if self.footer_text:
                self.multi_cell(self.epw - label_width, 3.5, self.footer_text, align="L", new_x="RIGHT",
                                new_y="TOP", max_line_height=3.5)
            if label:
                self.set_xy(self.l_margin + self.epw - label_width, -14)
                self.cell(label_width, 3.5, label, align="R")


HEADING_STYLES = {tag: style.replace(color=color_as_decimal(HEADING_COLOR)) for tag, style in DEFAULT_TAG_STYLES.items()
                  if tag in ("h1", "h2", "h3", "h4", "h5", "h6") and isinstance(style, TextStyle)}


class _Declarations(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and values.get("name") and values.get("content") is not None:
            self.found.setdefault(str(values["name"]), values["content"] or "")
        elif tag == "html" and values.get("lang"):
            self.found.setdefault("lang", values["lang"] or "")


def declarations(html: str) -> dict[str, str]:
    """A template's `<meta name content>` declarations (the first of each name) and `lang` from `<html lang>`."""
    parser = _Declarations()
    parser.feed(html)
    parser.close()
    return parser.found


def _core_text(text: str) -> str:
    """Latin-1 only: known stand-ins first (the euro sign becomes "EUR"), then `?`."""
    out = "".join(CORE_REPLACEMENTS.get(ch, ch) for ch in text)
    return out.encode("latin-1", "replace").decode("latin-1")


def _font_text(codepoints: frozenset[int]) -> Callable[[str], str]:
    """Characters the font has a glyph for, else `?`."""

    def text_filter(text: str) -> str:
        return "".join(ch if ord(ch) in codepoints or ch in "\n\r\t" else "?" for ch in text)

    return text_filter


@cache
def srgb_profile() -> bytes:
    """An sRGB ICC profile (littleCMS's, through Pillow), its creation date fixed so the PDF bytes are too."""
    from PIL import ImageCms

    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    icc[24:36] = bytes([0x07, 0xD0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0])  # 2000-01-01 00:00:00; the profile id is unset
    return bytes(icc)


def html_to_pdf(html: str, *, title: str, created_at: datetime, font: FontChoice = "auto",
                pdfa: bool = False) -> bytes:
    """A PDF of `html`: identical bytes for identical input (`created_at` is the only date written into it).

    `font`: "auto" uses DejaVu Sans when installed, else Helvetica; "core" forces Helvetica; a folder path uses
    the DejaVu files in it. `pdfa` adds the sRGB output intent PDF/A needs (channels/rendering/facturx.py adds the
    rest); PDF/A also needs every font embedded, which only the DejaVu fonts are. Raises `RenderError` when fpdf2
    cannot lay the HTML out, and `Rejected` (`attachment_too_large`) above 2 MiB.
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
    if pdfa:
        pdf.add_output_intent(OutputIntentSubType.PDFA, "sRGB", "IEC 61966-2-1:1999", "http://www.color.org",
                              PDFICCProfile(contents=srgb_profile(), n=3, alternate="DeviceRGB"),
                              "sRGB IEC61966-2.1")
    pdf.set_font(family, size=11)
    pdf.add_page()
    try:
        pdf.write_html(html, font_family=family, warn_on_tags_not_matching=False, text_filter=text_filter,
                       tag_styles=HEADING_STYLES)
        data = bytes(pdf.output())
    except (FPDFException, NotImplementedError, AssertionError, AttributeError, ValueError, LookupError,
            TypeError) as exc:
        # fpdf2 refuses some layouts (nested tables, tags mixed in table cells…) with assorted exceptions:
        # the template is wrong, which is permanent.
        raise RenderError(f"pdf: {type(exc).__name__}", reason="template_error") from exc
    if len(data) > MAX_PDF_BYTES:
        raise Rejected("generated PDF is over 2 MiB", code="attachment_too_large")
    return data
