"""Expectations by measure kind: tables of (periods, regions, expectation) -> (value, findings).

The issue's cases are rows here: a 95/5 month split in two periods is 11.3, not 22.6; three
regions of 44.1, 97.4 and 163.2 are three values under a maximum of 250, not 304.7 over it; a
peak is never projected; storage is its latest level.
"""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain import LineStatus, Month, Severity
from reconciler.reconcile.expectations import (
    Evaluated,
    MonthLine,
    evaluate,
    unmatched_months,
)
from reconciler.reconcile.measures import MeasureKind
from reconciler.settings import ExpectationSettings

AUG = Month(2026, 8)
MID_AUGUST = date(2026, 8, 10)  # a third of the month: run rates triple
AFTER = date(2026, 9, 20)
V, P, K, G = MeasureKind.VOLUME, MeasureKind.PERCENTILE, MeasureKind.PEAK, MeasureKind.GAUGE
C, F = LineStatus.COLLECTING, LineStatus.FINALIZED
STAT = {V: ("Total MB", "GB"), P: ("95/5 Mbps", "95/5 Mbps"), K: ("Peak Mbps", "Peak Mbps"),
        G: ("Storage GB", "GB")}  # fmt: skip


def line(
    kind: MeasureKind,
    quantity: str,
    *,
    region: str = "GLOBAL",
    start: int = 1,
    status: LineStatus = C,
    billable: bool | None = True,
    product: str = "1-7KLGH",
) -> MonthLine:
    usage_type, unit = STAT[kind]
    return MonthLine(
        "akamai", "akamai", "K-0N7RAK7", product, "Adaptive Media Delivery", usage_type,
        region, "", AUG, Decimal(quantity), unit, status, date(2026, 8, start), kind, billable,
    )  # fmt: skip


def periods(
    kind: MeasureKind, *values: str, status: LineStatus = C, **kw: object
) -> list[MonthLine]:
    """One line per half month (1st and 16th), as Akamai splits a month."""
    return [
        line(kind, v, start=1 + 15 * i, status=status, **kw)  # type: ignore[arg-type]
        for i, v in enumerate(values)
    ]


def expect(kind: MeasureKind, **values: object) -> ExpectationSettings:
    base: dict[str, object] = {"name": "x", "source": "akamai", "usage_type": STAT[kind][0]}
    return ExpectationSettings.model_validate({**base, **values})


def summary(found: list[Evaluated]) -> list[tuple[str, str, str | None]]:
    """(kind, region, observed value) of each finding."""
    return [
        (f.item.kind, f.item.region, None if f.item.after is None else str(f.item.after.quantity))
        for f in found
    ]


