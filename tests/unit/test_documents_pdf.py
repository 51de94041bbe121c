"""Document PDFs read back with pypdf: every line, tax and total of the event in the person's number format,
pagination with the table heading repeated, amounts aligned under their heading, tables kept together."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from io import BytesIO
from typing import Any

import pytest
from fpdf import FPDF
from pypdf import PdfReader

from channels.errors import RenderError
from channels.rendering.pdf import DEJAVU_FILES, find_unicode_font, html_to_pdf
from channels.rendering.render import BUNDLED_TEMPLATES, Rendered, Renderer
from schemas.catalog import Catalog

pytestmark = pytest.mark.unit
needs_dejavu = pytest.mark.skipif(find_unicode_font() is None, reason="needs DejaVu (Debian: fonts-dejavu-core): "
                                  "Helvetica has no euro sign")

CATALOG = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml")
CREATED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
RENDERER = Renderer()
# Amounts past a thousand, so the grouping separator shows: 1.234,50 € in Spanish and German.
LINES = [
    {"description": "Consultoría técnica (horas)", "quantity": "10", "unit": "HUR", "unit_price": "123.45",
     "tax_rate": "21"},
    {"description": "Licencia anual Pro", "quantity": "1", "unit_price": "5000", "tax_rate": "21"},
    {"description": "Libro «Guía de uso»", "quantity": "3", "unit_price": "19.99", "tax_rate": "4"},
]
EXPECTED = {  # line amounts, the two taxes, the total: 6294.47 net + 1309.25 + 2.40
    "es-ES": (["1.234,50 €", "5.000,00 €", "59,97 €"], ["1.309,25 €", "2,40 €"], "7.606,12 €", "Página 1 de 1"),
    "de-DE": (["1.234,50 €", "5.000,00 €", "59,97 €"], ["1.309,25 €", "2,40 €"], "7.606,12 €", "Seite 1 von 1"),
    "en-GB": (["€1,234.50", "€5,000.00", "€59.97"], ["€1,309.25", "€2.40"], "€7,606.12", "Page 1 of 1"),
}


def payload(event_type: str = "invoice.issued", **changes: Any) -> dict[str, Any]:
    return {**CATALOG.types[event_type].sample, **changes}


def render(event_type: str, data: dict[str, Any], locale: str) -> Rendered:
    return RENDERER.render(event_type, "email", locale=locale, timezone="Europe/Madrid",
                           context={"brand": "Herald Shop", "document_url": None, "to": {"name": "Ana"},
                                    "payload": data, "message_id": "msg-1", "event_id": "evt-1", "tenant": None})


def pdf_of(event_type: str, data: dict[str, Any], locale: str) -> bytes:
    rendered = render(event_type, data, locale)
    return html_to_pdf(rendered["pdf"], title=rendered["subject"], created_at=CREATED)


def pages(pdf: bytes) -> list[str]:
    """Each page's text, with babel's no-break spaces as plain ones."""
    return [p.extract_text().replace("\u00a0", " ").replace("\u202f", " ") for p in PdfReader(BytesIO(pdf)).pages]


@needs_dejavu
@pytest.mark.parametrize("locale", list(EXPECTED))
def test_documents_pdf__invoice_text_holds_every_line_tax_and_total_in_the_persons_format(locale: str) -> None:
    amounts, taxes, total, page = EXPECTED[locale]
    [text] = pages(pdf_of("invoice.issued", payload(lines=LINES, total="7606.12"), locale))
    for line, amount in zip(LINES, amounts, strict=True):
        assert line["description"] in text
        assert amount in text
    for tax in taxes:
        assert tax in text
    assert total in text and page in text
    assert "INV-2026-0042" in text and "Herald Shop S.L." in text and "Ana García López" in text
    assert "ES91 2100 0418 4502 0005 1332" in text  # how to pay: the IBAN in groups of four


@needs_dejavu
def test_documents_pdf__forty_lines_take_two_pages_with_the_heading_and_page_number_on_each() -> None:
    lines = [{"description": f"Mantenimiento {n:02d}", "quantity": "1", "unit_price": "10", "tax_rate": "21"}
             for n in range(1, 41)]
    first, second = pages(pdf_of("invoice.issued", payload(lines=lines, total="484.00"), "es-ES"))
    for text, number in ((first, "Página 1 de 2"), (second, "Página 2 de 2")):
        assert number in text
        assert all(heading in text for heading in ("Descripción", "Cantidad", "Precio unidad", "IVA", "Importe"))
    assert all(f"Mantenimiento {n:02d}" in first + second for n in range(1, 41))
    # The totals are one block, on the page the lines end on.
    assert "Base imponible" in second and "400,00 €" in second and "84,00 €" in second and "484,00 €" in second


@cache
def _measurer(bold: bool) -> FPDF:
    folder = find_unicode_font()
    assert folder is not None
    pdf = FPDF()
    pdf.add_font("DejaVu", "B" if bold else "", folder / DEJAVU_FILES["B" if bold else ""])
    return pdf


def _string_width(text: str, bold: bool, size: float) -> float:
    """Width in points, measured with the font the PDF uses."""
    pdf = _measurer(bold)
    pdf.set_font("DejaVu", "B" if bold else "", size)
    return pdf.get_string_width(text) * pdf.k


@needs_dejavu
def test_documents_pdf__amounts_line_up_under_their_headings() -> None:
    """The bug this replaced: the amount column out of line with its heading. Every numeric column's cells end
    where its heading ends (right-aligned)."""
    chunks: list[tuple[str, float, bool, float]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        if text.strip():
            name = str(font.get("/BaseFont")) if font else ""
            chunks.append((text.strip(), tm[4] * cm[0] + cm[4], "Bold" in name, size))

    pdf = pdf_of("invoice.issued", payload(lines=LINES, total="7606.12"), "es-ES")
    PdfReader(BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    found = {text.replace("\u00a0", " "): (text, x, bold, size) for text, x, bold, size in chunks}

    def right(text: str) -> float:  # where the text ends; the texts looked up are unique on this page
        drawn, x, bold, size = found[text]
        return x + _string_width(drawn, bold, size)

    for heading, cells in (("Cantidad", ["10", "1", "3"]), ("Precio unidad", ["123,45 €", "19,99 €"]),
                           ("IVA", ["21 %", "4 %"]), ("Importe", ["1.234,50 €", "59,97 €"])):
        for cell in cells:
            assert right(cell) == pytest.approx(right(heading), abs=0.6), (heading, cell)


@needs_dejavu
@pytest.mark.parametrize("locale", ["es-ES", "en-GB", "de-DE"])
@pytest.mark.parametrize(("event_type", "title", "amount"), [
    ("payment.due", {"es": "AVISO DE PAGO", "en": "PAYMENT REMINDER", "de": "ZAHLUNGSERINNERUNG"},
     {"es": "267,81 €", "en": "€267.81", "de": "267,81 €"}),
    ("policy.issued", {"es": "PÓLIZA DE SEGURO", "en": "INSURANCE POLICY", "de": "VERSICHERUNGSSCHEIN"},
     {"es": "240,25 €", "en": "€240.25", "de": "240,25 €"}),
])
def test_documents_pdf__due_notice_and_policy_in_each_language(event_type: str, title: dict[str, str],
                                                                amount: dict[str, str], locale: str) -> None:
    lang = locale[:2]
    [text] = pages(pdf_of(event_type, payload(event_type), locale))
    assert title[lang] in text and amount[lang] in text
    assert {"es": "Página 1 de 1", "en": "Page 1 of 1", "de": "Seite 1 von 1"}[lang] in text
    if event_type == "policy.issued":  # a debited account is masked
        assert "ES79 **** **** **** **** 6789" in text and "ES7921000813610123456789" not in text


@pytest.mark.parametrize("event_type", ["invoice.issued", "payment.due", "policy.issued"])
def test_documents_pdf__documents_render_with_the_core_fonts_too(event_type: str) -> None:
    """Where no DejaVu font is installed (the slim image): Helvetica, the euro sign as EUR, nothing refused."""
    rendered = render(event_type, payload(event_type), "de-DE")
    [text] = pages(html_to_pdf(rendered["pdf"], title=rendered["subject"], created_at=CREATED, font="core"))
    assert "Seite 1 von 1" in text and " EUR" in text and "€" not in text


def test_documents_pdf__payload_text_cannot_declare_or_draw_markup() -> None:
    """Payload values are escaped: a description that looks like a declaration or a table stays text."""
    evil = '<meta name="page-label" content="HACKED"></td></tr></table><table><tr><td>x'
    buyer = {**payload()["buyer"], "address": ["Calle <b>Mayor</b> & Hijos"]}
    [text] = pages(pdf_of("invoice.issued", payload(lines=[{**LINES[1], "description": evil}], buyer=buyer,
                                                    total=None), "es-ES"))
    assert "HACKED" in text and "Página 1 de 1" in text  # printed as the description, not obeyed
    assert "Calle <b>Mayor</b> & Hijos" in text


# --- the table layer (channels/rendering/pdf_tables.py) on its own -----------------------------------------

def _filler(lines: int) -> str:
    return "".join(f"<p>Párrafo {n}</p>" for n in range(lines))


def test_documents_pdf__a_data_keep_table_moves_whole_to_the_next_page() -> None:
    table = "<table {}>" + "".join(f"<tr><td>Fila {n}</td><td align='right'>{n},00 €</td></tr>" for n in range(6))
    kept = pages(html_to_pdf(_filler(32) + table.format("data-keep border='0'") + "</table>", title="t",
                             created_at=CREATED))
    split = pages(html_to_pdf(_filler(32) + table.format("border='0'") + "</table>", title="t",
                              created_at=CREATED))
    assert len(kept) == len(split) == 2
    assert all(f"Fila {n}" in kept[1] for n in range(6))
    assert any(f"Fila {n}" in split[0] for n in range(6)) and any(f"Fila {n}" in split[1] for n in range(6))


def test_documents_pdf__cells_take_a_whole_cell_style_and_line_breaks() -> None:
    drawn: dict[str, tuple[float, float, bool]] = {}

    def visit(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        if text.strip():
            bold = "Bold" in str(font.get("/BaseFont")) if font else False
            drawn[text.strip()] = (tm[4] * cm[0] + cm[4], tm[5] * cm[3] + cm[5], bold)

    pdf = html_to_pdf("<table><tr><th>A</th><th>B</th></tr><tr><td><b>Total</b></td>"
                      "<td>Calle Mayor 1<br>28013 Madrid</td></tr></table>", title="t", created_at=CREATED)
    PdfReader(BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    assert drawn["Total"][2] and not drawn["Calle Mayor 1"][2]  # `<b>` around a whole cell: bold, and only it
    (x1, y1, _), (x2, y2, _) = drawn["Calle Mayor 1"], drawn["28013 Madrid"]
    assert x1 == pytest.approx(x2) and y1 > y2  # `<br>`: the next line of the same cell


def test_documents_pdf__an_unclosed_table_is_still_drawn() -> None:
    [text] = pages(html_to_pdf("<p>Antes</p><table><tr><td>Dentro</td></tr>", title="t", created_at=CREATED))
    assert "Antes" in text and "Dentro" in text


@pytest.mark.parametrize("html", ["<table><tr><td><b>x</b> y</td></tr></table>",
                                  "<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table>",
                                  "<table valign='sideways'><tr><td>x</td></tr></table>"],
                         ids=["two-styles-in-a-cell", "nested-table", "unknown-valign"])
def test_documents_pdf__tables_fpdf2_cannot_draw_are_template_errors(html: str) -> None:
    with pytest.raises(RenderError) as caught:
        html_to_pdf(html, title="t", created_at=CREATED)
    assert caught.value.reason == "template_error"
