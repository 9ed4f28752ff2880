"""Expectations as code: month values measured against declared limits. Pure: no I/O, no clock.

A month value follows the measure kind of its lines (:mod:`reconciler.reconcile.month_values`):
volumes add up over periods and the regions an expectation spans; a percentile or a peak is the
month's largest period value, evaluated per region; a gauge is the latest level. Account-level
lines are used, or each service on its own with ``per_service``. A value in another unit than
the expectation's is a ``unit_mismatch`` and is never compared. Only a volume is projected: a
collecting month whose forecast (:mod:`reconciler.reconcile.forecast`: lag-aware, with a band,
after ``min_days`` of covered data) is above the maximum is a ``projected_overage``, raised
again once acknowledged by :class:`~reconciler.reconcile.forecast.Escalation`; a percentile or
peak to date is a lower bound and is ``over_expectation`` as soon as it crosses the maximum. An
expectation that matches nothing in a month of its source says so (``no_match``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext

from reconciler import display
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
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.month_values import MonthLine as MonthLine
from reconciler.reconcile.month_values import (
    MonthTotal,
    TotalKey,
    counted_lines,
    month_totals,
    spans_services,
)
from reconciler.reconcile.month_values import matches as matches
from reconciler.reconcile.no_match import NoMatch, find_unmatched
from reconciler.settings import ExpectationSettings, Tolerance

DEFAULT_FINDING_SEVERITY = {
    FindingKind.OVER_EXPECTATION: Severity.WARNING,
    FindingKind.UNDER_EXPECTATION: Severity.WARNING,
    FindingKind.UNIT_MISMATCH: Severity.WARNING,
    FindingKind.PROJECTED_OVERAGE: Severity.WARNING,
    FindingKind.INVOICE_MISMATCH: Severity.CRITICAL,
    FindingKind.NO_MATCH: Severity.WARNING,
}


@dataclass(frozen=True, slots=True)
class Evaluated:
    """A finding and the part of it that, when changed, is worth announcing again."""

    item: PlanItem
    values_hash: str
    escalation: Escalation | None = None  # re-raises an acknowledged projected overage
    # Re-raises an acknowledged finding whose month closed (or was restated) beyond this
    # tolerance from the total its acknowledgement accepted.
    tolerance: Tolerance | None = None

    def moved_past_acknowledged(self, quantity: Decimal | None, status: str | None) -> bool:
        """Whether the observed total, now finalized, is beyond the tolerance from the one the
        acknowledgement accepted (``quantity`` and ``status`` as acknowledged). A month still
        collecting grows every day: that is not news until it closes."""
        after = self.item.after
        if self.tolerance is None or quantity is None or after is None:
            return False
        if after.status != LineStatus.FINALIZED:
            return False
        if status == LineStatus.FINALIZED.value and after.quantity == quantity:
            return False
        with localcontext(EXACT_CONTEXT):
            return abs(after.quantity - quantity) > self.tolerance.allowance(quantity)


def plain_inputs(today: date) -> ForecastInputs:
    """Forecast inputs without history: ``today`` counts as covered (run rate, no band)."""
    return ForecastInputs(
        datetime.combine(today, time(0), tzinfo=UTC), timedelta(0), ForecastParams()
    )


def projected(total: Decimal, month: Month, today: date) -> Decimal | None:
    """The month-end forecast of a total to date with no version history at hand: the run rate
    of the days through ``today`` (None before the month starts). Callers with the store's
    history use :class:`~reconciler.reconcile.history.ForecastInputs` instead."""
    if today < month.first_day:
        return None
    return plain_inputs(today).forecast(month, total, []).value


def history_keys(
    exp: ExpectationSettings, lines: Iterable[MonthLine], key: TotalKey
) -> list[HistoryKey]:
    """The history keys of the lines whose values make up one of ``month_totals``' totals."""
    spans = spans_services(exp)
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
        for line in counted_lines(exp, lines)
        if (line.source, line.month, line.usage_type, line.unit, line.kind)
        == (key.source, key.month, key.usage_type, key.unit, key.kind)
        and (line.service == key.service or (spans and key.kind.adds_up))
        and all(
            not wanted or wanted == have
            for wanted, have in (
                (key.region, line.region),
                (key.product, line.product),
                (key.account, line.account),
            )
        )
    ]


