"""Invoice audit, budgets, last month's rates and money impact (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from reconciler.cost_settings import RateSettings
from reconciler.domain import LineStatus, Month
from reconciler.money import Money
from reconciler.reconcile.audit import InvoiceAmount, audit_invoices
from reconciler.reconcile.costing import CostLine, price_lines
from reconciler.reconcile.spend import (
    budget_findings,
    change_impact,
    last_invoice_rates,
    projected_sheet,
)
from reconciler.settings import ExpectationSettings, Tolerance

MAY, JUNE = Month(2024, 5), Month(2024, 6)
F, C = LineStatus.FINALIZED, LineStatus.COLLECTING
NONE = Tolerance(absolute=Decimal(0))
HALF_PERCENT = Tolerance(percent=Decimal("0.5"))


def line(
    quantity: str,
    usage_type: str = "North America Bandwidth",
    *,
    month: Month = MAY,
    status: LineStatus = F,
) -> CostLine:
    return CostLine(
        "fastly",
        "acct",
        "cdn_usage",
        "Full-Site Delivery",
        usage_type,
        "North America",
        "",
        month,
        month.first_day,
        month.last_day,
        Decimal(quantity),
        "GB",
        status,
        provider="fastly",
    )


def invoice(units: str, amount: str, name: str = "North America Bandwidth") -> InvoiceAmount:
    return InvoiceAmount(
        "fastly",
        "fastly",
        MAY,
        "bandwidth",
        name,
        "North America",
        Decimal(units),
        Decimal(amount),
        "USD",
    )


RATES = [
    RateSettings(name="cdn 2024", source="fastly", usage_type="North America*", currency="USD",
                 unit_price=Decimal("0.12")),
]  # fmt: skip


def audit(lines: list[CostLine], invoices: list[InvoiceAmount]) -> list[tuple[str, str]]:
    sheet = price_lines(RATES, [], lines)
    found = audit_invoices(sheet, invoices, tolerance=NONE, rate_tolerance=HALF_PERCENT)
    return [(f.item.kind, f.item.message) for f in found]


def test_an_invoice_that_matches_the_contract_raises_nothing() -> None:
    assert audit([line("1000.04")], [invoice("1000.04", "120.00")]) == []


def test_an_overcharge_names_the_line_both_amounts_and_the_difference() -> None:
    assert audit([line("1000")], [invoice("1100", "132.00")]) == [
        (
            "cost_mismatch",
            "invoice line North America Bandwidth [North America] of 2024-05: invoiced "
            "132.00 USD, expected 120.00 USD (difference +12.00 USD); expected by "
            "cdn 2024: 1000 GB x 0.12 USD [2024-05-01..2024-05-31]",
        ),
        (
            "cost_mismatch",
            "invoice total of 2024-05: invoiced 132.00 USD, expected 120.00 USD "
            "(difference +12.00 USD)",
        ),
    ]


def test_a_wrong_rate_is_a_rate_mismatch_too() -> None:
    kinds = [kind for kind, _ in audit([line("1000")], [invoice("1000", "130.00")])]
    assert kinds == ["cost_mismatch", "rate_mismatch", "cost_mismatch"]
    (rate,) = [
        m for k, m in audit([line("1000")], [invoice("1000", "130.00")]) if k == "rate_mismatch"
    ]
    assert "effective rate 0.13 USD/GB, declared 0.12 USD/GB (cdn 2024)" in rate


def test_rounding_on_the_invoice_is_not_a_mismatch_but_a_cent_is() -> None:
    # 1000.04 GB x 0.12 = 120.0048: the invoice can only say 120.00.
    assert audit([line("1000.04")], [invoice("1000.04", "120.00")]) == []
    assert [k for k, _ in audit([line("1000.04")], [invoice("1000.04", "120.02")])] == [
        "cost_mismatch",
        "cost_mismatch",
    ]


def test_a_collecting_month_is_not_audited() -> None:
    assert audit([line("1000", status=C)], [invoice("1100", "132.00")]) == []


def test_impact_is_the_difference() -> None:
    sheet = price_lines(RATES, [], [line("1000")])
    (first, _) = audit_invoices(
        sheet, [invoice("1100", "132.00")], tolerance=NONE, rate_tolerance=HALF_PERCENT
    )
    assert (first.item.impact, first.item.impact_currency) == (Decimal("12.00"), "USD")


def budget(**values: Any) -> ExpectationSettings:
    return ExpectationSettings.model_validate({"name": "cdn", "source": "fastly", **values})


@pytest.mark.parametrize(
    ("quantity", "status", "expected"),
    [
        ("50000", F, ["over_budget"]),
        ("40000", F, []),
        # 10 days of June: 20,000 GB runs at a rate of 60,000 GB (7,200 USD) by month end.
        ("20000", C, ["projected_over_budget"]),
        ("10000", C, []),
    ],
)
def test_budgets(quantity: str, status: LineStatus, expected: list[str]) -> None:
    lines = [line(quantity, month=JUNE, status=status)]
    today = date(2024, 6, 10)
    actual = price_lines(RATES, [], lines)
    forecast = projected_sheet(RATES, [], lines, today)
    found = budget_findings([budget(monthly_budget="5000 USD")], actual, forecast)
    assert [f.item.kind for f in found] == expected


def test_projected_over_budget_message() -> None:
    lines = [line("20000", month=JUNE, status=C)]
    forecast = projected_sheet(RATES, [], lines, date(2024, 6, 10))
    (found,) = budget_findings(
        [budget(monthly_budget="5000 USD")], price_lines(RATES, [], lines), forecast
    )
    assert found.item.message == (
        "cdn: 2024-06 projects 7,200.00 USD, over the monthly budget of 5,000.00 USD by "
        "2,200.00 USD"
    )


def test_without_declared_rates_the_last_invoice_prices_the_open_month() -> None:
    lines = [line("1000"), line("300", month=JUNE, status=C)]
    rates = last_invoice_rates([invoice("1000", "125.00")], lines)
    (rate,) = rates
    assert rate.name == "at last month's rates (2024-05 invoice)"
    sheet = projected_sheet(rates, [], lines, date(2024, 6, 10))
    june = sheet.month_totals()[("fastly", JUNE, "USD")]
    assert Money(june, "USD").display() == "112.50 USD"  # 900 GB projected x 0.125


def test_change_impact_follows_the_tiers() -> None:
    tiers = [RateSettings.model_validate({
        "source": "fastly", "currency": "USD",
        "tiers": [{"up_to": "1000", "unit_price": "0.10"}, {"unit_price": "0.05"}],
    })]  # fmt: skip
    changed = line("1200")
    other = line("500", "North America Requests")
    impact = change_impact(tiers, [], [changed, other], changed, Decimal("1000"))
    # The month's 1,500 GB -> 1,700 GB: all 200 more GB fall in the second tier.
    assert impact == Money(Decimal("10.00"), "USD")
    assert change_impact([], [], [changed], changed, Decimal("1000")) is None
    assert replace(changed, quantity=Decimal(1)) != changed


def test_a_missing_credit_shows_in_the_total() -> None:
    from reconciler.cost_settings import CreditSettings

    credit = CreditSettings(name="SLA credit", source="fastly", amount="25 USD")
    sheet = price_lines(RATES, [], [line("1000")], [credit])
    credited = [invoice("1000", "120.00"), invoice("0", "-25.00", "SLA credit")]

    def kinds(invoices: list[InvoiceAmount]) -> list[str]:
        found = audit_invoices(sheet, invoices, tolerance=NONE, rate_tolerance=HALF_PERCENT)
        return [f.item.message for f in found]

    assert kinds(credited) == []
    assert kinds(credited[:1]) == [
        "invoice total of 2024-05: invoiced 120.00 USD, expected 95.00 USD (difference +25.00 USD)"
    ]


@pytest.mark.parametrize(
    ("impact", "currency", "threshold", "below"),
    [
        ("-9.994", "USD", "10 USD", True),
        ("-9.995", "USD", "10 USD", False),  # shown as -10.00 USD
        ("12", "USD", "10 USD", False),
        ("5", "EUR", "10 USD", False),  # another currency cannot be compared
        (None, "", "10 USD", False),  # not priced: never hidden
        ("1", "USD", None, False),
    ],
)
def test_min_impact(impact: str | None, currency: str, threshold: str | None, below: bool) -> None:
    from reconciler.domain import ItemCategory, PlanItem, Severity
    from reconciler.reconcile.spend import below_min_impact

    item = PlanItem(
        ItemCategory.DRIFT,
        "restated",
        Severity.CRITICAL,
        "f",
        "fastly",
        "fastly",
        "",
        "",
        "",
        "",
        "",
        MAY,
        None,
        None,
        impact=None if impact is None else Decimal(impact),
        impact_currency=currency,
    )
    limit = None if threshold is None else Money.parse(threshold)
    assert below_min_impact(item, limit) is below


def test_a_route_takes_the_source_min_impact_unless_it_has_its_own() -> None:
    from reconciler.alerts.routes import route_for
    from reconciler.settings import settings_from_mapping

    settings = settings_from_mapping(
        {
            "sources": [
                {"name": "fastly", "provider": "fastly", "min_impact": "50 USD"},
                {"name": "akamai", "provider": "akamai", "min_impact": "20 USD"},
            ],
            "alerts": {"slack": {"routes": [{"source": "akamai", "min_impact": "500 USD"}]}},
        }
    )
    assert route_for(settings, "fastly").min_impact == Money.parse("50 USD")
    assert route_for(settings, "akamai").min_impact == Money.parse("500 USD")


def test_the_projected_invoice_prices_the_forecast_the_findings_use() -> None:
    """The open month is priced on the lag-aware forecast, not on a run rate of its own."""
    from datetime import UTC, datetime, timedelta

    from reconciler.reconcile.forecast import ForecastParams
    from reconciler.reconcile.history import ForecastInputs
    from reconciler.reconcile.spend import history_key, projected_invoices

    lines = [line("20000", month=JUNE, status=C)]
    today = date(2024, 6, 10)
    lagged = ForecastInputs(
        datetime(2024, 6, 10, 12, tzinfo=UTC), timedelta(days=1), ForecastParams()
    )
    forecast = lagged.forecast(JUNE, Decimal(20000), [history_key(lines[0])])
    assert forecast.covered_days == 9  # data through 9 June: one day of lag

    (lag_aware,) = projected_invoices("fastly", RATES, [], [], lines, today, forecasts=lagged)
    (plain,) = projected_invoices("fastly", RATES, [], [], lines, today)

    assert Money(lag_aware.amount, "USD").display() == "8,000.00 USD"  # 20,000 / 9 x 30 x 0.12
    assert Money(plain.amount, "USD").display() == "7,200.00 USD"  # 20,000 / 10 x 30 x 0.12
