"""The report's money charts: a source's cost per month, one chart per currency, drawn by
the usage chart (finalized filled, collecting hatched, the projected invoice dashed)."""

from __future__ import annotations

from decimal import Decimal

from reconciler.domain import LineStatus, Month
from reconciler.reports.charts import monthly_chart
from reconciler.reports.cost_charts import cost_series
from reconciler.reports.costs import CostReport, MonthCost
from tests.reports.helpers import SVG_NS, parse_svg

MAY, JUNE, JULY = Month(2024, 5), Month(2024, 6), Month(2024, 7)


def cost(source: str, month: Month, currency: str, amount: str, state: str) -> MonthCost:
    return MonthCost(source, month, currency, Decimal(amount), state, at_last_rates=False)


REPORT = CostReport(
    months=(
        cost("fastly", MAY, "USD", "1234.565", "finalized"),  # half to even: 1,234.56
        cost("fastly", JUNE, "USD", "99.995", "finalized"),  # 100.00
        cost("fastly", JULY, "USD", "40.125", "collecting"),  # 40.12
        cost("fastly", JULY, "USD", "5469.981", "projected"),  # 5,469.98
        cost("fastly", JUNE, "JPY", "1500.5", "finalized"),  # 1,500 (no minor unit)
        cost("akamai", JUNE, "EUR", "10", "finalized"),
    ),
    invoices=(),
    audit=(),
    commitments=(),
)


def test_one_series_per_source_and_currency_never_adding_currencies() -> None:
    series = {(s.source, s.unit): s for s in cost_series(REPORT)}
    assert sorted(series) == [("akamai", "EUR"), ("fastly", "JPY"), ("fastly", "USD")]
    usd = series[("fastly", "USD")]
    assert [(p.month, p.quantity, p.status) for p in usd.points] == [
        (MAY, Decimal("1234.56"), LineStatus.FINALIZED),
        (JUNE, Decimal("100.00"), LineStatus.FINALIZED),
        (JULY, Decimal("40.12"), LineStatus.COLLECTING),
    ]
    assert usd.projection is not None
    assert (usd.projection.month, usd.projection.to_date, usd.projection.projected) == (
        JULY,
        Decimal("40.12"),
        Decimal("5469.98"),
    )
    jpy = series[("fastly", "JPY")]
    assert [(p.month, p.quantity) for p in jpy.points] == [(JUNE, Decimal("1500"))]
    assert jpy.projection is None
    assert cost_series(None) == []


def test_the_chart_shows_amounts_to_the_minor_unit() -> None:
    usd = next(s for s in cost_series(REPORT) if s.unit == "USD")
    svg = parse_svg(monthly_chart(usd, "chart-cost-01", [MAY, JUNE, JULY], "fastly: cost"))
    titles = [t.text for t in svg.iter(f"{SVG_NS}title")]
    assert titles[0] == "fastly: cost"
    assert "2024-05: 1,234.56 USD (finalized)" in titles
    assert "2024-06: 100.00 USD (finalized)" in titles
    assert "2024-07: 40.12 USD (collecting)" in titles
    assert "projected to month end: 5,469.98 USD" in titles
    bars = [r for r in svg.iter(f"{SVG_NS}rect") if "bar" in (r.get("class") or "")]
    assert [b.get("class") for b in bars] == ["bar finalized", "bar finalized", "bar collecting"]
