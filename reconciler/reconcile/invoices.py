"""A provider's own invoice against the usage it bills. Pure: no I/O, no clock.

An invoice line item is **usage** when it names a product and a usage type and carries units;
anything else (a fee, a tax, a credit with no usage type) is kept and shown as what it is, and
never compared with usage. Usage items are matched to the month's account-level usage lines
by product (Fastly's ``product_name`` is the usage type's name), usage type and region, and
summed per unit: price tiers and credits of one usage type are several items of one total.
Units are compared after normalization (case, spaces, the synonyms in ``UNIT_SYNONYMS``); an
invoice total in one unit is never compared with usage in another. Only an invoice whose
billing period is the month (a whole calendar month) is compared with that month's usage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
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
    line_digest,
)
from reconciler.reconcile.expectations import Evaluated, MonthLine, matches
from reconciler.reconcile.measures import MeasureKind
from reconciler.settings import ExpectationSettings, Tolerance

# Spellings of one unit (after case folding and trimming) → the unit they mean.
UNIT_SYNONYMS: dict[str, str] = {
    "gb": "gb",
    "gigabyte": "gb",
    "gigabytes": "gb",
    "gib": "gib",
    "tb": "tb",
    "terabyte": "tb",
    "terabytes": "tb",
    "mb": "mb",
    "megabyte": "mb",
    "megabytes": "mb",
    "unit": "unit",
    "units": "unit",
    "count": "unit",
    "hits": "hits",
    "hit": "hits",
    "requests": "requests",
    "request": "requests",
    "mbps": "mbps",
}


def normalized_unit(unit: str) -> str:
    """The unit a spelling means: ``GB``, ``gb`` and ``Gigabytes`` are one unit."""
    folded = " ".join(unit.split()).casefold()
    return UNIT_SYNONYMS.get(folded, folded)


@dataclass(frozen=True)
class InvoiceLine:
    """One line item of a provider's posted invoice, as the provider wrote it."""

    source: str
    account: str
    month: Month
    usage_type: str
    product_name: str
    region: str
    units: Decimal | None
    amount: Decimal | None
    currency: str | None
    invoice_id: str = ""
    position: int = 0
    description: str = ""
    unit: str | None = None  # the item's own unit, when the provider states one
    billing_start: date | None = None
    billing_end: date | None = None

    @property
    def is_usage(self) -> bool:
        """Usage to reconcile; else a fee, tax or credit kept as it is."""
        return bool(self.product_name and self.usage_type and self.units is not None)

    @property
    def covers_month(self) -> bool:
        """Whether its invoice bills exactly its month (unknown period: read as its month)."""
        if self.billing_start is None or self.billing_end is None:
            return True
        return (
            self.billing_start <= self.month.first_day
            and self.month.last_day <= self.billing_end <= (self.month + 1).first_day
        )

    @property
    def kind(self) -> str:
        """``usage``, ``not usage`` (fee, tax, credit) or ``other period`` (not compared)."""
        if not self.is_usage:
            return "not usage"
        return "usage" if self.covers_month else "other period"


@dataclass
class _InvoiceTotal:
    units: Decimal
    items: int
    spelling: str | None


def invoice_totals(
    items: Sequence[InvoiceLine],
) -> dict[tuple[str, Month, str, str, str | None], _InvoiceTotal]:
    """Usage items summed by (source, month, product name, region, normalized unit)."""
    totals: dict[tuple[str, Month, str, str, str | None], _InvoiceTotal] = {}
    with localcontext(EXACT_CONTEXT):
        for item in items:
            if item.kind != "usage" or item.units is None:
                continue
            unit = normalized_unit(item.unit) if item.unit else None
            key = (item.source, item.month, item.product_name, item.region, unit)
            total = totals.get(key)
            if total is None:
                totals[key] = _InvoiceTotal(item.units, 1, item.unit)
            else:
                total.units += item.units
                total.items += 1
    return totals


def _matching_usage(
    lines: Sequence[MonthLine], product_name: str, region: str, usage_types: set[str]
) -> list[MonthLine]:
    return [
        line
        for line in lines
        if (product_name in (line.usage_type, line.product_name) or line.usage_type in usage_types)
        and (not region or line.region.casefold() == region.casefold())
    ]


