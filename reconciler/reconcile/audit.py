"""Invoice audit: a finalized month's invoice amounts against its expected cost. Pure.

Each invoice line item with an amount is compared with the expected cost of the usage lines
it bills (the same matching as the units check: its product name or usage type, and its
region), and the invoice's total with the month's expected total. A difference beyond the
tolerance plus the invoice's own rounding (half a minor unit per line item) is a
``cost_mismatch`` (critical); an effective rate (amount / units) off the declared one by more
than ``rate_tolerance`` is a ``rate_mismatch``. An invoice known only by its total (Akamai's
Invoicing API: invoices and credit memos) is compared in total. Months whose lines are not
all finalized, and invoice lines no rate prices, are not audited.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from reconciler.domain import (
    EXACT_CONTEXT,
    FindingKind,
    ItemCategory,
    LineStatus,
    Month,
    Observation,
    PlanItem,
    Severity,
    canonical_decimal,
    line_digest,
)
from reconciler.money import Money, minor_unit
from reconciler.reconcile.costing import AppliedCredit, CostLine, CostSheet, LineCost
from reconciler.reconcile.expectations import Evaluated
from reconciler.settings import Tolerance

ZERO = Decimal(0)
# An invoice line that is a whole invoice or credit memo (the Akamai Invoicing API's totals).
INVOICE_TOTAL = "invoice_total"
CREDIT_MEMO = "CREDIT_MEMO"  # how such a line names a credit memo (product name)
RATE_PLACES = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class InvoiceAmount:
    """One line item of a provider's invoice, with its amount."""

    source: str
    provider: str
    month: Month
    usage_type: str
    product_name: str
    region: str
    units: Decimal
    amount: Decimal
    currency: str

    @property
    def label(self) -> str:
        name = self.product_name or self.usage_type
        return f"{name} [{self.region}]" if self.region else name


def bills(invoice: InvoiceAmount, line: CostLine) -> bool:
    """Whether an invoice line item bills a (account-level) usage line."""
    if line.service or line.source != invoice.source or line.month != invoice.month:
        return False
    named = invoice.product_name in (line.usage_type, line.product_name) or (
        invoice.usage_type == line.usage_type
    )
    return named and (not invoice.region or line.region == invoice.region)


