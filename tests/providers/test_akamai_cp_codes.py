"""The per-CP-code monthly summary: one line per CP code and stat; bad CP codes are one clear
error naming the endpoint, the period and the entry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from reconciler.domain import Month
from reconciler.errors import BadProviderDataError
from reconciler.providers.akamai import summary_endpoint
from reconciler.providers.akamai_records import summary_lines

JULY = Month(2024, 7)
ENDPOINT = summary_endpoint("K-1", "1-WAA", by_cp_code=True)


def document(*entries: Any) -> dict[str, Any]:
    period = {
        "dataStatus": "COLLECTING_DATA",
        "month": "2024-07",
        "region": "GLOBAL",
        "start": "2024-07-01",
        "end": "2024-07-10",
        "cpCodeStats": list(entries),
    }
    return {"contractId": "K-1", "productId": "1-WAA", "usagePeriods": [period]}


def stat(value: str) -> dict[str, Any]:
    return {"statType": "Total MB", "unit": "GB", "isBillable": True, "value": Decimal(value)}


def lines(payload: Any) -> list[tuple[str, str]]:
    found = summary_lines(
        "akamai",
        ENDPOINT,
        payload,
        contract="K-1",
        product="1-WAA",
        product_name="WAA",
        months=[JULY],
        by_cp_code=True,
    )
    return [(x.service, str(x.quantity)) for x in found]


def test_each_cp_code_is_a_line_of_its_own() -> None:
    payload = document(
        {"cpCode": 7654321, "stats": [stat("1.5")]},
        {"cpCode": Decimal(1234567), "stats": [stat("2")]},
    )
    assert ENDPOINT == "/billing/v1/contracts/K-1/products/1-WAA/usage/by-cp-code/monthly-summary"
    assert lines(payload) == [("7654321", "1.5"), ("1234567", "2")]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"cpCode": "x", "stats": []}, 'cpCodeStats 0: cpCode is not a CP code (got "x")'),
        ({"cpCode": -3, "stats": []}, "cpCodeStats 0: cpCode is not a CP code (got -3)"),
        ({"cpCode": 5}, "stats is missing"),
    ],
)
def test_a_bad_cp_code_entry_is_one_clear_error(entry: dict[str, Any], problem: str) -> None:
    with pytest.raises(BadProviderDataError) as caught:
        lines(document(entry))
    text = str(caught.value)
    assert ENDPOINT in text and "usage period 0" in text and problem in text
    assert "\n" not in text


def test_the_same_stat_of_one_cp_code_twice_is_refused() -> None:
    with pytest.raises(BadProviderDataError, match="appears twice for the same period"):
        lines(document({"cpCode": 5, "stats": [stat("1"), stat("2")]}))
