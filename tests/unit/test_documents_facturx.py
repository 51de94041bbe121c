"""Factur-X: the invoice PDF of a tenant that asked for it is a PDF/A-3 whose embedded CII XML passes the
`factur-x` library's own XSD check and says what the PDF says; everyone else gets the plain PDF."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from typing import Any

import facturx  # type: ignore[import-untyped]
import pytest
from lxml import etree  # type: ignore[import-untyped]
from pypdf import PdfReader

from channels.rendering.attachments import attachments_for
from channels.rendering.documents import compute_invoice
from channels.rendering.facturx import cii_xml, document_pdf, embedded_xml, parse_tenants, wants_facturx
from channels.rendering.pdf import find_unicode_font
from channels.rendering.render import BUNDLED_TEMPLATES, Rendered, Renderer
from consumers.state.documents import Documents
from consumers.state.kvstore import MemoryStore
from schemas.catalog import Catalog
from schemas.dispatch import Dispatch
from schemas.events import Recipient
from schemas.settings import Settings

pytestmark = pytest.mark.unit

CATALOG = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml")
INVOICE = CATALOG.types["invoice.issued"].sample
CREATED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
NS = {"rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
      "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}


def rendered(event_type: str = "invoice.issued", payload: dict[str, Any] | None = None,
             locale: str = "de-DE") -> Rendered:
    return Renderer().render(event_type, "email", locale=locale, timezone="Europe/Berlin",
                             context={"brand": "Shop", "document_url": None, "to": {"name": "Ana"},
                                      "payload": payload or CATALOG.types[event_type].sample, "message_id": "m",
                                      "event_id": "e", "tenant": "acme"})


def facturx_pdf(payload: dict[str, Any] = INVOICE, locale: str = "de-DE") -> bytes:
    [attachment] = attachments_for(rendered("invoice.issued", payload, locale), payload, title="Rechnung",
                                   created_at=CREATED, facturx=True)
    return attachment.content


def amounts(xml: bytes, path: str) -> list[Decimal]:
    return [Decimal(node.text) for node in etree.fromstring(xml).xpath(path, namespaces=NS)]


def check_arithmetic(xml: bytes) -> None:
    """EN 16931's rules on the totals (BR-CO-10, -13, -14, -15, -16, -17), which its schematron checks."""
    summation = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:"
    [lines_total] = amounts(xml, summation + "LineTotalAmount")
    [basis], [tax_total] = amounts(xml, summation + "TaxBasisTotalAmount"), amounts(xml, summation + "TaxTotalAmount")
    [grand], [due] = amounts(xml, summation + "GrandTotalAmount"), amounts(xml, summation + "DuePayableAmount")
    assert lines_total == sum(amounts(xml, "//ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount"))
    header_taxes = "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:"
    assert basis == lines_total == sum(amounts(xml, header_taxes + "BasisAmount"))
    assert tax_total == sum(amounts(xml, header_taxes + "CalculatedAmount"))
    assert grand == basis + tax_total == due


def test_documents_facturx__embedded_xml_validates_and_says_what_the_pdf_and_the_event_say() -> None:
    pdf = facturx_pdf()
    xml = embedded_xml(pdf)
    assert xml is not None
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True  # the library's own check
    assert facturx.get_level(etree.fromstring(xml), "factur-x") == "en16931"
    check_arithmetic(xml)
    computed = compute_invoice(INVOICE)
    [grand] = amounts(xml, "//ram:GrandTotalAmount")
    assert grand == computed.total == Decimal(INVOICE["total"])  # the event's own stated total
    assert amounts(xml, "//ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount") == [
        line.net for line in computed.lines]
    assert amounts(xml, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CalculatedAmount") == [
        t.tax for t in computed.taxes]
    # The same lines and amounts, as printed in the PDF in German format.
    text = PdfReader(BytesIO(pdf)).pages[0].extract_text().replace("\u00a0", " ")
    for line in INVOICE["lines"]:
        assert line["description"] in text
    euro = "€" if find_unicode_font() else "EUR"  # Helvetica has no euro sign
    for value in ("180,00", "25,00", "19,00", "43,05", "0,76", "267,81"):
        assert f"{value} {euro}" in text


def test_documents_facturx__pdf_is_marked_pdf_a_3_with_the_xml_as_its_data() -> None:
    reader = PdfReader(BytesIO(facturx_pdf()))
    root = reader.trailer["/Root"]
    assert "/OutputIntents" in root and root["/OutputIntents"][0]["/S"] == "/GTS_PDFA1"
    [spec] = [a.get_object() for a in root["/AF"]]
    assert (spec["/F"], spec["/AFRelationship"]) == ("factur-x.xml", "/Data")
    xmp = root["/Metadata"].get_object().get_data()
    assert b"<pdfaid:part>3</pdfaid:part>" in xmp and b"EN 16931" in xmp
    assert root["/Lang"] == "de" and reader.pdf_header == "%PDF-1.7"