def check_provider_invoices(
    lines: Sequence[MonthLine],
    invoice_lines: Sequence[InvoiceLine],
    expectations: Sequence[ExpectationSettings] = (),
) -> list[Evaluated]:
    """Finalized account-level totals against the units on the provider's own invoice.

    The tolerance is that of the first expectation matching the usage lines, else none.
    """
    by_month: dict[tuple[str, Month], list[MonthLine]] = defaultdict(list)
    for line in lines:
        if not line.service:
            by_month[(line.source, line.month)].append(line)
    usage_types: dict[tuple[str, Month, str, str], set[str]] = defaultdict(set)
    for item in invoice_lines:
        usage_types[(item.source, item.month, item.product_name, item.region)].add(item.usage_type)
    found: list[Evaluated] = []
    for (source, month, product_name, region, unit), total in sorted(
        invoice_totals(invoice_lines).items(), key=lambda kv: str(kv[0])
    ):
        candidates = _matching_usage(
            by_month.get((source, month), []),
            product_name,
            region,
            usage_types[(source, month, product_name, region)],
        )
        if not candidates or any(line.status != LineStatus.FINALIZED for line in candidates):
            continue
        context = _Invoice(source, month, product_name, region, unit, total)
        in_unit = [
            line for line in candidates if unit is None or normalized_unit(line.unit) == unit
        ]
        usage_units = {normalized_unit(line.unit) for line in in_unit}
        if not in_unit or len(usage_units) > 1:
            found.append(context.unit_mismatch(candidates))
            continue
        if len(in_unit) > 1 and any(line.kind is not MeasureKind.VOLUME for line in in_unit):
            continue  # a percentile, peak or level of several lines has no sum to compare
        tolerance = next(
            (e.tolerance for e in expectations if any(matches(e, line) for line in in_unit)),
            Tolerance(absolute=Decimal(0)),
        )
        finding = context.compare(in_unit, tolerance)
        if finding is not None:
            found.append(finding)
    return found


@dataclass(frozen=True)
class _Invoice:
    """One invoice total (a usage type's items in one unit) being checked."""

    source: str
    month: Month
    product_name: str
    region: str
    unit: str | None
    total: _InvoiceTotal

    def _item(
        self,
        kind: FindingKind,
        first: MonthLine,
        invoiced: Observation | None,
        observed: Observation,
        message: str,
        severity: Severity,
    ) -> PlanItem:
        parts: tuple[str, ...] = ("invoice", self.source, str(self.month), self.product_name)
        parts += (self.region,)
        if kind is not FindingKind.INVOICE_MISMATCH:
            parts += (kind.value,)
        return PlanItem(
            category=ItemCategory.FINDING,
            kind=kind.value,
            severity=severity,
            fingerprint=line_digest(parts + ((self.unit,) if self.unit else ())),
            source=self.source,
            provider=first.provider,
            account=first.account,
            product=first.product,
            usage_type=first.usage_type,
            region=self.region,
            service="",
            month=self.month,
            before=invoiced,
            after=observed,
            message=message,
            product_name=first.product_name,
        )

    def _items_text(self) -> str:
        count = self.total.items
        return f"{count} invoice line items" if count > 1 else "the invoice"

    def compare(self, matched: Sequence[MonthLine], tolerance: Tolerance) -> Evaluated | None:
        with localcontext(EXACT_CONTEXT):
            usage = sum((line.quantity for line in matched), Decimal(0))
            outside = abs(usage - self.total.units) > tolerance.allowance(self.total.units)
        if not outside:
            return None
        first = matched[0]
        shown = first.unit  # the provider's own spelling
        invoice_unit = self.total.spelling or shown
        item = self._item(
            FindingKind.INVOICE_MISMATCH,
            first,
            Observation(self.total.units, invoice_unit, LineStatus.FINALIZED),
            Observation(usage, shown, LineStatus.FINALIZED),
            f"finalized {self.month} usage {usage} {shown} differs from the "
            f"{self.total.units} {invoice_unit} billed on {self._items_text()} beyond {tolerance}",
            Severity.CRITICAL,
        )
        return Evaluated(item, line_digest(("invoice", str(self.total.units), str(usage))))

    def unit_mismatch(self, candidates: Sequence[MonthLine]) -> Evaluated:
        first = candidates[0]
        spellings = sorted({line.unit for line in candidates})
        invoice_unit = self.total.spelling or "(no unit)"
        with localcontext(EXACT_CONTEXT):
            usage = sum((line.quantity for line in candidates), Decimal(0))
        item = self._item(
            FindingKind.UNIT_MISMATCH,
            first,
            Observation(self.total.units, invoice_unit, LineStatus.FINALIZED),
            Observation(usage, first.unit, LineStatus.FINALIZED),
            f"{self.product_name}: {self.month} is billed in '{invoice_unit}' and measured in "
            f"{', '.join(repr(s) for s in spellings)}; not compared",
            Severity.WARNING,
        )
        return Evaluated(item, line_digest(("invoice-unit", invoice_unit, *spellings)))
