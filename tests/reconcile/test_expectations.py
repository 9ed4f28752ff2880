from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from reconciler.domain import LineStatus, Month, Severity
from reconciler.reconcile.expectations import (
    MonthLine,
    evaluate,
)
from reconciler.settings import ExpectationSettings

MAY, JUNE = Month(2024, 5), Month(2024, 6)
F, C = LineStatus.FINALIZED, LineStatus.COLLECTING


def ml(
    quantity: str,
    *,
    month: Month = MAY,
    status: LineStatus = F,
    unit: str = "GB",
    usage_type: str = "North America Bandwidth",
    service: str = "",
) -> MonthLine:
    return MonthLine(
        "fastly",
        "fastly",
        "",
        "cdn_usage",
        "cdn_usage",
        usage_type,
        "North America",
        service,
        month,
        Decimal(quantity),
        unit,
        status,
    )


def exp(**values: object) -> ExpectationSettings:
    base: dict[str, object] = {"name": "bw", "source": "fastly", "usage_type": "North America*"}
    return ExpectationSettings.model_validate({**base, **values})


def kinds(found: list) -> list[str]:  # type: ignore[type-arg]
    return [f.item.kind for f in found]


@pytest.mark.parametrize(
    ("expectation", "lines", "today", "expected"),
    [
        (exp(monthly_max="100"), [ml("60"), ml("50")], date(2024, 6, 10), ["over_expectation"]),
        (exp(monthly_max="110"), [ml("60"), ml("50")], date(2024, 6, 10), []),
        (exp(monthly_min="200"), [ml("60")], date(2024, 6, 10), ["under_expectation"]),
        (exp(monthly_min="200"), [ml("60", month=JUNE, status=C)], date(2024, 6, 10), []),
        (
            exp(monthly_max="100"),
            [ml("40", month=JUNE, status=C)],
            date(2024, 6, 10),
            ["projected_overage"],
        ),
        (exp(monthly_max="200"), [ml("40", month=JUNE, status=C)], date(2024, 6, 10), []),
        (exp(monthly_max="100", unit="TB"), [ml("400")], date(2024, 6, 10), ["unit_mismatch"]),
        (exp(monthly_quantity="100", tolerance="5%"), [ml("104")], date(2024, 6, 10), []),
        (
            exp(monthly_quantity="100", tolerance="5%"),
            [ml("106")],
            date(2024, 6, 10),
            ["over_expectation"],
        ),
        (
            exp(monthly_quantity="100", tolerance="5"),
            [ml("94")],
            date(2024, 6, 10),
            ["under_expectation"],
        ),
        (
            exp(invoices={"2024-05": "100"}, tolerance="1"),
            [ml("102")],
            date(2024, 6, 10),
            ["invoice_mismatch"],
        ),
        (exp(invoices={"2024-05": "100"}, tolerance="1"), [ml("100.5")], date(2024, 6, 10), []),
        # The source has data that month but none of it matches: said, not passed in silence.
        (
            exp(monthly_max="1"),
            [ml("5", usage_type="Europe Bandwidth")],
            date(2024, 6, 10),
            ["no_match"],
        ),
        (exp(monthly_max="1"), [ml("5", service="svc1")], date(2024, 6, 10), ["no_match"]),
        (
            exp(monthly_max="4", per_service=True),
            [ml("5", service="svc1"), ml("3", service="svc2")],
            date(2024, 6, 10),
            ["over_expectation"],
        ),
    ],
)
def test_expectation_rules(
    expectation: ExpectationSettings, lines: list[MonthLine], today: date, expected: list[str]
) -> None:
    assert kinds(evaluate([expectation], lines, today)) == expected


def test_without_history_the_projection_is_the_plain_run_rate_of_the_days_covered() -> None:
    (found,) = evaluate(
        [exp(monthly_max="80")], [ml("30", month=JUNE, status=C)], date(2024, 6, 10)
    )
    forecast = found.item.forecast
    assert forecast is not None
    assert (forecast.value, forecast.low, forecast.high) == (Decimal("90"), None, None)
    assert (forecast.method.value, forecast.reason.value) == ("run_rate", "history_short")
    assert (forecast.covered_through, forecast.covered_days) == (date(2024, 6, 10), 10)
    assert found.item.after is not None and found.item.after.quantity == Decimal("90")
    assert "no band: history too short" in found.item.message


def test_invoice_mismatch_is_critical_and_fingerprint_stable() -> None:
    found = evaluate([exp(invoices={"2024-05": "100"})], [ml("150")], date(2024, 6, 10))
    assert found[0].item.severity == Severity.CRITICAL
    again = evaluate([exp(invoices={"2024-05": "100"})], [ml("151")], date(2024, 6, 10))
    assert again[0].item.fingerprint == found[0].item.fingerprint
    assert again[0].values_hash == found[0].values_hash  # growth alone is not news
