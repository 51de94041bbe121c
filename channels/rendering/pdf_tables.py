"""HTML `<table>`s of a PDF template, drawn with fpdf2's table API (`FPDF.table()`).

fpdf2's own HTML tables cannot top-align a cell, keep a table on one page, break a line inside a cell, make a
whole cell bold (`<td><b>Total</b></td>` raises) or give a column one alignment, and a document needs all of
that: an invoice's amounts must line up under their heading, its totals must not be split from each other, and
its address blocks must start at the same height. `TableBuilder` collects a table while the HTML is parsed and
draws it at `</table>`. It understands:

- `<table width="100%" align="left|center|right" border="0|1" cellpadding="1.5" valign="top" data-keep>`:
  no `border` draws a thin line between rows, `0` none, `1` every edge; `data-keep` moves the whole table to the
  next page rather than splitting it (totals, payment details).
- Leading rows of `<th>` cells are headings, repeated on top of every page the table continues on. A heading's
  `align` is the alignment of its column, so a cell needs no `align` of its own to line up under it.
- `<tr bgcolor align valign>`; `<td>`/`<th>` with `width` (a column's first one counts: % of the table, or weights),
  `align`, `valign`, `bgcolor`, `colspan`.
- In a cell: text (whitespace collapsed as in HTML), `<br>`, and one style for the whole cell: `<b>`/`<strong>`,
  `<i>`/`<em>`, `<u>`, `<font size="8" color="#6b7280">`. Two styles in one cell, or a table in a table, is a
  template error (fpdf2 has no way to draw either).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fpdf import FPDF
from fpdf.enums import Align, TableBordersLayout, VAlign, WrapMode
from fpdf.errors import FPDFException
from fpdf.fonts import FontFace
from fpdf.html import color_as_decimal

LINE_HEIGHT = 1.3  # times the font size
DEFAULT_PADDING = 1.2  # mm
EMPHASIS_TAGS = {"b": "B", "strong": "B", "i": "I", "em": "I", "u": "U"}
CELL_TAGS = ("td", "th")
_SPACES = re.compile(r"[ \t\r\n\f\v]+")


@dataclass(frozen=True, slots=True)
class CellStyle:
    """A cell's one style: emphasis letters (`B`, `I`, `U`), font size in points and color, where set."""

    emphasis: str = ""
    size: float | None = None
    color: str | None = None


@dataclass
class Cell:
    heading: bool
    attrs: dict[str, str]
    runs: list[tuple[str, CellStyle | None]] = field(default_factory=list)  # None: a <br>, style-neutral

    @property
    def colspan(self) -> int:
        try:
            return max(1, int(self.attrs.get("colspan", "1")))
        except ValueError:
            return 1

    def text(self) -> str:
        lines = "".join(text for text, _ in self.runs).split("\n")
        return "\n".join(" ".join(line.split()) for line in lines).strip("\n")

    def style(self) -> CellStyle:
        styles = {style for text, style in self.runs if style is not None and text.strip()}
        if len(styles) > 1:
            raise FPDFException("Unsupported: a <td> or <th> mixing text styles")
        return styles.pop() if styles else CellStyle()


@dataclass
class Row:
    attrs: dict[str, str]
    cells: list[Cell] = field(default_factory=list)


def _attrs(attrs: list[tuple[str, str | None]]) -> dict[str, str]:
    return {name.lower(): value or "" for name, value in attrs}


def _valign(text: str | None) -> VAlign | None:
    return VAlign.coerce(text.strip().upper()) if text and text.strip() else None


def _number(text: str | None, default: float) -> float:
    try:
        return float((text or "").strip().rstrip("%"))
    except ValueError:
        return default


