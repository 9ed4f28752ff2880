from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain import ChangeKind, LineStatus, Observation, Severity
from reconciler.reconcile.diff import Tracked, classify, severity_of, within
from reconciler.settings import Tolerance

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
        (tracked("2"), obs("3", status=F), True, ChangeKind.FINALIZED_CHANGED),
        (tracked("2", status=F), obs("2", status=F), True, None),
        (tracked("2", status=F), obs("2.5", status=F), True, ChangeKind.RESTATED),
        (tracked("2", status=F), obs("1.5", status=F), True, ChangeKind.RESTATED),
        (tracked("2", status=F), obs("2", status=C), True, ChangeKind.REOPENED),
        (tracked("2"), obs("2", unit="TB"), True, ChangeKind.UNIT_CHANGED),
        (tracked("2", status=F), obs("2", unit="MB", status=F), True, ChangeKind.UNIT_CHANGED),
        (tracked("2"), None, True, ChangeKind.DISAPPEARED),
        (tracked("2", status=F), None, True, ChangeKind.FINALIZED_DISAPPEARED),
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


# A line back after an absence is compared with its last present values.
@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (tracked("2", status=F, present=False), obs("2", status=F), ChangeKind.REAPPEARED),
        (tracked("2", status=F, present=False), obs("2.000", status=F), ChangeKind.REAPPEARED),
        (tracked("2", status=F, present=False), obs("3", status=F), ChangeKind.RESTATED),
        (tracked("2", status=F, present=False), obs("1", status=F), ChangeKind.RESTATED),
        (tracked("2", status=F, present=False), obs("2", "TB", F), ChangeKind.UNIT_CHANGED),
        (tracked("2", status=F, present=False), obs("2", status=C), ChangeKind.REOPENED),
        (tracked("2", present=False), obs("2"), ChangeKind.REAPPEARED),
        # Collecting data grows: a return that only grew is still an identical-in-kind return.
        (tracked("2", present=False), obs("5"), ChangeKind.REAPPEARED),
        (tracked("2", present=False), obs("1"), ChangeKind.DECREASED),
        (tracked("2", present=False), obs("2", unit="gb"), ChangeKind.UNIT_CHANGED),
        (tracked("100", present=False), obs("100.5", status=F), ChangeKind.FINALIZED),
        (tracked("100", present=False), obs("10", status=F), ChangeKind.FINALIZED_CHANGED),
    ],
)
def test_classify_a_return(before: Tracked, after: Observation, expected: ChangeKind) -> None:
    assert classify(before, after) == expected


ONE_PERCENT = Tolerance(percent=Decimal(1))


@pytest.mark.parametrize(
    ("last_collecting", "finalized", "tolerance", "expected"),
    [
        ("100", "100", ONE_PERCENT, ChangeKind.FINALIZED),
        ("100", "101", ONE_PERCENT, ChangeKind.FINALIZED),
        ("100", "99", ONE_PERCENT, ChangeKind.FINALIZED),
        ("100", "101.0000000001", ONE_PERCENT, ChangeKind.FINALIZED_CHANGED),
        ("100", "98.99", ONE_PERCENT, ChangeKind.FINALIZED_CHANGED),
        ("100", "10", ONE_PERCENT, ChangeKind.FINALIZED_CHANGED),
        ("100", "190", ONE_PERCENT, ChangeKind.FINALIZED_CHANGED),
        ("0", "0", ONE_PERCENT, ChangeKind.FINALIZED),
        ("0", "0.001", ONE_PERCENT, ChangeKind.FINALIZED_CHANGED),
        ("100", "110", Tolerance(percent=Decimal(10)), ChangeKind.FINALIZED),
        ("100", "110.01", Tolerance(percent=Decimal(10)), ChangeKind.FINALIZED_CHANGED),
        ("100", "100.5", Tolerance(absolute=Decimal("0.5")), ChangeKind.FINALIZED),
        ("100", "100.6", Tolerance(absolute=Decimal("0.5")), ChangeKind.FINALIZED_CHANGED),
        ("100", "100.0001", Tolerance(percent=Decimal(0)), ChangeKind.FINALIZED_CHANGED),
        # 30 significant digits: the default 28-digit context would round the difference away.
        (
            "12345678901234567890.1234567890",
            "12469135690246913569.0246913569",
            ONE_PERCENT,
            ChangeKind.FINALIZED_CHANGED,
        ),
        (
            "12345678901234567890.1234567890",
            "12469135690246913569.0246913568",
            ONE_PERCENT,
            ChangeKind.FINALIZED,
        ),
    ],
)
def test_finalization_against_the_last_collecting_value(
    last_collecting: str, finalized: str, tolerance: Tolerance, expected: ChangeKind
) -> None:
    before, after = tracked(last_collecting), obs(finalized, status=F)
    assert classify(before, after, finalize_tolerance=tolerance) == expected


def test_severities_default_and_override() -> None:
    assert severity_of(ChangeKind.RESTATED, {}) == Severity.CRITICAL
    assert severity_of(ChangeKind.DECREASED, {}) == Severity.WARNING
    assert severity_of(ChangeKind.GREW, {}) == Severity.INFO
    assert severity_of(ChangeKind.FINALIZED_CHANGED, {}) == Severity.WARNING
    assert severity_of(ChangeKind.FINALIZED_DISAPPEARED, {}) == Severity.CRITICAL
    assert severity_of(ChangeKind.DISAPPEARED, {}) == Severity.WARNING
    assert severity_of(ChangeKind.LEFT_WINDOW_COLLECTING, {}) == Severity.INFO
    assert severity_of(ChangeKind.DECREASED, {ChangeKind.DECREASED: Severity.CRITICAL}) == (
        Severity.CRITICAL
    )


quantities = st.decimals(min_value=0, max_value=Decimal("1e12"), places=4, allow_nan=False)
statuses = st.sampled_from([C, F])
observations = st.builds(Observation, quantities, st.sampled_from(["GB", "unit"]), statuses)


@given(observations)
def test_a_line_against_itself_is_no_change(observation: Observation) -> None:
    assert classify(Tracked(observation, True), observation) is None


@given(quantities, quantities)
def test_within_is_symmetric_for_absolute_tolerances(a: Decimal, b: Decimal) -> None:
    tolerance = Tolerance(absolute=Decimal("0.5"))
    assert within(a, b, tolerance) == within(b, a, tolerance)


@given(observations)
def test_an_identical_return_is_reappeared(observation: Observation) -> None:
    assert classify(Tracked(observation, False), observation) == ChangeKind.REAPPEARED


@given(observations, quantities)
def test_a_billed_line_cannot_come_back_changed_unnoticed(
    observation: Observation, quantity: Decimal
) -> None:
    billed = Observation(observation.quantity, observation.unit, F)
    back = Observation(quantity, billed.unit, F)
    kind = classify(Tracked(billed, False), back)
    assert kind == (ChangeKind.REAPPEARED if quantity == billed.quantity else ChangeKind.RESTATED)
