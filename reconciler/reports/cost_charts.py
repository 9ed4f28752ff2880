"""The report's money charts: each source's cost per month, one chart per currency.

Drawn by the same monthly bar chart as the usage (:func:`~reconciler.reports.charts.
monthly_chart`): finalized months filled, the collecting month's cost to date hatched, and
its projected invoice as the dashed projection bar. A chart is in one currency: amounts in
different currencies are never added or drawn on one axis. Amounts are rounded to the
currency's minor unit (a chart is for reading; the tables and the JSON keep them exact).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from reconciler.domain import LineStatus
from reconciler.money import Money
from reconciler.reconcile.forecast import Forecast, ForecastMethod, ForecastReason
from reconciler.reports.costs import CostReport, MonthCost
from reconciler.reports.model import MonthPoint, Projection, Series

COST_LABEL = "Expected cost"
_STATUS = {"finalized": LineStatus.FINALIZED, "collecting": LineStatus.COLLECTING}


def cost_series(costs: CostReport | None) -> list[Series]:
    """One series per source and currency with a month of cost, oldest month first."""
    if costs is None:
        return []
    grouped: dict[tuple[str, str], list[MonthCost]] = defaultdict(list)
    for month in costs.months:
        grouped[(month.source, month.currency)].append(month)
    return [
        _series(source, currency, months) for (source, currency), months in sorted(grouped.items())
    ]


def _series(source: str, currency: str, months: list[MonthCost]) -> Series:
    points = []
    projection = None
    for cost in sorted(months, key=lambda m: m.month):
        amount = Money(cost.amount, currency).rounded()
        if cost.state != "projected":
            # lines=0: a month's cost is not a count of lines (the bar's tooltip says none).
            points.append(MonthPoint(cost.month, amount, _STATUS[cost.state], 0))
            continue
        to_date = sum(
            (Money(m.amount, currency).rounded() for m in months
             if m.month == cost.month and m.state == "collecting"),
            Decimal(0),
        )  # fmt: skip
        forecast = Forecast(amount, None, None, ForecastMethod.TRAILING, None, 0, ForecastReason.OK)
        projection = Projection(cost.month, to_date, forecast, None)
    return Series(
        source=source,
        provider="",
        product="",
        product_name=COST_LABEL,
        usage_type=currency,
        unit=currency,
        points=tuple(points),
        projection=projection,
        money=True,
    )