def audit_invoices(
    sheet: CostSheet,
    invoices: Sequence[InvoiceAmount],
    *,
    tolerance: Tolerance,
    rate_tolerance: Tolerance,
) -> list[Evaluated]:
    """``cost_mismatch`` and ``rate_mismatch`` findings of the finalized, invoiced months."""
    by_month: dict[tuple[str, Month], list[InvoiceAmount]] = defaultdict(list)
    for invoice in invoices:
        by_month[(invoice.source, invoice.month)].append(invoice)
    costs: dict[tuple[str, Month], list[LineCost]] = defaultdict(list)
    for cost in sheet.lines:
        costs[(cost.line.source, cost.line.month)].append(cost)
    found: list[Evaluated] = []
    totals = sheet.month_totals()
    for (source, month), items in sorted(by_month.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        month_costs = costs.get((source, month), [])
        if not month_costs or any(c.line.status is not LineStatus.FINALIZED for c in month_costs):
            continue
        all_priced = True
        for invoice in items:
            if invoice.usage_type == INVOICE_TOTAL:
                continue  # a whole invoice (Akamai): only its total is compared
            matched = [c for c in month_costs if bills(invoice, c.line)]
            if not matched or any(c.currency != invoice.currency for c in matched):
                all_priced = all_priced and invoice.amount <= 0
                continue
            found.extend(_line_findings(invoice, matched, tolerance, rate_tolerance))
        if all_priced:
            found.extend(_total_findings(source, month, items, totals, tolerance))
        if any(i.usage_type == INVOICE_TOTAL for i in items):
            declared = [c for c in sheet.credits if (c.source, c.month) == (source, month)]
            found.extend(_credit_findings(source, month, items, declared))
    return found


def _credit_findings(
    source: str, month: Month, items: list[InvoiceAmount], declared: Sequence[AppliedCredit]
) -> list[Evaluated]:
    """An invoiced month's credit memos (Akamai) against the credits the contract declares
    for it: a missing or different credit is named as such (beside the total's mismatch),
    within half a minor unit per credit memo."""
    memos = [
        i for i in items if i.usage_type == INVOICE_TOTAL and i.product_name.startswith(CREDIT_MEMO)
    ]
    credited: dict[str, Decimal] = defaultdict(lambda: ZERO)
    granted: dict[str, Decimal] = defaultdict(lambda: ZERO)
    counts: dict[str, int] = defaultdict(int)
    with localcontext(EXACT_CONTEXT):
        for memo in memos:
            credited[memo.currency] += memo.amount
            counts[memo.currency] += 1
        for credit in declared:
            granted[credit.currency] -= credit.amount
    found: list[Evaluated] = []
    for currency in sorted(set(credited) | set(granted)):
        with localcontext(EXACT_CONTEXT):
            difference = credited[currency] - granted[currency]
            allowance = minor_unit(currency) * max(counts[currency], 1) / 2
        if abs(difference) <= allowance:
            continue
        names = ", ".join(c.credit for c in declared if c.currency == currency) or "none"
        memo = InvoiceAmount(
            source, items[0].provider, month, "", "credit memos", "", ZERO,
            credited[currency], currency,
        )  # fmt: skip
        found.append(
            _finding(
                FindingKind.COST_MISMATCH,
                memo,
                None,
                Severity.WARNING,
                granted[currency],
                credited[currency],
                difference,
                f"credit memos of {month}: {Money(credited[currency], currency)} "
                f"({counts[currency]} credit memo{'s' if counts[currency] != 1 else ''}), "
                f"declared credits {Money(granted[currency], currency)} ({names}) "
                f"(difference {Money(difference, currency).display(signed=True)})",
            )
        )
    return found


def _allowance(tolerance: Tolerance, expected: Decimal, currency: str, items: int) -> Decimal:
    with localcontext(EXACT_CONTEXT):
        return tolerance.allowance(expected) + minor_unit(currency) * items / 2


def _line_findings(
    invoice: InvoiceAmount,
    matched: list[LineCost],
    tolerance: Tolerance,
    rate_tolerance: Tolerance,
) -> list[Evaluated]:
    found: list[Evaluated] = []
    currency = invoice.currency
    with localcontext(EXACT_CONTEXT):
        expected = sum((c.amount for c in matched), ZERO)
        quantity = sum((c.line.quantity for c in matched), ZERO)
        difference = invoice.amount - expected
    first = matched[0].line
    if abs(difference) > _allowance(tolerance, expected, currency, 1):
        found.append(
            _finding(
                FindingKind.COST_MISMATCH,
                invoice,
                first,
                Severity.CRITICAL,
                expected,
                invoice.amount,
                difference,
                f"invoice line {invoice.label} of {invoice.month}: invoiced "
                f"{Money(invoice.amount, currency)}, expected {Money(expected, currency)} "
                f"(difference {Money(difference, currency).display(signed=True)}); "
                f"expected by {matched[0].basis}",
            )
        )
    if invoice.units > 0 and quantity > 0:
        with localcontext(EXACT_CONTEXT):
            # Quotients: kept to a millionth of a unit price, enough to name a rate.
            invoiced_rate = (invoice.amount / invoice.units).quantize(RATE_PLACES)
            declared_rate = (expected / quantity).quantize(RATE_PLACES)
            rate_difference = invoiced_rate - declared_rate
        if abs(rate_difference) > rate_tolerance.allowance(declared_rate):
            with localcontext(EXACT_CONTEXT):
                impact = rate_difference * invoice.units
            found.append(
                _finding(
                    FindingKind.RATE_MISMATCH,
                    invoice,
                    first,
                    Severity.WARNING,
                    declared_rate,
                    invoiced_rate,
                    impact,
                    f"invoice line {invoice.label} of {invoice.month}: effective rate "
                    f"{_rate(invoiced_rate)} {currency}/{first.unit}, declared "
                    f"{_rate(declared_rate)} {currency}/{first.unit} ({matched[0].priced_by})",
                )
            )
    return found


def _rate(value: Decimal) -> str:
    return canonical_decimal(value)


def _total_findings(
    source: str,
    month: Month,
    items: list[InvoiceAmount],
    totals: dict[tuple[str, Month, str], Decimal],
    tolerance: Tolerance,
) -> list[Evaluated]:
    found: list[Evaluated] = []
    invoiced: dict[str, Decimal] = defaultdict(lambda: ZERO)
    counts: dict[str, int] = defaultdict(int)
    with localcontext(EXACT_CONTEXT):
        for invoice in items:
            invoiced[invoice.currency] += invoice.amount
            counts[invoice.currency] += 1
    for currency, amount in sorted(invoiced.items()):
        expected = totals.get((source, month, currency))
        if expected is None:
            continue
        with localcontext(EXACT_CONTEXT):
            difference = amount - expected
        if abs(difference) <= _allowance(tolerance, expected, currency, counts[currency]):
            continue
        total = InvoiceAmount(
            source, items[0].provider, month, "", "total", "", ZERO, amount, currency
        )
        found.append(
            _finding(
                FindingKind.COST_MISMATCH,
                total,
                None,
                Severity.CRITICAL,
                expected,
                amount,
                difference,
                f"invoice total of {month}: invoiced {Money(amount, currency)}, expected "
                f"{Money(expected, currency)} (difference "
                f"{Money(difference, currency).display(signed=True)})",
            )
        )
    return found


def _finding(
    kind: FindingKind,
    invoice: InvoiceAmount,
    line: CostLine | None,
    severity: Severity,
    expected: Decimal,
    observed: Decimal,
    impact: Decimal,
    message: str,
) -> Evaluated:
    per = f"/{line.unit}" if line is not None else "/unit"
    unit = invoice.currency if kind is FindingKind.COST_MISMATCH else invoice.currency + per
    status = LineStatus.FINALIZED
    item = PlanItem(
        category=ItemCategory.FINDING,
        kind=kind.value,
        severity=severity,
        fingerprint=line_digest(
            (
                "audit",
                kind.value,
                invoice.source,
                str(invoice.month),
                invoice.product_name,
                invoice.usage_type,
                invoice.region,
            )
        ),
        source=invoice.source,
        provider=invoice.provider,
        account=line.account if line else "",
        product=line.product if line else "",
        usage_type=line.usage_type if line else invoice.product_name,
        region=invoice.region,
        service="",
        month=invoice.month,
        before=Observation(expected, unit, status),
        after=Observation(observed, unit, status),
        message=message,
        product_name=line.product_name if line else "invoice",
        impact=impact,
        impact_currency=invoice.currency,
    )
    values = (kind.value, str(expected), str(observed), invoice.currency)
    return Evaluated(item, line_digest(values))