def evaluate(
    expectations: Sequence[ExpectationSettings],
    lines: Sequence[MonthLine],
    today: date,
    forecasts: ForecastInputs | None = None,
) -> list[Evaluated]:
    """Every finding the expectations raise on these lines, as of ``today``; a collecting
    volume is forecast from ``forecasts`` (default: :func:`plain_inputs`).

    Includes a ``no_match`` finding for each month of a source with data that an expectation
    matches nothing of (see :func:`unmatched_months` for what that holds open).
    """
    inputs = forecasts or plain_inputs(today)
    found: list[Evaluated] = []
    for expectation in expectations:
        for key, total in sorted(
            month_totals(expectation, lines).items(), key=lambda kv: (kv[0].month, kv[0])
        ):

            def forecast(
                quantity: Decimal, exp: ExpectationSettings = expectation, key: TotalKey = key
            ) -> Forecast:
                return inputs.forecast(key.month, quantity, history_keys(exp, lines, key))

            checked = _check(expectation, key, total, forecast)
            found.extend(_with_escalation(checked, inputs.escalation))
    found.extend(_no_match(miss) for miss in find_unmatched(expectations, lines))
    return found


def _with_escalation(found: list[Evaluated], escalation: Escalation) -> list[Evaluated]:
    return [
        replace(e, escalation=escalation)
        if e.item.kind == FindingKind.PROJECTED_OVERAGE.value
        else e
        for e in found
    ]


def unmatched_months(
    expectations: Sequence[ExpectationSettings], lines: Sequence[MonthLine]
) -> set[tuple[str, Month]]:
    """(label, month) of each expectation that matched nothing in a month of these lines.

    Their open findings are not re-evaluated, so they must not be resolved either.
    """
    return {(miss.expectation.label, miss.month) for miss in find_unmatched(expectations, lines)}


def _check(
    exp: ExpectationSettings,
    key: TotalKey,
    total: MonthTotal,
    forecast: Callable[[Decimal], Forecast],
) -> list[Evaluated]:
    status = LineStatus.FINALIZED if total.finalized else LineStatus.COLLECTING
    unit, month = key.unit, key.month
    observed = Observation(total.quantity, unit, status)
    context = _Context(exp, key, total, observed)
    label = context.label
    if exp.unit is not None and unit != exp.unit:
        return [
            context.finding(
                FindingKind.UNIT_MISMATCH,
                None,
                f"{label}: {month} is measured in '{unit}', the expectation in '{exp.unit}'; "
                "not compared",
                extra=unit,
            )
        ]
    results: list[Evaluated] = []

    def shown(value: Decimal) -> str:
        return display.amount(value, unit)

    upper = _upper_limit(exp)
    lower = _lower_limit(exp)
    quantity = total.quantity
    so_far = _value_words(key.kind, status)
    if upper is not None and quantity > upper:
        results.append(
            context.finding(
                FindingKind.OVER_EXPECTATION,
                upper,
                f"{label}: {month} {so_far} {shown(quantity)} is over {shown(upper)}",
            )
        )
    elif upper is not None and status == LineStatus.COLLECTING and key.kind.projected:
        outlook = forecast(quantity)
        if outlook.raisable and outlook.value > upper:
            results.append(
                context.finding(
                    FindingKind.PROJECTED_OVERAGE,
                    upper,
                    f"{label}: {month} to date {shown(quantity)} is forecast at "
                    f"{shown(outlook.value)} by month end, over {shown(upper)} "
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
                f"{label}: {month} {so_far} {shown(quantity)} is under {shown(lower)}",
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
                    f"{label}: finalized {month} {so_far} {shown(quantity)} differs from the "
                    f"declared invoice quantity {shown(invoiced)} beyond {exp.tolerance}",
                    severity=Severity.CRITICAL,
                )
            )
    return results


def _value_words(kind: MeasureKind, status: LineStatus) -> str:
    """How a month value reads: a total, a level, or a largest value (so far: at least)."""
    collecting = status == LineStatus.COLLECTING
    if kind is MeasureKind.VOLUME:
        return "total to date" if collecting else "total"
    if kind is MeasureKind.GAUGE:
        return "latest level"
    return f"{kind} to date at least" if collecting else f"{kind} value"


def _upper_limit(exp: ExpectationSettings) -> Decimal | None:
    limits = []
    if exp.monthly_max is not None:
        limits.append(exp.monthly_max)
    if exp.monthly_quantity is not None:
        with localcontext(EXACT_CONTEXT):  # the default 28 digits would round the limit
            limits.append(exp.monthly_quantity + exp.tolerance.allowance(exp.monthly_quantity))
    return min(limits) if limits else None


