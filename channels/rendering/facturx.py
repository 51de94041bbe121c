"""Factur-X / ZUGFeRD: the invoice PDF as a PDF/A-3 carrying its EN 16931 data as CII XML (`factur-x.xml`).

A tenant named in `HERALD_FACTURX_TENANTS` gets it for every document that declares itself an invoice
(`<meta name="document" content="invoice">` in its PDF template); everyone else gets the plain PDF. The XML is
written here from the same computed invoice the PDF prints (channels/rendering/documents.py), so its lines,
taxes and totals are the PDF's; the `factur-x` library checks it against the official EN 16931 XSD and embeds it
(XMP metadata, /AF relationship `Data`). The schematron (business rules) needs a Saxon server, which Herald does
not call; the rules that matter for the amounts hold by construction (tests/unit/test_documents_facturx.py).

`factur-x` (and lxml, pypdf) is imported on first use, so a deployment without Factur-X tenants never loads it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from channels.errors import RenderError
from channels.rendering.documents import ComputedInvoice, compute_invoice
from channels.rendering.pdf import declarations, html_to_pdf
from schemas.documents import Party

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
NAMESPACES = {"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT}
EN16931 = "urn:cen.eu:en16931:2017"
INVOICE = "380"  # UNTDID 1001: commercial invoice
SEPA_CREDIT_TRANSFER, SEPA_DIRECT_DEBIT = "58", "59"  # UNTDID 4461
_VAT_NUMBER = re.compile(r"^[A-Z]{2}[0-9A-Z+*.]{2,}$")
# The library logs invoice data (parties, titles) at debug level and the XSD's complaint (quoting values) at
# error level; Herald reports a failure itself, without the values.
logging.getLogger("factur-x").setLevel(logging.CRITICAL)


def parse_tenants(setting: str) -> frozenset[str]:
    """`HERALD_FACTURX_TENANTS` (`acme,globex`; `*` for every event, with or without a tenant) as a set."""
    return frozenset(t.strip() for t in setting.split(",") if t.strip())


def wants_facturx(tenants: frozenset[str], tenant: str | None) -> bool:
    return "*" in tenants or (tenant is not None and tenant in tenants)


def _amount(value: Decimal) -> str:
    return format(value, "f")


def _day(value: date) -> str:
    return value.strftime("%Y%m%d")


def cii_xml(inv: ComputedInvoice) -> bytes:
    """The invoice as Cross Industry Invoice XML, Factur-X profile EN 16931; every amount is the computed one."""
    from lxml import etree  # type: ignore[import-untyped]  # (a factur-x dependency)

    def el(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
        prefix, _, name = tag.partition(":")
        node = etree.SubElement(parent, f"{{{NAMESPACES[prefix]}}}{name}", attrs)
        if text is not None:
            node.text = text
        return node

    def when(parent: Any, tag: str, day: date) -> None:
        el(el(parent, tag), "udt:DateTimeString", _day(day), format="102")

    def party(parent: Any, tag: str, who: Party, *, seller: bool) -> None:
        node = el(parent, tag)
        el(node, "ram:Name", who.name)
        address = el(node, "ram:PostalTradeAddress")
        if who.postal_code:
            el(address, "ram:PostcodeCode", who.postal_code)
        for line_tag, line in zip(("ram:LineOne", "ram:LineTwo", "ram:LineThree"), who.address, strict=False):
            el(address, line_tag, line)
        if who.city:
            el(address, "ram:CityName", who.city)
        el(address, "ram:CountryID", who.country)
        tax_id = (who.tax_id or "").replace(" ", "").upper()
        if tax_id and _VAT_NUMBER.match(tax_id):  # a VAT number (BT-31, BT-48) starts with its country's code
            el(el(node, "ram:SpecifiedTaxRegistration"), "ram:ID", tax_id, schemeID="VA")
        elif who.tax_id and seller:  # the seller's national tax number (BT-32)
            el(el(node, "ram:SpecifiedTaxRegistration"), "ram:ID", who.tax_id, schemeID="FC")

    i, currency = inv.invoice, inv.invoice.currency
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap=NAMESPACES)
    el(el(el(root, "rsm:ExchangedDocumentContext"), "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID",
       EN16931)
    document = el(root, "rsm:ExchangedDocument")
    el(document, "ram:ID", i.invoice_number)
    el(document, "ram:TypeCode", INVOICE)
    when(document, "ram:IssueDateTime", i.issued_at)
    if i.note:
        el(el(document, "ram:IncludedNote"), "ram:Content", i.note)
    transaction = el(root, "rsm:SupplyChainTradeTransaction")
    for line in inv.lines:
        item = el(transaction, "ram:IncludedSupplyChainTradeLineItem")
        el(el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", str(line.position))
        el(el(item, "ram:SpecifiedTradeProduct"), "ram:Name", line.description)
        el(el(el(item, "ram:SpecifiedLineTradeAgreement"), "ram:NetPriceProductTradePrice"), "ram:ChargeAmount",
           _amount(line.unit_price))
        el(el(item, "ram:SpecifiedLineTradeDelivery"), "ram:BilledQuantity", _amount(line.quantity),
           unitCode=line.item.unit)
        settlement = el(item, "ram:SpecifiedLineTradeSettlement")
        tax = el(settlement, "ram:ApplicableTradeTax")
        el(tax, "ram:TypeCode", "VAT")
        el(tax, "ram:CategoryCode", line.item.category)
        el(tax, "ram:RateApplicablePercent", _amount(line.tax_rate))
        el(el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation"), "ram:LineTotalAmount",
           _amount(line.net))
    agreement = el(transaction, "ram:ApplicableHeaderTradeAgreement")
    if i.buyer_reference:
        el(agreement, "ram:BuyerReference", i.buyer_reference)
    party(agreement, "ram:SellerTradeParty", i.seller, seller=True)
    party(agreement, "ram:BuyerTradeParty", i.buyer, seller=False)
    delivery = el(transaction, "ram:ApplicableHeaderTradeDelivery")
    if i.delivery_date:
        when(el(delivery, "ram:ActualDeliverySupplyChainEvent"), "ram:OccurrenceDateTime", i.delivery_date)
    settlement = el(transaction, "ram:ApplicableHeaderTradeSettlement")
    pay = i.payment
    if pay and pay.method == "direct_debit" and pay.creditor_id:
        el(settlement, "ram:CreditorReferenceID", pay.creditor_id)
    el(settlement, "ram:PaymentReference", inv.payment_reference)
    el(settlement, "ram:InvoiceCurrencyCode", currency)
    if pay:
        means = el(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
        if pay.method == "direct_debit":
            el(means, "ram:TypeCode", SEPA_DIRECT_DEBIT)
            el(el(means, "ram:PayerPartyDebtorFinancialAccount"), "ram:IBANID", pay.iban)
        else:
            el(means, "ram:TypeCode", SEPA_CREDIT_TRANSFER)
            account = el(means, "ram:PayeePartyCreditorFinancialAccount")
            el(account, "ram:IBANID", pay.iban)
            if pay.account_name:
                el(account, "ram:AccountName", pay.account_name)
            if pay.bic:
                el(el(means, "ram:PayeeSpecifiedCreditorFinancialInstitution"), "ram:BICID", pay.bic)
    for subtotal in inv.taxes:
        tax = el(settlement, "ram:ApplicableTradeTax")
        el(tax, "ram:CalculatedAmount", _amount(subtotal.tax))
        el(tax, "ram:TypeCode", "VAT")
        if subtotal.exemption_reason:
            el(tax, "ram:ExemptionReason", subtotal.exemption_reason)
        el(tax, "ram:BasisAmount", _amount(subtotal.base))
        el(tax, "ram:CategoryCode", subtotal.category)
        el(tax, "ram:RateApplicablePercent", _amount(subtotal.rate))
    if i.period:
        period = el(settlement, "ram:BillingSpecifiedPeriod")
        when(period, "ram:StartDateTime", i.period.start)
        when(period, "ram:EndDateTime", i.period.end)
    if i.due_date or (pay and (pay.terms or pay.mandate_reference)):
        terms = el(settlement, "ram:SpecifiedTradePaymentTerms")
        if pay and pay.terms:
            el(terms, "ram:Description", pay.terms)
        if i.due_date:
            when(terms, "ram:DueDateDateTime", i.due_date)
        if pay and pay.method == "direct_debit" and pay.mandate_reference:
            el(terms, "ram:DirectDebitMandateID", pay.mandate_reference)
    sums = el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    el(sums, "ram:LineTotalAmount", _amount(inv.net_total))
    el(sums, "ram:TaxBasisTotalAmount", _amount(inv.net_total))
    el(sums, "ram:TaxTotalAmount", _amount(inv.tax_total), currencyID=currency)
    el(sums, "ram:GrandTotalAmount", _amount(inv.total))
    el(sums, "ram:DuePayableAmount", _amount(inv.total))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def embed(pdf: bytes, xml: bytes, *, title: str, author: str, lang: str | None, created_at: datetime) -> bytes:
    """`pdf` as a Factur-X PDF/A-3 with `xml` embedded; raises `RenderError` when the XML fails the XSD."""
    import facturx  # type: ignore[import-untyped]

    metadata = {"author": author, "keywords": "Factur-X, Invoice", "title": title, "subject": title}
    try:
        out: bytes = facturx.generate_from_binary(pdf, xml, flavor="factur-x", level="en16931", check_xsd=True,
                                                  pdf_metadata=metadata, lang=lang)
    except Exception as exc:  # the library raises bare Exception for an invalid XML
        raise RenderError(f"factur-x: {type(exc).__name__}", reason="template_error") from None
    return _dated(out, created_at)


# The library stamps "now" in the PDF's info dictionary, its XMP metadata and the embedded file's parameters; the
# event's date goes there instead, so a resend attaches the same bytes (as for a plain PDF).
_XMP_DATE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def _dated(pdf: bytes, created_at: datetime) -> bytes:
    from io import BytesIO

    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject, StreamObject, TextStringObject

    when = created_at.astimezone(UTC) if created_at.tzinfo else created_at  # both formats below say UTC
    stamp = when.strftime("D:%Y%m%d%H%M%S+00'00'")
    xmp_stamp = when.strftime("%Y-%m-%dT%H:%M:%S+00:00").encode()
    writer = PdfWriter(clone_from=PdfReader(BytesIO(pdf)))
    # PDF/A-3 is built on PDF 1.7 (ISO 32000-1); the library means to raise fpdf2's 1.4 (through an attribute
    # pypdf no longer reads).
    writer.pdf_header = "%PDF-1.7"
    writer.add_metadata({"/CreationDate": stamp, "/ModDate": stamp})
    metadata = writer.root_object.get("/Metadata")
    if metadata is not None:
        stream = metadata.get_object()
        if isinstance(stream, StreamObject):
            stream.set_data(_XMP_DATE.sub(xmp_stamp, stream.get_data()))
    for _, spec in _embedded_files(writer):
        params = spec["/EF"]["/F"].get_object().get("/Params")
        if params is not None:
            params.get_object()[NameObject("/ModDate")] = TextStringObject(stamp)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _embedded_files(writer: Any) -> list[tuple[str, Any]]:
    names = writer.root_object.get("/Names", {}).get("/EmbeddedFiles", {}).get("/Names", [])
    return [(str(names[n]), names[n + 1].get_object()) for n in range(0, len(names) - 1, 2)]


def embedded_xml(pdf: bytes) -> bytes | None:
    """The `factur-x.xml` a PDF carries, or None."""
    import facturx

    filename, xml = facturx.get_xml_from_pdf(pdf, check_xsd=False)
    return xml if filename else None


def document_pdf(html: str, payload: Mapping[str, Any], *, title: str, created_at: datetime,
                 facturx: bool = False) -> bytes:
    """The PDF of a template's `pdf` part: Factur-X when asked for and the document is an invoice, else plain."""
    declared = declarations(html)
    if not facturx or declared.get("document") != "invoice":
        return html_to_pdf(html, title=title, created_at=created_at)
    invoice = compute_invoice(payload)
    pdf = html_to_pdf(html, title=title, created_at=created_at, pdfa=True)
    return embed(pdf, cii_xml(invoice), title=title, author=invoice.invoice.seller.name,
                 lang=declared.get("lang"), created_at=created_at)

