"""Documents' numbers: computed from the items in Decimal, rounded half-up per line and per tax rate, and checked
against what the event states; payloads validated against schemas/documents.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from channels.errors import RenderError
from channels.rendering.documents import (
    DOCUMENT_INVALID,
    TOTAL_MISMATCH,
    compute_due_notice,
    compute_invoice,
    compute_policy,
    round_money,
)
from channels.rendering.render import BUNDLED_TEMPLATES, Renderer
from schemas.catalog import Catalog
from schemas.documents import DueNotice, Invoice, LineItem, Payment, Policy

pytestmark = pytest.mark.unit

CATALOG = Catalog.load(BUNDLED_TEMPLATES / "catalog.yaml")
INVOICE = CATALOG.types["invoice.issued"].sample
NOTICE = CATALOG.types["payment.due"].sample
POLICY = CATALOG.types["policy.issued"].sample


def invoice(lines: list[tuple[str, str, str]], currency: str = "EUR", **extra: Any) -> dict[str, Any]:
    """The bundled sample with other lines, given as (quantity, unit price, tax rate), and no stated total."""
    payload = {k: v for k, v in INVOICE.items() if k != "total"}
    payload["lines"] = [{"description": f"Item {n}", "quantity": q, "unit_price": p, "tax_rate": r}
                        for n, (q, p, r) in enumerate(lines, 1)]
    return {**payload, "currency": currency, **extra}


# (case, currency, lines, line amounts, [(rate, base, tax)], total)
ROUNDING_CASES: list[tuple[str, str, list[tuple[str, str, str]], list[str], list[tuple[str, str, str]], str]] = [
    ("line_half_up_not_bankers", "EUR", [("3", "0.335", "21")], ["1.01"], [("21", "1.01", "0.21")], "1.22"),
    ("tax_half_up_not_bankers", "EUR", [("1", "0.50", "21")], ["0.50"], [("21", "0.50", "0.11")], "0.61"),
    ("tax_rounded_once_per_rate_not_per_line", "EUR", [("1", "1.15", "10")] * 3, ["1.15"] * 3,
     [("10", "3.45", "0.35")], "3.80"),  # per line it would be 3 x 0.12 = 0.36
    ("each_rate_rounded_on_its_own", "EUR", [("1", "10.05", "21"), ("1", "10.05", "10")], ["10.05", "10.05"],
     [("21", "10.05", "2.11"), ("10", "10.05", "1.01")], "23.22"),
    ("fractional_quantity", "EUR", [("2.5", "19.99", "19")], ["49.98"], [("19", "49.98", "9.50")], "59.48"),
    ("unit_price_with_four_decimals", "EUR", [("1234", "0.1234", "21")], ["152.28"], [("21", "152.28", "31.98")],
     "184.26"),
    ("yen_has_no_minor_unit", "JPY", [("3", "333.5", "10")], ["1001"], [("10", "1001", "100")], "1101"),
    ("dinar_has_three_decimals", "KWD", [("1", "1.2345", "5")], ["1.235"], [("5", "1.235", "0.062")], "1.297"),
    ("zero_rated_line", "EUR", [("2", "9.99", "0"), ("1", "100", "21")], ["19.98", "100.00"],
     [("21", "100.00", "21.00"), ("0", "19.98", "0.00")], "140.98"),
]


@pytest.mark.parametrize(("currency", "lines", "nets", "taxes", "total"), [c[1:] for c in ROUNDING_CASES],
                         ids=[c[0] for c in ROUNDING_CASES])
def test_documents_amounts__rounding_is_half_up_per_line_and_per_tax_rate(
        currency: str, lines: list[tuple[str, str, str]], nets: list[str], taxes: list[tuple[str, str, str]],
        total: str) -> None:
    computed = compute_invoice(invoice(lines, currency))
    assert [line.net for line in computed.lines] == [Decimal(n) for n in nets]
    assert [(t.rate, t.base, t.tax) for t in computed.taxes] == [tuple(map(Decimal, t)) for t in taxes]
    assert computed.total == Decimal(total)
    assert computed.total == computed.net_total + computed.tax_total
    # Exact, with the currency's decimals: what the PDF and the XML print.
    assert str(computed.total) == total


@pytest.mark.parametrize(("value", "currency", "expected"), [
    ("0.125", "EUR", "0.13"), ("0.135", "EUR", "0.14"), ("0.145", "EUR", "0.15"), ("2.5", "JPY", "3"),
    ("3.5", "JPY", "4"), ("0.0005", "KWD", "0.001"), ("1.004999", "EUR", "1.00")])
def test_documents_amounts__round_money_is_half_up_to_the_minor_unit(value: str, currency: str,
                                                                      expected: str) -> None:
    assert str(round_money(Decimal(value), currency)) == expected


def test_documents_amounts__a_float_payload_is_read_as_its_decimal_text() -> None:
    computed = compute_invoice(invoice([("3", "0.1", "21")]) | {"lines": [
        {"description": "x", "quantity": 3, "unit_price": 0.1, "tax_rate": 21}]})
    assert computed.lines[0].net == Decimal("0.30") and computed.total == Decimal("0.36")


def test_documents_amounts__stated_total_that_matches_is_accepted() -> None:
    assert compute_invoice(INVOICE).total == Decimal(INVOICE["total"]) == Decimal("267.81")


@pytest.mark.parametrize("stated", ["267.80", "267.82", "267.805", "224.00"])
def test_documents_amounts__stated_total_that_differs_is_refused_with_both_amounts(stated: str) -> None:
    with pytest.raises(RenderError) as caught:
        compute_invoice({**INVOICE, "total": stated})
    assert caught.value.reason == TOTAL_MISMATCH and not caught.value.retriable
    assert stated in str(caught.value) and "267.81" in str(caught.value)


def test_documents_amounts__a_mismatch_fails_the_render_so_the_event_is_rejected() -> None:
    """What the delivery stage turns into `rejected` + a dead letter: a RenderError from any part."""
    with pytest.raises(RenderError) as caught:
        Renderer().render("invoice.issued", "email", locale="es-ES",
                          context={"brand": "Shop", "document_url": None, "to": {"name": "Ana"},
                                   "payload": {**INVOICE, "total": "300.00"}, "message_id": "m", "event_id": "e",
                                   "tenant": None})
    assert caught.value.reason == TOTAL_MISMATCH


def test_documents_amounts__due_notice_amount_must_equal_its_items() -> None:
    items = [{"reference": "INV-1", "amount": "100.00"}, {"reference": "FEE", "description": "Late fee",
                                                          "amount": "5.005"}]
    assert compute_due_notice({**NOTICE, "amount": "105.01", "items": items}).total == Decimal("105.01")
    with pytest.raises(RenderError) as caught:
        compute_due_notice({**NOTICE, "amount": "105.00", "items": items})
    assert caught.value.reason == TOTAL_MISMATCH


def test_documents_amounts__due_notice_without_items_asks_for_its_invoice() -> None:
    computed = compute_due_notice({k: v for k, v in NOTICE.items() if k != "items"})
    assert [(i.reference, a) for i, a in computed.rows] == [("INV-2026-0042", Decimal("267.81"))]


def test_documents_amounts__policy_premium_tax_and_installments_add_up() -> None:
    computed = compute_policy(POLICY)
    assert (computed.net_total, computed.tax, computed.total) == (Decimal("222.45"), Decimal("17.80"),
                                                                   Decimal("240.25"))
    assert (computed.installments, computed.first_installment, computed.installment) == (
        12, Decimal("20.03"), Decimal("20.02"))
    assert computed.first_installment + 11 * computed.installment == computed.total
    with pytest.raises(RenderError) as caught:
        compute_policy({**POLICY, "total": "240.24"})
    assert caught.value.reason == TOTAL_MISMATCH


def test_documents_amounts__invalid_payload_names_the_fields_never_their_values() -> None:
    payload = {**INVOICE, "buyer": None, "currency": "euro",
               "lines": [{"description": "SECRET-THING", "quantity": "-2", "unit_price": "9.99", "tax_rate": "21"}],
               "payment": {"iban": "ES00 SECRET 1234"}}
    with pytest.raises(RenderError) as caught:
        compute_invoice(payload)
    message = str(caught.value)
    assert caught.value.reason == DOCUMENT_INVALID
    for field in ("buyer", "currency", "lines.0.quantity", "payment.iban"):
        assert field in message
    assert "SECRET" not in message and "-2" not in message and "euro" not in message


def test_documents_amounts__unknown_currency_is_refused() -> None:
    with pytest.raises(RenderError) as caught:
        compute_invoice({**INVOICE, "currency": "XYZ", "total": None})
    assert caught.value.reason == DOCUMENT_INVALID and "currency" in str(caught.value)


@pytest.mark.parametrize(("line", "valid"), [
    ({"tax_rate": "21"}, True),
    ({"tax_rate": "0"}, True),  # zero-rated (Z) by default
    ({"tax_rate": "0", "tax_category": "S"}, False),
    ({"tax_rate": "21", "tax_category": "Z"}, False),
    ({"tax_rate": "0", "tax_category": "E"}, False),  # exempt needs a reason
    ({"tax_rate": "0", "tax_category": "E", "tax_exemption_reason": "Art. 20 LIVA"}, True),
    ({"tax_rate": "101"}, False),
    ({"tax_rate": "21", "quantity": "0"}, False),
    ({"tax_rate": "21", "unit_price": "-1"}, False),
], ids=["standard", "zero", "s-at-zero", "z-above-zero", "exempt-without-reason", "exempt", "rate-over-100",
        "no-quantity", "negative-price"])
def test_documents_amounts__tax_categories_and_line_limits(line: dict[str, Any], valid: bool) -> None:
    values = {"description": "x", "unit_price": "10", **line}
    if valid:
        LineItem.model_validate(values)
    else:
        with pytest.raises(ValidationError):
            LineItem.model_validate(values)


@pytest.mark.parametrize(("iban", "valid"), [("ES91 2100 0418 4502 0005 1332", True),
                                             ("de89370400440532013000", True),
                                             ("ES92 2100 0418 4502 0005 1332", False), ("ES91", False),
                                             ("ES91 2100 0418 4502 0005 133Ñ", False)])
def test_documents_amounts__iban_is_normalised_and_its_check_digits_verified(iban: str, valid: bool) -> None:
    if valid:
        assert " " not in Payment(iban=iban).iban and Payment(iban=iban).iban.isupper()
    else:
        with pytest.raises(ValidationError):
            Payment(iban=iban)


@pytest.mark.parametrize(("event_type", "model"), [("invoice.issued", Invoice), ("payment.due", DueNotice),
                                                   ("policy.issued", Policy)])
def test_documents_amounts__catalog_sample_satisfies_the_model_and_requires_what_it_requires(
        event_type: str, model: type[BaseModel]) -> None:
    entry = CATALOG.types[event_type]
    model.model_validate(entry.sample)
    # The router refuses an event missing a `required` field before any render: every field the model needs is
    # listed there.
    needed = {name for name, f in model.model_fields.items() if f.is_required()}
    assert needed <= set(entry.required)
