"""Expectation bands and month-end projections for charted series: pure, no clock, no I/O.

A series sums a (source, product, usage type, unit) over its regions at account level, so an
expectation is drawn on it only when it covers that whole total: its source, product (id or
name) and usage type globs match, every region of the series matches its region glob, it is
not per service and names no service, and its unit (when it declares one) is the series'.
An expectation that matches but declares another unit is listed as not drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase

from reconciler.domain import EXACT_CONTEXT, LineStatus, Month
from reconciler.reconcile.forecast import Forecast, ForecastReason
from reconciler.reports.model import Band, Projection
from reconciler.settings import ExpectationSettings


def _matches(
    expectation: ExpectationSettings,
    source: str,
    product: str,
    product_name: str,
    usage_type: str,
    regions: Iterable[str],
) -> bool:
    if expectation.per_service or not fnmatchcase("", expectation.service):
        return False
    if not fnmatchcase(source, expectation.source):
        return False
    if not (
        fnmatchcase(product, expectation.product)
        or (product_name and fnmatchcase(product_name, expectation.product))
    ):
        return False
    if not fnmatchcase(usage_type, expectation.usage_type):
        return False
    return all(fnmatchcase(region, expectation.region) for region in regions)


def expectation_band(
    expectations: Sequence[ExpectationSettings],
    *,
    source: str,
    product: str,
    product_name: str,
    usage_type: str,
    unit: str,
    regions: Iterable[str],
) -> tuple[Band | None, tuple[str, ...]]:
    """The band drawn on a series and the labels of matching expectations in another unit."""
    regions = tuple(regions)
    lows: list[Decimal] = []
    highs: list[Decimal] = []
    labels: list[str] = []
    invoices: dict[Month, Decimal] = {}
    other_unit: list[str] = []
    for expectation in expectations:
        if not _matches(expectation, source, product, product_name, usage_type, regions):
            continue
        if expectation.unit is not None and expectation.unit != unit:
            other_unit.append(f"{expectation.label} (in {expectation.unit})")
            continue
        with localcontext(EXACT_CONTEXT):
            if expectation.monthly_min is not None:
                lows.append(expectation.monthly_min)
            if expectation.monthly_max is not None:
                highs.append(expectation.monthly_max)
            if expectation.monthly_quantity is not None:
                allowance = expectation.tolerance.allowance(expectation.monthly_quantity)
                lows.append(max(expectation.monthly_quantity - allowance, Decimal(0)))
                highs.append(expectation.monthly_quantity + allowance)
        for month_text, quantity in expectation.invoices.items():
            invoices.setdefault(Month.parse(month_text), quantity)
        declared = (expectation.monthly_min, expectation.monthly_max, expectation.monthly_quantity)
        if any(value is not None for value in declared) or expectation.invoices:
            labels.append(expectation.label)
    if not labels:
        return None, tuple(other_unit)
    band = Band(
        low=max(lows) if lows else None,
        high=min(highs) if highs else None,
        labels=tuple(labels),
        invoices=invoices,
    )
    return band, tuple(other_unit)


def project(
    month: Month,
    quantity: Decimal,
    status: LineStatus,
    forecast: Forecast,
    limit: Decimal | None,
) -> Projection | None:
    """The collecting month's ``forecast`` as a report shows it (None for a finalized month
    or one with no covered day yet)."""
    if status is not LineStatus.COLLECTING or forecast.reason is ForecastReason.NO_DATA:
        return None
    return Projection(month=month, to_date=quantity, forecast=forecast, limit=limit)