CASES = [
    # percentile: a split month is its largest period; to date it is a lower bound, never projected
    ("95/5 split", periods(P, "11.3", "11.3"), expect(P, monthly_max="20"), MID_AUGUST, []),
    ("95/5 split, final", periods(P, "11.3", "9.1", status=F), expect(P, monthly_max="11"), AFTER,
     [("over_expectation", "GLOBAL", "11.3")]),
    ("95/5 crosses max while collecting", periods(P, "4", "12"), expect(P, monthly_max="11"),
     MID_AUGUST, [("over_expectation", "GLOBAL", "12")]),
    ("95/5 low rate is not projected", periods(P, "10"), expect(P, monthly_max="11"), MID_AUGUST,
     []),
    ("95/5 per region", [line(P, "44.1", region="Americas"), line(P, "97.4", region="EMEA"),
                         line(P, "163.2", region="Asia Pacific")],
     expect(P, monthly_max="250"), MID_AUGUST, []),
    ("95/5 per region, one over", [line(P, "44.1", region="Americas"),
                                   line(P, "263.2", region="Asia Pacific")],
     expect(P, monthly_max="250"), MID_AUGUST, [("over_expectation", "Asia Pacific", "263.2")]),
    # peak: the same, never projected however early in the month
    ("peak not projected", periods(K, "2700"), expect(K, monthly_max="5000"), MID_AUGUST, []),
    ("peak split", periods(K, "2700", "1200", status=F), expect(K, monthly_min="2000"), AFTER, []),
    ("peak split under", periods(K, "1700", "1200", status=F), expect(K, monthly_min="2000"),
     AFTER, [("under_expectation", "GLOBAL", "1700")]),
    # volume: periods and regions add up, and only a volume is projected
    ("volume split", periods(V, "60", "50", status=F), expect(V, monthly_max="100"), AFTER,
     [("over_expectation", "GLOBAL", "110")]),
    ("volume regions add", [line(V, "44.1", region="Americas"), line(V, "97.4", region="EMEA"),
                            line(V, "163.2", region="Asia Pacific")],
     expect(V, monthly_max="250"), MID_AUGUST, [("over_expectation", "", "304.7")]),
    ("volume projected", periods(V, "40"), expect(V, monthly_max="100"), MID_AUGUST,
     [("projected_overage", "GLOBAL", "124.000")]),
    # gauge: the latest level, not the sum of levels, and never projected
    ("storage latest", periods(G, "500", "480", status=F), expect(G, monthly_max="490"), AFTER,
     []),
    ("storage latest over", periods(G, "480", "500", status=F), expect(G, monthly_max="490"),
     AFTER, [("over_expectation", "GLOBAL", "500")]),
    ("storage not projected", periods(G, "300"), expect(G, monthly_max="490"), MID_AUGUST, []),
    ("storage regions add", [line(G, "300", region="Americas"), line(G, "200", region="EMEA")],
     expect(G, monthly_max="490"), MID_AUGUST, [("over_expectation", "", "500")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "expectation", "today", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_month_values_by_kind(
    lines: list[MonthLine],
    expectation: ExpectationSettings,
    today: date,
    expected: list[tuple[str, str, str | None]],
) -> None:
    assert summary(evaluate([expectation], lines, today)) == expected


def test_different_usage_types_are_never_added() -> None:
    lines = [line(V, "60"), line(K, "60"), line(P, "60")]
    found = evaluate([expect(V, usage_type="*", monthly_max="100")], lines, AFTER)
    assert found == []  # 180 of three things is no total
    found = evaluate([expect(V, usage_type="*", monthly_max="50")], lines, AFTER)
    assert sorted(f.item.usage_type for f in found) == ["95/5 Mbps", "Peak Mbps", "Total MB"]
    assert len({f.item.fingerprint for f in found}) == 3


def test_a_percentile_message_says_lower_bound() -> None:
    (found,) = evaluate([expect(P, monthly_max="11")], periods(P, "12"), MID_AUGUST)
    assert "to date at least 12 95/5 Mbps is over 11" in found.item.message
    (final,) = evaluate([expect(P, monthly_max="11")], periods(P, "12", status=F), AFTER)
    assert "percentile value 12" in final.item.message


def test_per_region_findings_have_distinct_fingerprints_and_labels() -> None:
    lines = [line(P, "300", region="Americas"), line(P, "263.2", region="EMEA")]
    found = evaluate([expect(P, monthly_max="250")], lines, MID_AUGUST)
    assert len({f.item.fingerprint for f in found}) == 2
    assert [f.item.message.split(":")[0] for f in found] == [
        "x / 1-7KLGH [Americas]",
        "x / 1-7KLGH [EMEA]",
    ]


@pytest.mark.parametrize(
    ("usage_type", "billable", "severity"),
    [
        ("95/5 Mbps", False, Severity.WARNING),  # named explicitly: as declared
        ("95/5*", False, Severity.INFO),  # only through a glob: never above info
        ("95/5*", None, Severity.WARNING),  # isBillable missing: billable
        ("95/5*", True, Severity.WARNING),
    ],
)
def test_not_billable_stats_never_alarm_unless_named(
    usage_type: str, billable: bool | None, severity: Severity
) -> None:
    lines = periods(P, "300", billable=billable)
    (found,) = evaluate([expect(P, usage_type=usage_type, monthly_max="250")], lines, MID_AUGUST)
    assert found.item.severity is severity


def test_a_typo_is_a_no_match_naming_the_closest_stat() -> None:
    lines = periods(V, "1") + periods(P, "1")
    typo = expect(V, usage_type="Totl MB", monthly_max="1")
    (found,) = evaluate([typo], lines, MID_AUGUST)
    assert (found.item.kind, found.item.severity) == ("no_match", Severity.WARNING)
    assert found.item.message == (
        "x: matches no line of akamai in 2026-08 "
        "(usage_type 'Totl MB' matches nothing; closest seen: 'Total MB')"
    )
    assert unmatched_months([typo], lines) == {("x", AUG)}
    assert unmatched_months([expect(V, monthly_max="1")], lines) == set()


def test_no_match_only_where_the_source_has_data() -> None:
    assert evaluate([expect(V, monthly_max="1")], [], MID_AUGUST) == []
    other = expect(V, source="fastly", usage_type="Totl MB", monthly_max="1")
    assert evaluate([other], periods(V, "1"), MID_AUGUST) == []


quantity = st.decimals(min_value=0, max_value=10**9, places=1, allow_nan=False)
kinds = st.sampled_from(list(MeasureKind))


@given(st.lists(st.tuples(quantity, st.sampled_from(["Americas", "EMEA"])), min_size=1,
                max_size=6), kinds, st.randoms())  # fmt: skip
def test_shuffling_lines_changes_nothing(
    values: list[tuple[Decimal, str]], kind: MeasureKind, rnd: random.Random
) -> None:
    lines = [line(kind, str(q), region=region, start=1 + i) for i, (q, region) in enumerate(values)]
    shuffled = list(lines)
    rnd.shuffle(shuffled)
    exp = expect(kind, monthly_max="1000")
    assert summary(evaluate([exp], shuffled, MID_AUGUST)) == summary(
        evaluate([exp], lines, MID_AUGUST)
    )


@given(st.lists(quantity, min_size=1, max_size=6), st.sampled_from([P, K]))
def test_a_percentile_finding_never_exceeds_its_largest_period(
    values: list[Decimal], kind: MeasureKind
) -> None:
    lines = [line(kind, str(q), start=1 + i, status=F) for i, q in enumerate(values)]
    found = evaluate([expect(kind, monthly_min="1000000001")], lines, AFTER)
    (under,) = found
    assert under.item.after is not None and under.item.after.quantity == max(values)


def test_a_no_match_reads_as_its_message_in_the_plan() -> None:
    from datetime import UTC, datetime

    from reconciler.reconcile.plan import Plan, render_text

    (found,) = evaluate([expect(V, usage_type="Totl MB", monthly_max="1")], periods(V, "1"), AFTER)
    plan = Plan(1, datetime(2026, 9, 20, tzinfo=UTC), (found.item,), {})
    block = [line for line in render_text(plan).splitlines() if line.startswith("  ")]
    assert block == [
        "  ~ no match           x / Totl MB  2026-08",
        "      x: matches no line of akamai in 2026-08 "
        "(usage_type 'Totl MB' matches nothing; closest seen: 'Total MB')",
    ]
