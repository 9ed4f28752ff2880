"""An expectation over lines of several units: one finding per unit, each its own item.

Totals are kept per unit, so a month measured in ``GB`` and in ``unit`` gives two totals; their
findings must not share a fingerprint (two open items with one fingerprint cannot be stored:
the pull would fail on every run while the expectation exists).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from reconciler.domain import FindingKind, LineStatus, Month
from reconciler.reconcile.expectations import MonthLine, evaluate
from reconciler.settings import ExpectationSettings

MAY = Month(2024, 5)


def line(usage_type: str, quantity: str, unit: str) -> MonthLine:
    return MonthLine(
        "fastly", "fastly", "", "cdn_usage", "", usage_type, "", "", MAY,
        Decimal(quantity), unit, LineStatus.FINALIZED,
    )  # fmt: skip


LINES = [
    line("North America Bandwidth", "10", "GB"),
    line("North America Requests", "20", "unit"),
    line("WebSockets", "30", "gb"),
]


@pytest.mark.parametrize(
    ("declared", "kind", "expected"),
    [
        ({"monthly_max": "1"}, FindingKind.OVER_EXPECTATION, 3),
        ({"monthly_min": "100"}, FindingKind.UNDER_EXPECTATION, 3),
        ({"unit": "TB"}, FindingKind.UNIT_MISMATCH, 3),
        ({"unit": "GB", "monthly_max": "1"}, None, 3),  # one over, two unit mismatches
    ],
)
def test_each_unit_gets_a_finding_of_its_own(
    declared: dict[str, str], kind: FindingKind | None, expected: int
) -> None:
    found = evaluate([ExpectationSettings(source="fastly", **declared)], LINES, date(2024, 6, 10))

    assert len(found) == expected
    assert len({f.item.fingerprint for f in found}) == expected
    if kind is not None:
        assert {f.item.kind for f in found} == {kind.value}


def test_a_declared_unit_keeps_the_fingerprint_of_its_total() -> None:
    exp = ExpectationSettings(source="fastly", unit="GB", monthly_max="1")
    [only_gb] = evaluate([exp], LINES[:1], date(2024, 6, 10))
    with_others = evaluate([exp], LINES, date(2024, 6, 10))

    over = [f for f in with_others if f.item.kind == FindingKind.OVER_EXPECTATION.value]
    assert [f.item.fingerprint for f in over] == [only_gb.item.fingerprint]
