"""The numbers of a document, computed from its items as an accountant would, in `Decimal` (never float).

Rounding: half-up to the currency's minor unit (2 decimals for EUR, 0 for JPY, 3 for KWD), once per line (quantity
x unit price) and once per tax rate (the sum of that rate's line totals x the rate), as EN 16931 computes an
invoice's VAT breakdown; the total is the sum of those rounded amounts. An amount the event states itself must
equal the computed one: otherwise the event is refused (`RenderError`, reason `document_total_mismatch`) rather
than sending a document whose numbers do not add up. A payload that does not fit its model is refused with reason
`document_invalid`, naming the fields, never their values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, TypeVar

from babel.numbers import get_currency_precision, list_currencies
from pydantic import BaseModel, ValidationError

from channels.errors import RenderError
from schemas.documents import Coverage, DueNotice, Invoice, LineItem, OpenItem, Policy, TaxCategory

INSTALLMENTS = {"annual": 1, "semiannual": 2, "quarterly": 4, "monthly": 12}
DOCUMENT_INVALID = "document_invalid"
TOTAL_MISMATCH = "document_total_mismatch"

M = TypeVar("M", bound=BaseModel)


@lru_cache(maxsize=64)
def minor_unit(currency: str) -> Decimal:
    """`Decimal("0.01")` for EUR: the smallest amount the currency writes."""
    return Decimal(1).scaleb(-get_currency_precision(currency))


def round_money(value: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit: 1.005 EUR -> 1.01, 0.125 -> 0.13 (never banker's rounding)."""
    return value.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


@lru_cache(maxsize=1)
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def validate(model: type[M], payload: Mapping[str, Any], kind: str) -> M:
    """`payload` as `model`, or `RenderError(document_invalid)` naming each wrong field and what is wrong with it
    (pydantic's error type: `missing`, `greater_than`…), never a value (a payload holds personal data)."""
    try:
        found = model.model_validate(payload)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or kind}: {e['type']}"
                           for e in exc.errors()[:10])
        raise RenderError(f"{kind} payload invalid: {fields}", reason=DOCUMENT_INVALID) from None
    currency = getattr(found, "currency", None)
    if isinstance(currency, str) and currency not in _known_currencies():
        raise RenderError(f"{kind} payload invalid: currency: not an ISO 4217 code", reason=DOCUMENT_INVALID)
    return found


def _check_stated(kind: str, field: str, stated: Decimal | None, computed: Decimal) -> None:
    if stated is not None and stated != computed:
        raise RenderError(f"{kind} {field} {stated} differs from {computed} computed from its items",
                          reason=TOTAL_MISMATCH)


@dataclass(frozen=True, slots=True)
class Line:
    """A line as printed: the item and its rounded net amount."""

    position: int
    item: LineItem
    net: Decimal

    @property
    def description(self) -> str:
        return self.item.description

    @property
    def quantity(self) -> Decimal:
        return self.item.quantity

    @property
    def unit_price(self) -> Decimal:
        return self.item.unit_price

    @property
    def tax_rate(self) -> Decimal:
        return self.item.tax_rate


@dataclass(frozen=True, slots=True)
class TaxSubtotal:
    """One tax rate (and category) of a document: the net amount it applies to and the tax, rounded once."""

    category: TaxCategory
    rate: Decimal
    base: Decimal
    tax: Decimal
    exemption_reason: str | None


def tax_breakdown(lines: list[Line], currency: str) -> tuple[TaxSubtotal, ...]:
    """Per (category, rate), highest rate first: base = sum of the rounded line amounts; tax = base x rate,
    rounded once."""
    groups: dict[tuple[TaxCategory, Decimal], list[Line]] = {}
    for line in lines:
        groups.setdefault((line.item.category, line.item.tax_rate), []).append(line)
    found = []
    for (category, rate), members in groups.items():
        base = sum((m.net for m in members), Decimal(0))
        reason = next((m.item.tax_exemption_reason for m in members if m.item.tax_exemption_reason), None)
        found.append(TaxSubtotal(category, rate, base, round_money(base * rate / 100, currency), reason))
    return tuple(sorted(found, key=lambda t: (-t.rate, t.category)))