class TableBuilder:
    """One `<table>` being parsed; `draw` lays it out at the current position."""

    def __init__(self, attrs: list[tuple[str, str | None]]) -> None:
        self.attrs = _attrs(attrs)
        self.rows: list[Row] = []
        self.cell: Cell | None = None
        self.emphasis: list[str] = []  # open inline tags inside the current cell, innermost last
        self.fonts: list[tuple[float | None, str | None]] = []

    # --- parsing -------------------------------------------------------------------------------------------

    def start(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            raise FPDFException("Unsupported: a <table> inside a <table>")
        if tag == "tr":
            self._close_cell()
            self.rows.append(Row(_attrs(attrs)))
        elif tag in CELL_TAGS:
            self._close_cell()
            if not self.rows:
                self.rows.append(Row({}))
            self.cell = Cell(tag == "th", _attrs(attrs))
            self.rows[-1].cells.append(self.cell)
        elif self.cell is None:
            return  # <thead>, <tbody>… and anything between cells: no content of their own
        elif tag == "br":
            self.cell.runs.append(("\n", None))
        elif tag in EMPHASIS_TAGS:
            self.emphasis.append(EMPHASIS_TAGS[tag])
        elif tag == "font":
            found = _attrs(attrs)
            size = _number(found.get("size"), 0) or None
            self.fonts.append((size, found.get("color") or None))

    def end(self, tag: str) -> None:
        if tag in CELL_TAGS or tag == "tr":
            self._close_cell()
        elif tag in EMPHASIS_TAGS and EMPHASIS_TAGS[tag] in self.emphasis:
            # the innermost open tag of that kind
            del self.emphasis[len(self.emphasis) - 1 - self.emphasis[::-1].index(EMPHASIS_TAGS[tag])]
        elif tag == "font" and self.fonts:
            self.fonts.pop()

    def data(self, text: str) -> None:
        if self.cell is not None:
            self.cell.runs.append((_SPACES.sub(" ", text), self._style()))

    def _style(self) -> CellStyle:
        size = next((s for s, _ in reversed(self.fonts) if s), None)
        color = next((c for _, c in reversed(self.fonts) if c), None)
        return CellStyle("".join(sorted(set(self.emphasis))), size, color)

    def _close_cell(self) -> None:
        self.cell = None
        self.emphasis.clear()
        self.fonts.clear()

    # --- drawing -------------------------------------------------------------------------------------------

    def draw(self, pdf: FPDF, font_size_pt: float) -> None:
        rows = [row for row in self.rows if row.cells]
        if not rows:
            return
        columns = max(sum(c.colspan for c in row.cells) for row in rows)
        headings = next((n for n, row in enumerate(rows) if not all(c.heading for c in row.cells)), len(rows))
        headings = min(headings, len(rows) - 1)  # a table of headings only is drawn as plain rows
        width = self._width(pdf)
        weights = self._weights(rows, columns)
        column_align = self._column_alignment(rows[:headings], columns)
        line_height = font_size_pt / pdf.k * LINE_HEIGHT
        padding = _number(self.attrs.get("cellpadding"), DEFAULT_PADDING)
        if "data-keep" in self.attrs:
            needed = self._height(pdf, rows, weights, width, line_height, padding)
            if pdf.will_page_break(needed) and needed < pdf.eph:
                pdf.add_page()
        border = self.attrs.get("border")
        layout = (TableBordersLayout.HORIZONTAL_LINES if border is None
                  else TableBordersLayout.NONE if _number(border, 0) <= 0 else TableBordersLayout.ALL)
        with pdf.table(width=width, col_widths=weights, align=Align.coerce(self.attrs.get("align") or "left"),
                       v_align=_valign(self.attrs.get("valign")) or VAlign.M, borders_layout=layout,
                       line_height=line_height, padding=padding, first_row_as_headings=headings > 0,
                       num_heading_rows=headings, repeat_headings=1, text_align="LEFT",
                       headings_style=FontFace(emphasis="BOLD"), wrapmode=WrapMode.WORD) as table:
            for row in rows:
                out = table.row(style=FontFace(fill_color=color_as_decimal(row.attrs.get("bgcolor"))),
                                v_align=_valign(row.attrs.get("valign")))
                position = 0
                for cell in row.cells:
                    style = cell.style()
                    align = (cell.attrs.get("align") or row.attrs.get("align") or column_align[position]
                             or ("CENTER" if cell.heading else "LEFT"))
                    out.cell(cell.text(), align=Align.coerce(align), v_align=_valign(cell.attrs.get("valign")),
                             colspan=cell.colspan,
                             style=FontFace(emphasis=style.emphasis or ("B" if cell.heading else ""),
                                            size_pt=style.size, color=color_as_decimal(style.color),
                                            fill_color=color_as_decimal(cell.attrs.get("bgcolor"))))
                    position += cell.colspan

    def _width(self, pdf: FPDF) -> float:
        found = self.attrs.get("width", "").strip()
        if found.endswith("%"):
            return pdf.epw * min(100.0, _number(found, 100)) / 100
        return min(pdf.epw, _number(found, 0) / pdf.k) if found else pdf.epw

    @staticmethod
    def _weights(rows: list[Row], columns: int) -> tuple[float, ...]:
        """Column widths from the first cell of each column with a `width` (% of the table, or relative weights),
        a cell spanning columns only where no single-column cell gives one; columns without one share the rest."""
        given: list[float | None] = [None] * columns
        for spanning in (False, True):  # a cell of one column says more than one spread over several
            for row in rows:
                position = 0
                for cell in row.cells:
                    width = _number(cell.attrs.get("width"), 0) or None
                    if width and (cell.colspan > 1) == spanning:
                        for column in range(position, min(position + cell.colspan, columns)):
                            given[column] = given[column] or width / cell.colspan
                    position += cell.colspan
        known = sum(w for w in given if w)
        missing = sum(1 for w in given if not w)
        rest = max(100.0 - known, 10.0 * missing) / missing if missing else 0
        return tuple(w or rest for w in given)

    @staticmethod
    def _column_alignment(headings: list[Row], columns: int) -> list[str | None]:
        aligned: list[str | None] = [None] * columns
        for row in headings:
            position = 0
            for cell in row.cells:
                if cell.attrs.get("align"):
                    aligned[position] = cell.attrs["align"]
                position += cell.colspan
        return aligned

    @staticmethod
    def _height(pdf: FPDF, rows: list[Row], weights: tuple[float, ...], width: float, line_height: float,
                padding: float) -> float:
        """The table's height, measured by laying each cell's text out at its column width (the current font)."""
        total = sum(weights)
        height = 0.0
        for row in rows:
            tallest, position = 1, 0
            for cell in row.cells:
                span = sum(weights[position:position + cell.colspan]) / total * width - 2 * padding
                lines = pdf.multi_cell(max(span, 1.0), line_height, cell.text() or " ", dry_run=True,
                                       output="LINES")
                tallest = max(tallest, len(lines) if isinstance(lines, list) else 1)
                position += cell.colspan
            height += tallest * line_height + 2 * padding
        return height
