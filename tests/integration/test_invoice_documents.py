"""Issue 16 item 7, black-box: invoice events in on Kafka, emails out over SMTP with the invoice PDF attached: its
text (read back with pypdf) holds every line, tax and total; Factur-X for the tenant that asked for it, a plain PDF
for the one that did not; an invoice whose stated total does not add up is rejected, never sent."""

from __future__ import annotations

from decimal import Decimal
from email.message import EmailMessage
from io import BytesIO
from typing import Any

import facturx  # type: ignore[import-untyped]
import pytest
from lxml import etree  # type: ignore[import-untyped]
from pypdf import PdfReader

from consumers.app import BUNDLED_CATALOG
from consumers.cli.publish import make_event
from schemas.catalog import Catalog
from schemas.status import Status
from tests.integration.harness import Stack, last_by_message

pytestmark = pytest.mark.integration

SAMPLE = Catalog.load(BUNDLED_CATALOG).types["invoice.issued"].sample
LINES = [
    {"description": "Suministro eléctrico octubre", "quantity": "312.5", "unit": "KWH", "unit_price": "0.1523",
     "tax_rate": "21"},
    {"description": "Término de potencia (31 días)", "quantity": "31", "unit": "DAY", "unit_price": "0.9874",
     "tax_rate": "21"},
    {"description": "Alquiler de contador", "quantity": "1", "unit_price": "0.81", "tax_rate": "21"},
    {"description": "Bono social (descuento)", "quantity": "1", "unit_price": "0", "tax_rate": "21"},
    {"description": "Servicio de mantenimiento", "quantity": "1", "unit_price": "9.90", "tax_rate": "10"},
]
# 47.59 + 30.61 + 0.81 + 0.00 at 21 % (tax 16.59 on 79.01), 9.90 at 10 % (tax 0.99): total 106.49
EXPECTED = ["47,59 €", "30,61 €", "0,81 €", "9,90 €", "16,59 €", "0,99 €", "106,49 €"]


def invoice_event(tenant: str, email: str, **changes: Any) -> dict[str, Any]:
    payload = {**SAMPLE, "invoice_number": f"F-{tenant}", "lines": LINES, "total": "106.49", **changes}
    to = {"id": f"user-{tenant}", "email": email, "name": "Ana", "locale": "es-ES", "timezone": "Europe/Madrid"}
    return make_event("invoice.issued", to, payload, source="it/billing", tenant=tenant)


def attached_pdf(mail: EmailMessage) -> bytes:
    [pdf] = list(mail.iter_attachments())
    assert pdf.get_content_type() == "application/pdf"
    content = pdf.get_content()
    assert isinstance(content, bytes)
    return content


async def test_invoice_documents__attached_pdf_holds_the_lines_and_factur_x_only_where_asked(stack: Stack) -> None:
    events = {"acme": invoice_event("acme", "ana@acme.example"),
              "globex": invoice_event("globex", "ana@globex.example"),
              "wrong_total": invoice_event("acme", "nobody@acme.example", total="106.48")}
    stack.start_worker(HERALD_FACTURX_TENANTS="acme")
    await stack.publish(events.values())

    def settled(statuses: list[Any]) -> bool:
        final = {s.event_id: s.status for s in last_by_message(statuses).values()}
        return all(final.get(e["id"]) in (Status.SENT, Status.DEAD_LETTERED) for e in events.values())

    await stack.wait_statuses(settled, timeout=90)
    by_event = {s.event_id: s for s in stack.statuses if s.status is Status.REJECTED}
    assert by_event[events["wrong_total"]["id"]].error == "document_total_mismatch"

    mails = {m["To"].addresses[0].addr_spec: m for m in stack.sink.snapshot()}
    assert set(mails) == {"ana@acme.example", "ana@globex.example"}  # the wrong total was never sent
    for address in mails:
        pdf = attached_pdf(mails[address])
        text = "\n".join(p.extract_text() for p in PdfReader(BytesIO(pdf)).pages).replace("\u00a0", " ")
        for line in LINES:
            assert line["description"] in text
        for amount in EXPECTED:
            assert amount in text or amount.replace("€", "EUR") in text  # EUR where no DejaVu font is installed
        assert "Página 1 de 1" in text

    filename, xml = facturx.get_xml_from_pdf(attached_pdf(mails["ana@acme.example"]), check_xsd=True)
    assert filename == "factur-x.xml" and facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    [grand] = etree.fromstring(xml).xpath("//ram:GrandTotalAmount", namespaces={
        "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"})
    assert Decimal(grand.text) == Decimal("106.49")
    assert not facturx.get_xml_from_pdf(attached_pdf(mails["ana@globex.example"]), check_xsd=False)[0]