@dataclass(frozen=True, slots=True)
class ComputedInvoice:
    """An invoice with every amount worked out: what the templates and the Factur-X XML print."""

    invoice: Invoice
    lines: tuple[Line, ...]
    taxes: tuple[TaxSubtotal, ...]
    net_total: Decimal
    tax_total: Decimal
    total: Decimal

    @property
    def currency(self) -> str:
        return self.invoice.currency

    @property
    def payment_reference(self) -> str:
        payment = self.invoice.payment
        return (payment.reference if payment and payment.reference else None) or self.invoice.invoice_number

    @property
    def show_country(self) -> bool:
        """Whether the address blocks name their countries (only when the two differ, as on a letter)."""
        return self.invoice.seller.country != self.invoice.buyer.country


def compute_invoice(payload: Mapping[str, Any]) -> ComputedInvoice:
    """The payload as an invoice with its lines, taxes and totals; `RenderError` when invalid or its stated
    total differs."""
    invoice = validate(Invoice, payload, "invoice")
    currency = invoice.currency
    lines = tuple(Line(n, item, round_money(item.quantity * item.unit_price, currency))
                  for n, item in enumerate(invoice.lines, 1))
    taxes = tax_breakdown(list(lines), currency)
    net_total = sum((line.net for line in lines), Decimal(0))
    tax_total = sum((t.tax for t in taxes), Decimal(0))
    total = net_total + tax_total
    _check_stated("invoice", "total", invoice.total, total)
    return ComputedInvoice(invoice, lines, taxes, net_total, tax_total, total)


@dataclass(frozen=True, slots=True)
class ComputedNotice:
    """A due notice with its items rounded and their total checked against the amount due."""

    notice: DueNotice
    items: tuple[OpenItem, ...]
    amounts: tuple[Decimal, ...]
    total: Decimal

    @property
    def rows(self) -> list[tuple[OpenItem, Decimal]]:
        return list(zip(self.items, self.amounts, strict=True))

    @property
    def payment_reference(self) -> str:
        payment = self.notice.payment
        return (payment.reference if payment and payment.reference else None) or self.notice.invoice_number

    @property
    def show_country(self) -> bool:
        return self.notice.seller.country != self.notice.buyer.country

    @property
    def overdue_days(self) -> int:
        """Days past the due date on the notice's date (0 when not yet due)."""
        return max(0, (self.notice.issued_at - self.notice.due_date).days)


def compute_due_notice(payload: Mapping[str, Any]) -> ComputedNotice:
    notice = validate(DueNotice, payload, "due notice")
    items = tuple(notice.items) or (OpenItem(reference=notice.invoice_number, due_date=notice.due_date,
                                             amount=notice.amount),)
    amounts = tuple(round_money(i.amount, notice.currency) for i in items)
    total = sum(amounts, Decimal(0))
    _check_stated("due notice", "amount", notice.amount, total)
    return ComputedNotice(notice, items, amounts, total)


@dataclass(frozen=True, slots=True)
class ComputedPolicy:
    """A policy's premium: each cover's net premium, the premium tax, the yearly total and the installments."""

    policy: Policy
    premiums: tuple[Decimal, ...]
    net_total: Decimal
    tax: Decimal
    total: Decimal
    installments: int
    installment: Decimal
    first_installment: Decimal

    @property
    def rows(self) -> list[tuple[Coverage, Decimal]]:
        return list(zip(self.policy.coverages, self.premiums, strict=True))

    @property
    def payment_reference(self) -> str:
        payment = self.policy.payment
        return (payment.reference if payment and payment.reference else None) or self.policy.policy_number

    @property
    def show_country(self) -> bool:
        return self.policy.insurer.country != self.policy.policyholder.country


def compute_policy(payload: Mapping[str, Any]) -> ComputedPolicy:
    """Premiums rounded per cover, tax rounded once on their sum; installments of the yearly total rounded
    half-up, the first one taking the cents left over so they add up to the total exactly."""
    policy = validate(Policy, payload, "policy")
    currency = policy.currency
    premiums = tuple(round_money(c.premium, currency) for c in policy.coverages)
    net_total = sum(premiums, Decimal(0))
    tax = round_money(net_total * policy.tax_rate / 100, currency)
    total = net_total + tax
    _check_stated("policy", "total", policy.total, total)
    count = INSTALLMENTS[policy.payment_frequency]
    installment = round_money(total / count, currency)
    first = total - installment * (count - 1)
    return ComputedPolicy(policy, premiums, net_total, tax, total, count, installment, first)
