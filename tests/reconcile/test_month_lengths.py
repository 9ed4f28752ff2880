"""A month-end projection knows how long the month is (28, 29, 30 or 31 days).

A steady flow of ``RATE`` a day, seen on day ``d``, projects to ``RATE`` times the month's own
length, through both public projection routes: the plan's expectation check and the report's
projection. A projection that assumed 30-day months would be wrong in three of these four.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from reconciler.domain import LineStatus, Month
from reconciler.reconcile.expectations import MonthLine, evaluate
from reconciler.reconcile.forecast import ForecastParams
from reconciler.reconcile.history import ForecastInputs
from reconciler.reports.bands import project
from reconciler.settings import ExpectationSettings

RATE = Decimal("10")
DAY = 20  # well into the month: enough days for any run rate
MONTHS = [
    (Month(2023, 2), 28),
    (Month(2024, 2), 29),
    (Month(2024, 6), 30),
    (Month(2024, 7), 31),
]


def to_date(month: Month, day: int) -> MonthLine:
    return MonthLine(
        "fastly",
        "fastly",
        "",
        "cdn_usage",
        "cdn_usage",
        "North America Bandwidth",
        "North America",
        "",
        month,
        RATE * day,
        "GB",
        LineStatus.COLLECTING,
    )


def projected_by_plan(month: Month, limit: Decimal) -> list[Decimal]:
    expectation = ExpectationSettings.model_validate(
        {"name": "bw", "source": "fastly", "monthly_max": str(limit)}
    )
    today = date(month.year, month.month, DAY)
    return [
        found.item.after.quantity
        for found in evaluate([expectation], [to_date(month, DAY)], today)
        if found.item.kind == "projected_overage" and found.item.after is not None
    ]


@pytest.mark.parametrize(("month", "days"), MONTHS, ids=[f"{d} days" for _, d in MONTHS])
def test_the_plan_projects_a_steady_flow_over_the_months_own_length(
    month: Month, days: int
) -> None:
    month_total = RATE * days
    # Just under the month's total: the projection is over it, and says by how much.
    assert projected_by_plan(month, month_total - 1) == [month_total]
    # Exactly the month's total: a steady flow does not project over it.
    assert projected_by_plan(month, month_total) == []


@pytest.mark.parametrize(("month", "days"), MONTHS, ids=[f"{d} days" for _, d in MONTHS])
def test_the_report_projects_a_steady_flow_over_the_months_own_length(
    month: Month, days: int
) -> None:
    # The report forecasts from the days the data covers: at midnight starting day DAY + 1,
    # with a day of data lag, the data covers DAY days.
    now = datetime.combine(date(month.year, month.month, DAY + 1), time(0), tzinfo=UTC)
    forecast = ForecastInputs(now, timedelta(days=1), ForecastParams()).forecast(
        month, RATE * DAY, []
    )
    assert forecast.covered_days == DAY
    projection = project(month, RATE * DAY, LineStatus.COLLECTING, forecast, None)
    assert projection is not None
    assert projection.days == days
    assert projection.projected == RATE * days