def test_documents_facturx__same_event_same_bytes() -> None:
    """The library stamps the current time; Herald stamps the event's, so a resend attaches the same file."""
    pdf = facturx_pdf()
    assert pdf == facturx_pdf()
    reader = PdfReader(BytesIO(pdf))
    assert reader.metadata is not None and reader.metadata["/ModDate"] == "D:20261124100000+00'00'"
    assert b"2026-11-24T10:00:00+00:00" in reader.trailer["/Root"]["/Metadata"].get_object().get_data()


@pytest.mark.parametrize("changes", [
    {"payment": {"method": "direct_debit", "iban": "DE89370400440532013000", "mandate_reference": "M-1",
                 "creditor_id": "DE98ZZZ09999999999", "terms": "Wird am Fälligkeitstag abgebucht."}},
    {"lines": [{"description": "Export", "unit_price": "100", "tax_rate": "0", "tax_category": "G",
                "tax_exemption_reason": "Export outside the EU"},
               {"description": "Strom", "quantity": "312.5", "unit": "KWH", "unit_price": "0.3123",
                "tax_rate": "19"}],
     "buyer": {"name": "Globex GmbH", "country": "DE", "city": "Berlin", "tax_id": "DE123456789"},
     "period": {"start": "2026-10-01", "end": "2026-10-31"}, "delivery_date": "2026-10-31",
     "buyer_reference": "PO-1", "note": "Danke!", "total": None},
    {"currency": "JPY", "total": None, "payment": None},
], ids=["direct-debit", "exempt-line-kwh-period-and-vat-buyer", "yen-without-payment"])
def test_documents_facturx__variants_validate_against_the_xsd(changes: dict[str, Any]) -> None:
    xml = cii_xml(compute_invoice({**INVOICE, **changes}))
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    check_arithmetic(xml)


def test_documents_facturx__a_tenant_without_facturx_gets_a_plain_pdf() -> None:
    [plain] = attachments_for(rendered(), INVOICE, title="Rechnung", created_at=CREATED, facturx=False)
    assert embedded_xml(plain.content) is None
    assert "/AF" not in PdfReader(BytesIO(plain.content)).trailer["/Root"]


def test_documents_facturx__a_document_that_is_no_invoice_stays_plain_even_when_asked() -> None:
    notice = rendered("payment.due")
    pdf = document_pdf(notice["pdf"], CATALOG.types["payment.due"].sample, title="t", created_at=CREATED,
                       facturx=True)
    assert embedded_xml(pdf) is None


def dispatch(tenant: str | None, channel: str = "sms") -> Dispatch:
    return Dispatch(message_id=f"msg-{tenant}", event_id="evt-1", event_type="invoice.issued", event_time=CREATED,
                    channel=channel, category="transactional", priority="normal", idempotency_key="k",
                    tenant=tenant, to=Recipient(id="u1", phone="+34600111222", locale="de-DE"), payload=INVOICE,
                    expires_at=CREATED + timedelta(days=30))


async def test_documents_facturx__document_links_follow_the_tenant_setting() -> None:
    """The document behind an SMS's link is the email's attachment: Factur-X for acme, plain for globex."""
    docs = Documents(MemoryStore(), Renderer(), b"secret", "https://herald.example.com",
                     template_globals={"brand": "Shop", "document_url": None}, clock=lambda: CREATED,
                     facturx_tenants=Settings(facturx_tenants="acme").facturx_tenants)
    assert docs.facturx(dispatch("acme")) and not docs.facturx(dispatch("globex"))
    for tenant in ("acme", "globex"):
        await docs.remember(dispatch(tenant))
    acme, globex = await docs.pdf("msg-acme"), await docs.pdf("msg-globex")
    assert acme is not None and globex is not None
    assert embedded_xml(acme) is not None and embedded_xml(globex) is None


@pytest.mark.parametrize(("setting", "tenant", "expected"), [
    ("acme,globex", "globex", True), ("acme", "globex", False), (" acme , ", "acme", True), ("", "acme", False),
    ("acme", None, False), ("*", None, True), ("*", "anyone", True)])
def test_documents_facturx__tenants_setting(setting: str, tenant: str | None, expected: bool) -> None:
    assert wants_facturx(parse_tenants(setting), tenant) is expected


def test_documents_facturx__setting_reaches_worker_processes() -> None:
    assert Settings(facturx_tenants="acme,globex").as_env()["HERALD_FACTURX_TENANTS"] == "acme,globex"
    assert Settings().facturx_tenants == ""
