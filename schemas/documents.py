"""The payloads of document types: an invoice (`invoice.issued`), a due notice (`payment.due`) and an insurance
policy (`policy.issued`).

Amounts are decimals (JSON strings such as `"249.00"`, or numbers), never floats inside Herald. Herald computes
every line total, tax and total from the items (channels/rendering/documents.py); an amount the event states
itself (`total`, a notice's `amount`) is checked against the computed one, never printed in its place. Fields
not named here are ignored, so a payload can carry more (`attachments`, a link for the email…).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Amount = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6)]
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2)]
# VAT categories of EN 16931 (UNTDID 5305): S standard, Z zero-rated, E exempt, AE reverse charge, K intra-EU
# supply, G export outside the EU, O outside the scope of VAT.
TaxCategory = Literal["S", "Z", "E", "AE", "K", "G", "O"]
EXEMPT_CATEGORIES = frozenset({"E", "AE", "K", "G", "O"})  # these need a reason printed on the invoice
_BIC = r"^[A-Z]{6}[A-Z2-9][A-NP-Z0-9]([A-Z0-9]{3})?$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Party(_Model):
    """Who issues or receives a document: name, postal address and tax id, as printed in its address block."""

    name: Text = Field(description="Legal or personal name.", examples=["Acme Energía S.L."])
    address: list[Text] = Field(default_factory=list, max_length=3, description="Street lines.",
                                examples=[["Calle Mayor 1, 3º"]])
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=16)] | None = None
    city: Text | None = None
    country: Country = Field(description="ISO 3166-1 alpha-2 code.", examples=["ES"])
    tax_id: Text | None = Field(default=None, description="VAT or tax number (NIF, USt-IdNr.).",
                                examples=["ESB12345678"])


class Payment(_Model):
    """How to pay: a credit transfer to the issuer's account, or a direct debit from the customer's."""

    method: Literal["credit_transfer", "direct_debit"] = "credit_transfer"
    iban: str = Field(description="The issuer's account (credit transfer) or the customer's (direct debit, "
                      "printed masked).", examples=["ES9121000418450200051332"])
    bic: Annotated[str, StringConstraints(pattern=_BIC)] | None = None
    account_name: Text | None = Field(default=None, description="Account holder; the issuer when unset.")
    reference: Reference | None = Field(default=None, description="Remittance reference; the document's "
                                        "number when unset.")
    mandate_reference: Reference | None = Field(default=None, description="SEPA mandate (direct debit).")
    creditor_id: Reference | None = Field(default=None, description="SEPA creditor identifier (direct debit).")
    terms: LongText | None = Field(default=None, description="Payment terms in the issuer's words.",
                                   examples=["Net 30 days, no discount for early payment."])

    @field_validator("iban", mode="before")
    @classmethod
    def _iban(cls, value: object) -> object:
        """Spaces removed, upper case, and the ISO 13616 check digits verified."""
        if not isinstance(value, str):
            return value
        iban = "".join(value.split()).upper()
        if not (15 <= len(iban) <= 34 and iban[:2].isalpha() and iban[2:4].isdigit() and iban.isalnum()
                and iban.isascii()):
            raise ValueError("not an IBAN")
        digits = "".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])
        if int(digits) % 97 != 1:
            raise ValueError("IBAN check digits do not match")
        return iban


class LineItem(_Model):
    """One line of an invoice: what, how many, at what price and tax rate."""

    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    quantity: Annotated[Decimal, Field(gt=0, max_digits=15, decimal_places=4)] = Decimal(1)
    unit: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,3}$")] = Field(
        default="C62", description="UN/ECE Recommendation 20 code: C62 one, HUR hour, DAY day, KWH kilowatt hour, "
        "MON month…")
    unit_price: Amount = Field(description="Net price of one unit, before tax.", examples=["45.00"])
    tax_rate: Percent = Field(description="VAT rate in percent.", examples=["21"])
    tax_category: TaxCategory | None = Field(default=None, description="S when the rate is above 0, else Z "
                                             "when unset.")
    tax_exemption_reason: LongText | None = Field(default=None, description="Why no VAT is charged (required "
                                                  "for categories E, AE, K, G and O).")

    @model_validator(mode="after")
    def _category(self) -> LineItem:
        category = self.category
        if (category == "S") != (self.tax_rate > 0):
            raise ValueError("tax category S needs a rate above 0, and every other category a rate of 0")
        if category in EXEMPT_CATEGORIES and not self.tax_exemption_reason:
            raise ValueError(f"tax category {category} needs a tax_exemption_reason")
        return self

    @property
    def category(self) -> TaxCategory:
        return self.tax_category or ("S" if self.tax_rate > 0 else "Z")


class Period(_Model):
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end < self.start:
            raise ValueError("period ends before it starts")
        return self


class Invoice(_Model):
    """The payload of `invoice.issued`."""

    invoice_number: Reference = Field(examples=["INV-2026-0042"])
    issued_at: date = Field(examples=["2026-11-24"])
    due_date: date | None = Field(default=None, examples=["2026-12-24"])
    delivery_date: date | None = Field(default=None, description="When the goods or service were supplied.")
    period: Period | None = Field(default=None, description="The billing period (a utility's month).")
    currency: Currency = Field(examples=["EUR"])
    seller: Party
    buyer: Party
    lines: list[LineItem] = Field(min_length=1, max_length=500)
    payment: Payment | None = None
    buyer_reference: Reference | None = Field(default=None, description="The customer's own reference or "
                                              "purchase order.")
    note: LongText | None = Field(default=None, description="Printed under the totals.")
    total: Amount | None = Field(default=None, description="The event's own total with tax; the document is "
                                 "refused when it differs from the total of the lines.", examples=["249.00"])
    invoice_url: Annotated[str, StringConstraints(max_length=2000)] | None = None

    @model_validator(mode="after")
    def _dates(self) -> Invoice:
        if self.due_date is not None and self.due_date < self.issued_at:
            raise ValueError("due_date is before issued_at")
        return self


class OpenItem(_Model):
    """One amount a due notice asks for: an unpaid invoice, or a fee."""

    reference: Reference = Field(examples=["INV-2026-0042"])
    description: Text | None = None
    issued_at: date | None = None
    due_date: date | None = None
    amount: Amount


class DueNotice(_Model):
    """The payload of `payment.due`: what is owed, by when, and how to pay it."""

    invoice_number: Reference = Field(examples=["INV-2026-0042"])
    notice_number: Reference | None = None
    issued_at: date = Field(description="Date of the notice.", examples=["2026-12-17"])
    due_date: date
    currency: Currency
    amount: Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=6)] = Field(
        description="Amount due; must equal the sum of `items` when they are given.", examples=["249.00"])
    seller: Party
    buyer: Party
    items: list[OpenItem] = Field(default_factory=list, max_length=100, description="What makes up the amount; "
                                  "one item, the invoice itself, when empty.")
    payment: Payment | None = None
    pay_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    note: LongText | None = None


class Coverage(_Model):
    """One cover of a policy, with its own net premium."""

    description: Text = Field(examples=["Fire and water damage"])
    sum_insured: Amount | None = None
    deductible: Amount | None = None
    premium: Amount = Field(description="Net premium of this cover per year, before tax.")


class Policy(_Model):
    """The payload of `policy.issued`: an insurance policy's schedule (condiciones particulares)."""

    policy_number: Reference = Field(examples=["POL-7781-2026"])
    product: Text = Field(examples=["Home insurance"])
    issued_at: date
    starts_at: date
    ends_at: date
    currency: Currency
    insurer: Party
    policyholder: Party
    insured: LongText | None = Field(default=None, description="What or who is insured.",
                                     examples=["Dwelling at Calle Luna 5, 28004 Madrid"])
    coverages: list[Coverage] = Field(min_length=1, max_length=50)
    tax_rate: Percent = Field(default=Decimal(0), description="Insurance premium tax in percent.")
    payment_frequency: Literal["annual", "semiannual", "quarterly", "monthly"] = "annual"
    payment: Payment | None = None
    total: Amount | None = Field(default=None, description="The event's own yearly premium with tax; refused "
                                 "when it differs from the computed one.")
    policy_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    note: LongText | None = None

    @model_validator(mode="after")
    def _dates(self) -> Policy:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self
