"""Expectations as code: month totals measured against declared limits. Pure: no I/O, no clock.

A month total sums the matching lines of a month (all periods; account-level lines, or each
service on its own with ``per_service``). A total in another unit than the expectation's is a
``unit_mismatch`` and is never compared. A collecting month whose forecast (see
:mod:`reconciler.reconcile.forecast`) is above the maximum is a ``projected_overage``: the
warning before the invoice. It needs ``min_days`` of covered data, names the method, the covered
days and the band, and an acknowledged one is raised again by :class:`Escalation`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
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
from reconciler.reconcile.forecast import Escalation, Forecast, ForecastParams
from reconciler.reconcile.history import ForecastInputs, HistoryKey
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
class ProviderInvoiceLine:
    source: str
    month: Month
    usage_type: str
    product_name: str
    region: str
    units: Decimal


@dataclass(frozen=True, slots=True)
class Evaluated:
    """A finding and the part of it that, when changed, is worth announcing again."""

    item: PlanItem
    values_hash: str
    escalation: Escalation | None = None  # re-raises an acknowledged projected overage


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


def plain_inputs(today: date) -> ForecastInputs:
    """Forecast inputs without history: ``today`` counts as covered (run rate, no band)."""
    return ForecastInputs(
        datetime.combine(today, time(0), tzinfo=UTC), timedelta(0), ForecastParams()
    )


def history_keys(
    exp: ExpectationSettings,
    lines: Iterable[MonthLine],
    key: tuple[str, Month, str, str],
) -> list[HistoryKey]:
    """The history keys of the lines summed into one of ``month_totals``' totals."""
    return [
        HistoryKey(
            line.source,
            line.account,
            line.product,
            line.usage_type,
            line.region,
            line.service,
            line.month,
            line.unit,
        )
        for line in lines
        if (line.source, line.month, line.unit, line.service) == key and matches(exp, line)
    ]


def evaluate(
    expectations: Sequence[ExpectationSettings],
    lines: Sequence[MonthLine],
    today: date,
    forecasts: ForecastInputs | None = None,
) -> list[Evaluated]:
    """Every finding the expectations raise on these lines, as of ``today``; collecting
    months are forecast from ``forecasts`` (default: :func:`plain_inputs`)."""
    inputs = forecasts or plain_inputs(today)
    found: list[Evaluated] = []
    for expectation in expectations:
        for (source, month, unit, service), total in sorted(
            month_totals(expectation, lines).items(), key=lambda kv: (kv[0][1], kv[0])
        ):
            key = (source, month, unit, service)

            def forecast(
                quantity: Decimal,
                exp: ExpectationSettings = expectation,
                key: tuple[str, Month, str, str] = key,
            ) -> Forecast:
                return inputs.forecast(key[1], quantity, history_keys(exp, lines, key))

            checked = _check(expectation, source, month, unit, service, total, forecast)
            found.extend(_with_escalation(checked, inputs.escalation))
    return found


def _with_escalation(found: list[Evaluated], escalation: Escalation) -> list[Evaluated]:
    return [
        Evaluated(e.item, e.values_hash, escalation)
        if e.item.kind == FindingKind.PROJECTED_OVERAGE.value
        else e
        for e in found
    ]


def _check(
    exp: ExpectationSettings,
    source: str,
    month: Month,
    unit: str,
    service: str,
    total: _Total,
    forecast: Callable[[Decimal], Forecast],
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
        outlook = forecast(quantity)
        if outlook.raisable and outlook.value > upper:
            results.append(
                context.finding(
                    FindingKind.PROJECTED_OVERAGE,
                    upper,
                    f"{exp.label}: {month} to date {quantity} {unit} is forecast at "
                    f"{outlook.value} {unit} by month end, over {upper} {unit} "
                    f"({outlook.describe(unit)})",
                    after=Observation(outlook.value, unit, status),
                    forecast=outlook,
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
        forecast: Forecast | None = None,
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
            forecast=forecast,
        )
        # Growth of the observed total is not news; a new limit, unit or severity is.
        values = (kind.value, level.value, str(expected), unit, extra)
        return Evaluated(item, line_digest(values))


def _pattern(value: str) -> str:
    return "" if value == "*" else value


def check_provider_invoices(
    lines: Sequence[MonthLine],
    invoice_lines: Sequence[ProviderInvoiceLine],
    expectations: Sequence[ExpectationSettings] = (),
) -> list[Evaluated]:
    """Finalized account-level totals against the units on the provider's own invoice.

    An invoice line matches the lines whose usage type is its product name (or usage type) and
    whose region is its region. The tolerance is that of the first expectation matching those
    lines, else none.
    """
    by_month: dict[tuple[str, Month], list[MonthLine]] = defaultdict(list)
    for line in lines:
        if not line.service:
            by_month[(line.source, line.month)].append(line)
    found: list[Evaluated] = []
    for invoice in invoice_lines:
        candidates = [
            line
            for line in by_month.get((invoice.source, invoice.month), [])
            if invoice.product_name in (line.usage_type, line.product_name)
            or invoice.usage_type == line.usage_type
        ]
        matched = [
            line for line in candidates if not invoice.region or line.region == invoice.region
        ]
        if not matched or any(line.status != LineStatus.FINALIZED for line in matched):
            continue
        with localcontext(EXACT_CONTEXT):
            total = sum((line.quantity for line in matched), Decimal(0))
        tolerance = next(
            (e.tolerance for e in expectations if any(matches(e, line) for line in matched)),
            Tolerance(absolute=Decimal(0)),
        )
        if not _outside(total, invoice.units, tolerance):
            continue
        first = matched[0]
        unit = first.unit
        item = PlanItem(
            category=ItemCategory.FINDING,
            kind=FindingKind.INVOICE_MISMATCH.value,
            severity=Severity.CRITICAL,
            fingerprint=line_digest(
                (
                    "invoice",
                    invoice.source,
                    str(invoice.month),
                    invoice.product_name,
                    invoice.region,
                )
            ),
            source=invoice.source,
            provider=first.provider,
            account=first.account,
            product=first.product,
            usage_type=first.usage_type,
            region=invoice.region,
            service="",
            month=invoice.month,
            before=Observation(invoice.units, unit, LineStatus.FINALIZED),
            after=Observation(total, unit, LineStatus.FINALIZED),
            message=(
                f"finalized {invoice.month} usage {total} {unit} differs from the "
                f"{invoice.units} units on the provider's invoice beyond {tolerance}"
            ),
            product_name=first.product_name,
        )
        found.append(Evaluated(item, line_digest(("invoice", str(invoice.units), str(total)))))
    return found
