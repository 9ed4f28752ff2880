from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain import ChangeKind, LineStatus, Observation, Severity
from reconciler.reconcile.diff import Tracked, classify, severity_of

C, F = LineStatus.COLLECTING, LineStatus.FINALIZED


def obs(quantity: str, unit: str = "GB", status: LineStatus = C) -> Observation:
    return Observation(Decimal(quantity), unit, status)


def tracked(
    quantity: str, unit: str = "GB", status: LineStatus = C, present: bool = True
) -> Tracked:
    return Tracked(obs(quantity, unit, status), present)


@pytest.mark.parametrize(
    ("before", "after", "month_tracked", "expected"),
    [
        (None, obs("1"), True, ChangeKind.NEW),
        (None, obs("1"), False, None),
        (None, None, True, None),
        (tracked("1"), obs("2"), True, ChangeKind.GREW),
        (tracked("2"), obs("1"), True, ChangeKind.DECREASED),
        (tracked("2"), obs("2"), True, None),
        (tracked("2"), obs("2.000"), True, None),
        (tracked("2"), obs("2", status=F), True, ChangeKind.FINALIZED),
        (tracked("2"), obs("3", status=F), True, ChangeKind.FINALIZED),
        (tracked("2", status=F), obs("2", status=F), True, None),
        (tracked("2", status=F), obs("2.5", status=F), True, ChangeKind.RESTATED),
        (tracked("2", status=F), obs("1.5", status=F), True, ChangeKind.RESTATED),
        (tracked("2", status=F), obs("2", status=C), True, ChangeKind.REOPENED),
        (tracked("2"), obs("2", unit="TB"), True, ChangeKind.UNIT_CHANGED),
        (tracked("2", status=F), obs("2", unit="MB", status=F), True, ChangeKind.UNIT_CHANGED),
        (tracked("2"), None, True, ChangeKind.DISAPPEARED),
        (tracked("2", status=F), None, True, ChangeKind.DISAPPEARED),
        (tracked("2", present=False), None, True, None),
        (tracked("2", present=False), obs("2"), True, ChangeKind.REAPPEARED),
    ],
)
def test_classify(
    before: Tracked | None,
    after: Observation | None,
    month_tracked: bool,
    expected: ChangeKind | None,
) -> None:
    assert classify(before, after, month_tracked=month_tracked) == expected


def test_severities_default_and_override() -> None:
    assert severity_of(ChangeKind.RESTATED, {}) == Severity.CRITICAL
    assert severity_of(ChangeKind.DECREASED, {}) == Severity.WARNING
    assert severity_of(ChangeKind.GREW, {}) == Severity.INFO
    assert severity_of(ChangeKind.DECREASED, {ChangeKind.DECREASED: Severity.CRITICAL}) == (
        Severity.CRITICAL
    )


quantities = st.decimals(min_value=0, max_value=Decimal("1e12"), places=4, allow_nan=False)
statuses = st.sampled_from([C, F])
observations = st.builds(Observation, quantities, st.sampled_from(["GB", "unit"]), statuses)


@given(observations)
def test_a_line_against_itself_is_no_change(observation: Observation) -> None:
    assert classify(Tracked(observation, True), observation) is None