def _lower_limit(exp: ExpectationSettings) -> Decimal | None:
    limits = []
    if exp.monthly_min is not None:
        limits.append(exp.monthly_min)
    if exp.monthly_quantity is not None:
        with localcontext(EXACT_CONTEXT):
            limits.append(exp.monthly_quantity - exp.tolerance.allowance(exp.monthly_quantity))
    return max(limits) if limits else None


def _outside(quantity: Decimal, reference: Decimal, tolerance: Tolerance) -> bool:
    with localcontext(EXACT_CONTEXT):
        return abs(quantity - reference) > tolerance.allowance(reference)


@dataclass(frozen=True)
class _Context:
    exp: ExpectationSettings
    key: TotalKey
    total: MonthTotal
    observed: Observation

    @property
    def label(self) -> str:
        """The expectation's label, with what this evaluation covers when it is narrower."""
        exp, key = self.exp, self.key
        label = exp.label
        if key.usage_type != exp.usage_type:
            label += f" / {key.usage_type}"
        if key.product and exp.product != key.product:
            label += f" / {key.product}"
        if key.region and key.region != exp.region:
            label += f" [{key.region}]"
        if key.service and spans_services(exp):
            label += f" service {key.service}"  # a team's percentile: one service's
        return label

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
        exp, key = self.exp, self.key
        unit = exp.unit or self.observed.unit
        before = None if expected is None else Observation(expected, unit, self.observed.status)
        parts: tuple[str, ...] = (
            "finding",
            kind.value,
            *expectation_identity(exp),
            key.source,
            str(key.month),
            key.usage_type,
            key.unit,
            key.service,
            key.kind.value,
            key.region,
            key.product,
            key.account,
        )
        level = severity or exp.severity or DEFAULT_FINDING_SEVERITY[kind]
        if not self.total.billable and not _names(exp, key):
            # Stats the provider marks isBillable: false are shown, never alarming, unless
            # an expectation names them.
            level = Severity.INFO
        regions = self.total.regions
        region = key.region or (next(iter(regions)) if len(regions) == 1 else "")
        item = PlanItem(
            category=ItemCategory.FINDING,
            kind=kind.value,
            severity=level,
            fingerprint=line_digest(parts),
            source=key.source,
            provider=self.total.provider,
            account=key.account,
            product=key.product or _pattern(exp.product),
            usage_type=key.usage_type,
            region=region or _pattern(exp.region),
            service=key.service or _pattern(exp.service),
            month=key.month,
            before=before,
            after=after or self.observed,
            message=message,
            product_name=exp.label,
            forecast=forecast,
        )
        # Growth of the observed total is not news; a new limit, unit or severity is.
        values = (kind.value, level.value, str(expected), unit, extra)
        return Evaluated(item, line_digest(values), tolerance=exp.tolerance)


def expectation_identity(exp: ExpectationSettings) -> tuple[str, ...]:
    """Every field that decides which lines an expectation covers, and its name."""
    return (
        exp.name,
        exp.source,
        exp.product,
        exp.usage_type,
        exp.region,
        exp.service,
        "per_service" if exp.per_service else "",
    )


def _names(exp: ExpectationSettings, key: TotalKey) -> bool:
    """Whether the expectation names this usage type exactly (not through a glob)."""
    return exp.usage_type == key.usage_type


def _no_match(miss: NoMatch) -> Evaluated:
    exp = miss.expectation
    severity = exp.severity or DEFAULT_FINDING_SEVERITY[FindingKind.NO_MATCH]
    parts = ("finding", FindingKind.NO_MATCH.value, *expectation_identity(exp), miss.source)
    item = PlanItem(
        category=ItemCategory.FINDING,
        kind=FindingKind.NO_MATCH.value,
        severity=severity,
        fingerprint=line_digest((*parts, str(miss.month))),
        source=miss.source,
        provider="",
        account="",
        product=_pattern(exp.product),
        usage_type=_pattern(exp.usage_type),
        region=_pattern(exp.region),
        service=_pattern(exp.service),
        month=miss.month,
        before=None,
        after=None,
        message=f"{exp.label}: matches no line of {miss.source} in {miss.month} ({miss.hint})",
        product_name=exp.label,
    )
    return Evaluated(item, line_digest((*parts, severity.value, miss.hint)))


def _pattern(value: str) -> str:
    return "" if value == "*" else value
