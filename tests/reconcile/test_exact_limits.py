"""Limits and tolerances are computed exactly: beyond 28 significant digits (the default
decimal context) an over-limit total is still over, and an under-limit one still under."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from reconciler.domain import LineStatus, Month
from reconciler.reconcile.expectations import MonthLine, evaluate
from reconciler.settings import ExpectationSettings

MAY = Month(2024, 5)
# 31 significant digits: the default context would round the limit to 28 of them.
REFERENCE = "1234567890123456789012345678.901"


def finalized(quantity: str) -> MonthLine:
    return MonthLine(
        "fastly",
        "fastly",
        "",
        "cdn_usage",
        "cdn_usage",
        "North America Bandwidth",
        "North America",
        "",
        MAY,
        Decimal(quantity),
        "GB",
        LineStatus.FINALIZED,
    )


def kinds(expectation: dict[str, object], quantity: str) -> list[str]:
    base: dict[str, object] = {"name": "bw", "source": "fastly", "usage_type": "North America*"}
    settings = ExpectationSettings.model_validate({**base, **expectation})
    return [e.item.kind for e in evaluate([settings], [finalized(quantity)], date(2024, 6, 10))]


@pytest.mark.parametrize(
    ("expectation", "quantity", "expected"),
    [
        # monthly_quantity ± tolerance: just over and just under the exact bounds.
        (
            {"monthly_quantity": REFERENCE, "tolerance": "0.001"},
            "1234567890123456789012345678.903",
            ["over_expectation"],
        ),
        (
            {"monthly_quantity": REFERENCE, "tolerance": "0.001"},
            "1234567890123456789012345678.902",
            [],
        ),
        (
            {"monthly_quantity": REFERENCE, "tolerance": "0.001"},
            "1234567890123456789012345678.899",
            ["under_expectation"],
        ),
        (
            {"monthly_quantity": REFERENCE, "tolerance": "0.001"},
            "1234567890123456789012345678.900",
            [],
        ),
        # A percentage tolerance of a long reference.
        (
            {"monthly_quantity": REFERENCE, "tolerance": "0%"},
            "1234567890123456789012345678.9011",
            ["over_expectation"],
        ),
    ],
)
def test_limits_beyond_28_digits_are_exact(
    expectation: dict[str, object], quantity: str, expected: list[str]
) -> None:
    assert kinds(expectation, quantity) == expected
