"""FOCUS rounding rows: a team's EffectiveCost rows add up to its report amount, to the cent."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain import Month
from reconciler.reconcile.allocation import MonthKey, apportion
from reconciler.reports.focus_rounding import rounding_rows

JUNE = Month(2024, 6)
KEY: MonthKey = ("fastly", JUNE, "USD")
CENT = Decimal("0.01")


def row(team: str, cost: Decimal, description: str = "usage") -> dict[str, str]:
    return {
        "x_Source": "fastly",
        "BillingPeriodStart": "2024-06-01T00:00:00Z",
        "BillingCurrency": "USD",
        "EffectiveCost": str(cost),
        "ChargeDescription": description,
        "Tags": json.dumps({"team": team}),
    }


def charge(
    source: str, month: Month, currency: str, description: str, amount: Decimal
) -> dict[str, str]:
    return {
        "x_Source": source,
        "BillingPeriodStart": f"{month.first_day.isoformat()}T00:00:00Z",
        "BillingCurrency": currency,
        "EffectiveCost": str(amount),
        "ChargeDescription": description,
    }


def by_team(rows: list[dict[str, str]]) -> dict[str, Decimal]:
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        sums[json.loads(r["Tags"])["team"]] += Decimal(r["EffectiveCost"])
    return dict(sums)


costs = st.decimals(min_value=0, max_value=1000, places=10, allow_nan=False)
teams = st.sampled_from(["media", "storefront", "unallocated"])


@given(st.lists(st.tuples(teams, costs), min_size=1, max_size=20))
def test_rows_and_rounding_rows_add_up_to_the_apportioned_amounts(
    split: list[tuple[str, Decimal]],
) -> None:
    rows = [row(team, cost) for team, cost in split]
    parts: dict[str, Fraction] = defaultdict(Fraction)
    for team, cost in split:
        parts[team] += Fraction(cost)
    total = sum((cost for _, cost in split), Decimal(0)).quantize(CENT, ROUND_HALF_EVEN)
    targets = apportion(total, parts, CENT)
    added = rounding_rows(rows, {KEY: targets}, charge)
    found = by_team(rows + added)
    assert found == targets
    assert all(0 < abs(Decimal(r["EffectiveCost"])) < CENT for r in added)
    assert all(r["ChargeDescription"].endswith("'s share to the cent") for r in added)
    assert len({json.loads(r["Tags"])["team"] for r in added}) == len(added)


def test_a_month_on_another_basis_is_not_rounded() -> None:
    # A term commitment amortized: the rows are 5.00 below the billed month. No rounding
    # row could reconcile them, and none is written.
    rows = [row("media", Decimal("10.004")), row("storefront", Decimal("5"))]
    assert rounding_rows(rows, {KEY: {"media": Decimal("15.00"), "storefront": Decimal("5.00")}},
                         charge) == []  # fmt: skip
    (fixed,) = rounding_rows(rows, {KEY: {"media": Decimal("10.00"), "storefront": Decimal(5)}},
                             charge)  # fmt: skip
    assert fixed["EffectiveCost"] == "-0.004" and json.loads(fixed["Tags"]) == {"team": "media"}
