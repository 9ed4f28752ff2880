"""One way to write a number, a unit and a count, in every view: the shared helper's rules,
and the same item read in the plan, Slack, the other channels and the reports."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reconciler import display
from reconciler.alerts.channels.text import change
from reconciler.alerts.slack import render_run_message
from reconciler.domain import ItemCategory, LineStatus, Month, Observation, PlanItem, Severity
from reconciler.reconcile.plan import describe
from reconciler.reports import fmt


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("1234567.50", "GB", "1,234,567.5 GB"),
        ("0.000001", "GB", "0.000001 GB"),
        ("-0", "GB", "0 GB"),
        ("1200", "unit", "1,200"),
        ("1200", "", "1,200"),
        ("601.7", "USD", "601.70 USD"),
        ("1234.6", "JPY", "1,235 JPY"),
        ("131.1", "95/5 Mbps", "131.1 95/5 Mbps"),
    ],
)
def test_an_amount_reads_one_way(value: str, unit: str, expected: str) -> None:
    assert display.amount(Decimal(value), unit) == expected


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [("100.28", "USD", "+100.28 USD"), ("-323.76", "", "-323.76"), ("0", "GB", "0 GB")],
)
def test_a_change_carries_its_sign(value: str, unit: str, expected: str) -> None:
    assert display.amount(Decimal(value), unit, with_sign=True) == expected


@pytest.mark.parametrize(
    ("count", "expected"), [(0, "0 lines"), (1, "1 line"), (2, "2 lines"), (1024, "1,024 lines")]
)
def test_a_count_agrees_with_its_noun(count: int, expected: str) -> None:
    assert display.plural(count, "line") == expected


def _finding(unit: str, expected: str, observed: str) -> PlanItem:
    status = LineStatus.FINALIZED
    return PlanItem(
        category=ItemCategory.FINDING,
        kind="cost_mismatch",
        severity=Severity.CRITICAL,
        fingerprint="f",
        source="fastly",
        provider="fastly",
        account="",
        product="cdn_usage",
        usage_type="North America Bandwidth",
        region="",
        service="",
        month=Month(2024, 6),
        before=Observation(Decimal(expected), unit, status),
        after=Observation(Decimal(observed), unit, status),
    )


@pytest.mark.parametrize(
    ("unit", "expected", "observed", "shown"),
    [
        ("USD", "501.42", "601.7", ("501.42 USD", "601.70 USD")),
        ("GB", "13053", "24421.44", ("13,053 GB", "24,421.44 GB")),
        ("unit", "10", "12.5", ("10", "12.5")),
    ],
)
def test_every_view_shows_an_item_s_values_the_same_way(
    unit: str, expected: str, observed: str, shown: tuple[str, str]
) -> None:
    item = _finding(unit, expected, observed)
    before, after = shown
    assert f"observed: {after}   expected: {before}   [finalized]" in describe(item)[1]
    assert change(item).startswith(f"expected {before} · observed {after}")
    assert fmt.observation(item.after, with_status=False) == after
    assert fmt.observation(item.before, with_status=False) == before
    slack = str(render_run_message(source="fastly", run_id=1, items=[item]))
    assert f"expected {before} · observed {after}" in slack
