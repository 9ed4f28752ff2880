"""Expectations as code: month totals measured against declared limits. Pure: no I/O, no clock.

A month total sums the matching lines of a month (all periods; account-level lines, or each
service on its own with ``per_service``). A total in another unit than the expectation's is a
``unit_mismatch`` and is never compared. A collecting month's run rate, projected linearly to
month end, above the maximum is a ``projected_overage``: the warning before the invoice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase

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
from reconciler.settings import ExpectationSettings, Tolerance

DEFAULT_FINDING_SEVERITY = {
    FindingKind.OVER_EXPECTATION: Severity.WARNING,
    FindingKind.UNDER_EXPECTATION: Severity.WARNING,
    FindingKind.UNIT_MISMATCH: Severity.WARNING,
    FindingKind.PROJECTED_OVERAGE: Severity.WARNING,
    FindingKind.INVOICE_MISMATCH: Severity.CRITICAL,
}


@dataclass(frozen=True, slots=True)
class MonthLine:
    """The current value of one tracked line, as expectations see it."""

    source: str
    provider: str
    account: str
    product: str
    product_name: str
    usage_type: str
    region: str
    service: str
    month: Month
    quantity: Decimal
    unit: str
    status: LineStatus


@dataclass(frozen=True, slots=True)
class Evaluated:
    """A finding and the part of it that, when changed, is worth announcing again."""

    item: PlanItem
    values_hash: str


@dataclass
class _Total:
    quantity: Decimal
    finalized: bool
    provider: str
    lines: int


def matches(expectation: ExpectationSettings, line: MonthLine) -> bool:
    if expectation.per_service != bool(line.service):
        return False
    return (
        fnmatchcase(line.source, expectation.source)
        and (
            fnmatchcase(line.product, expectation.product)
            or fnmatchcase(line.product_name, expectation.product)
        )
        and fnmatchcase(line.usage_type, expectation.usage_type)
        and fnmatchcase(line.region, expectation.region)
        and fnmatchcase(line.service, expectation.service)
    )


def month_totals(
    expectation: ExpectationSettings, lines: Iterable[MonthLine]
) -> dict[tuple[str, Month, str, str], _Total]:
    """Totals by (source, month, unit, service) of the lines an expectation matches."""
    totals: dict[tuple[str, Month, str, str], _Total] = {}
    with localcontext(EXACT_CONTEXT):
        for line in lines:
            if not matches(expectation, line):
                continue
            key = (line.source, line.month, line.unit, line.service)
            total = totals.get(key)
            finalized = line.status == LineStatus.FINALIZED
            if total is None:
                totals[key] = _Total(line.quantity, finalized, line.provider, 1)
            else:
                total.quantity += line.quantity
                total.finalized = total.finalized and finalized
                total.lines += 1
    return totals


def projected(total: Decimal, month: Month, today: date) -> Decimal | None:
    """Linear run-rate projection of a month-to-date total to month end (None: not started)."""
    if today < month.first_day:
        return None
    if today > month.last_day:
        return total
    with localcontext(EXACT_CONTEXT):
        return (total * month.days / today.day).quantize(Decimal("0.001"))


def evaluate(
    expectations: Sequence[ExpectationSettings],
    lines: Sequence[MonthLine],
    today: date,
) -> list[Evaluated]:
    """Every finding the expectations raise on these lines, as of ``today``."""
    found: list[Evaluated] = []
    for expectation in expectations:
        for (source, month, unit, service), total in sorted(
            month_totals(expectation, lines).items(), key=lambda kv: (kv[0][1], kv[0])
        ):
            found.extend(_check(expectation, source, month, unit, service, total, today))
    return found


def _check(
    exp: ExpectationSettings,
    source: str,
    month: Month,
    unit: str,
    service: str,
    total: _Total,
    today: date,
) -> list[Evaluated]:
    status = LineStatus.FINALIZED if total.finalized else LineStatus.COLLECTING
    observed = Observation(total.quantity, unit, status)
    context = _Context(exp, source, month, service, total.provider, observed)
    if exp.unit is not None and unit != exp.unit:
        return [
            context.finding(
                FindingKind.UNIT_MISMATCH,
                None,
                f"{exp.label}: {month} is measured in '{unit}', the expectation in '{exp.unit}'; "
                "not compared",
                extra=unit,
            )
        ]
    results: list[Evaluated] = []
    upper = _upper_limit(exp)
    lower = _lower_limit(exp)
    quantity = total.quantity
    if upper is not None and quantity > upper:
        results.append(
            context.finding(
                FindingKind.OVER_EXPECTATION,
                upper,
                f"{exp.label}: {month} total {quantity} {unit} is over {upper} {unit}",
            )
        )
    elif upper is not None and status == LineStatus.COLLECTING:
        projection = projected(quantity, month, today)
        if projection is not None and projection > upper:
            results.append(
                context.finding(
                    FindingKind.PROJECTED_OVERAGE,
                    upper,
                    f"{exp.label}: {month} to date {quantity} {unit} runs at a rate that "
                    f"projects {projection} {unit} by month end, over {upper} {unit}",
                    after=Observation(projection, unit, status),
                )
            )
    if lower is not None and status == LineStatus.FINALIZED and quantity < lower:
        results.append(
            context.finding(
                FindingKind.UNDER_EXPECTATION,
                lower,
                f"{exp.label}: {month} total {quantity} {unit} is under {lower} {unit}",
            )
        )
    invoiced = exp.invoices.get(str(month))
    if invoiced is not None and status == LineStatus.FINALIZED:
        mismatch = _outside(quantity, invoiced, exp.tolerance)
        if mismatch:
            results.append(
                context.finding(
                    FindingKind.INVOICE_MISMATCH,
                    invoiced,
                    f"{exp.label}: finalized {month} total {quantity} {unit} differs from the "
                    f"declared invoice quantity {invoiced} {unit} beyond {exp.tolerance}",
                    severity=Severity.CRITICAL,
                )
            )
    return results


def _upper_limit(exp: ExpectationSettings) -> Decimal | None:
    limits = []
    if exp.monthly_max is not None:
        limits.append(exp.monthly_max)
    if exp.monthly_quantity is not None:
        limits.append(exp.monthly_quantity + exp.tolerance.allowance(exp.monthly_quantity))
    return min(limits) if limits else None


def _lower_limit(exp: ExpectationSettings) -> Decimal | None:
    limits = []
    if exp.monthly_min is not None:
        limits.append(exp.monthly_min)
    if exp.monthly_quantity is not None:
        limits.append(exp.monthly_quantity - exp.tolerance.allowance(exp.monthly_quantity))
    return max(limits) if limits else None


def _outside(quantity: Decimal, reference: Decimal, tolerance: Tolerance) -> bool:
    with localcontext(EXACT_CONTEXT):
        return abs(quantity - reference) > tolerance.allowance(reference)


@dataclass(frozen=True)
class _Context:
    exp: ExpectationSettings
    source: str
    month: Month
    service: str
    provider: str
    observed: Observation

    def finding(
        self,
        kind: FindingKind,
        expected: Decimal | None,
        message: str,
        *,
        after: Observation | None = None,
        severity: Severity | None = None,
        extra: str = "",
    ) -> Evaluated:
        exp = self.exp
        unit = exp.unit or self.observed.unit
        before = None if expected is None else Observation(expected, unit, self.observed.status)
        parts: tuple[str, ...] = (
            "finding",
            kind.value,
            exp.label,
            self.source,
            str(self.month),
            self.service,
        )
        if self.observed.unit != exp.unit:
            # Totals are per unit: without a declared unit (or against another one) a month
            # can have several, and each is a finding of its own.
            parts += (self.observed.unit,)
        fingerprint = line_digest(parts)
        level = severity or exp.severity or DEFAULT_FINDING_SEVERITY[kind]
        item = PlanItem(
            category=ItemCategory.FINDING,
            kind=kind.value,
            severity=level,
            fingerprint=fingerprint,
            source=self.source,
            provider=self.provider,
            account="",
            product=_pattern(exp.product),
            usage_type=_pattern(exp.usage_type),
            region=_pattern(exp.region),
            service=self.service or _pattern(exp.service),
            month=self.month,
            before=before,
            after=after or self.observed,
            message=message,
            product_name=exp.label,
        )
        # Growth of the observed total is not news; a new limit, unit or severity is.
        values = (kind.value, level.value, str(expected), unit, extra)
        return Evaluated(item, line_digest(values))


def _pattern(value: str) -> str:
    return "" if value == "*" else value
