"""The money impact of single-line changes (pure): worked-out amounts, rate cards found by
index as a scan would find them, and the impact always the month priced both ways."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cost_settings import CommitmentSettings, RateSettings
from reconciler.domain import EXACT_CONTEXT, LineStatus, Month
from reconciler.money import Money
from reconciler.reconcile.costing import CardIndex, CostLine, price_lines
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.spend import ImpactPricer

JUNE = Month(2024, 6)


def line(
    quantity: str,
    usage_type: str = "North America Bandwidth",
    *,
    region: str = "North America",
    start: date = JUNE.first_day,
    end: date = JUNE.last_day,
    unit: str = "GB",
    kind: MeasureKind = MeasureKind.VOLUME,
) -> CostLine:
    return CostLine("fastly", "acct", "cdn_usage", "Full-Site Delivery", usage_type, region,
                    "", JUNE, start, end, Decimal(quantity), unit, LineStatus.FINALIZED,
                    kind)  # fmt: skip


def rate(**values: Any) -> RateSettings:
    return RateSettings.model_validate({"source": "fastly", "currency": "USD", **values})


def commitment(**values: Any) -> CommitmentSettings:
    return CommitmentSettings.model_validate({"source": "fastly", "currency": "USD", **values})


TIERS = [{"up_to": "1000", "unit_price": "0.10"}, {"unit_price": "0.05"}]
DATED = [
    rate(unit_price="0.12", effective_to="2024-06-15"),
    rate(unit_price="0.07", effective_from="2024-06-16"),
]

# (rates, commitments, the changed line, the others, its quantity before, expected impact)
CASES = [
    # A mid-month rate change: 60 GB more over June, half at 0.12 and half at 0.07.
    (DATED, [], line("300"), [], "240", Money(Decimal("5.7"), "USD")),
    # A tier boundary: the month's 950 GB -> 1,050 GB: 50 GB at 0.10, 50 GB at 0.05.
    ([rate(tiers=TIERS)], [], line("150"), [line("900", "Europe Bandwidth")], "50",
     Money(Decimal("7.5"), "USD")),
    # A 95/5 line of the same card is priced on its own value: it does not move.
    ([rate(unit_price="0.10")], [], line("200"),
     [line("40", "95/5", unit="GB", kind=MeasureKind.PERCENTILE)], "100",
     Money(Decimal("10"), "USD")),
    # A line of the first half of June only falls in the first version (0.12).
    (DATED, [], line("100", end=date(2024, 6, 15)), [], "50", Money(Decimal("6"), "USD")),
    # A quantity commitment: 900 GB -> 1,100 GB of a 1,000 GB commit, 100 GB of overage.
    ([], [commitment(quantity="1000", unit="GB", commit_price="0.06", overage_price="0.09")],
     line("1100"), [], "900", Money(Decimal("9"), "USD")),
    # A money commitment of 100 USD: 50 USD of usage is billed 100; 120 USD bills 120.
    ([rate(unit_price="0.10")], [commitment(amount="100 USD")], line("1200"), [], "500",
     Money(Decimal("20"), "USD")),
    # A card written in another unit prices nothing.
    ([rate(unit_price="0.10", unit="TB")], [], line("200"), [], "100", None),
    # No card matches.
    ([rate(unit_price="0.10", usage_type="Europe *")], [], line("200"), [], "100", None),
]  # fmt: skip


@pytest.mark.parametrize(("rates", "commits", "changed", "others", "before", "expected"), CASES)
def test_impact_of_a_change(
    rates: list[RateSettings],
    commits: list[CommitmentSettings],
    changed: CostLine,
    others: list[CostLine],
    before: str,
    expected: Money | None,
) -> None:
    impact = ImpactPricer(rates, commits, [changed, *others]).impact(changed, Decimal(before))
    if expected is None:
        assert impact is None
    else:
        assert impact is not None and impact.currency == expected.currency
        assert impact.amount == expected.amount


def test_the_index_finds_the_first_declared_card_that_matches() -> None:
    cards = CardIndex(
        [
            rate(unit_price="1", usage_type="* Bandwidth", region="Europe"),
            rate(unit_price="2", usage_type="North America Bandwidth"),
            rate(unit_price="3", usage_type="Europe Bandwidth"),
            rate(unit_price="4"),
            rate(unit_price="5", usage_type="Asia Requests"),
        ]
    )
    assert cards.find(line("1", "North America Bandwidth", region="Europe")) == 0
    assert cards.find(line("1", "North America Bandwidth")) == 1
    assert cards.find(line("1", "Europe Bandwidth", region="Europe")) == 0
    assert cards.find(line("1", "Europe Bandwidth", region="Asia")) == 2
    assert cards.find(line("1", "Asia Requests")) == 3  # the catch-all came first
    assert CardIndex([rate(unit_price="5", usage_type="Asia Requests")]).find(line("1")) is None


quantities = st.decimals(min_value=0, max_value=5000, places=3)
days = st.integers(min_value=1, max_value=30)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(quantities, days, days), min_size=1, max_size=6),
    quantities,
    st.sampled_from(["tiers", "dated", "commit"]),
)
def test_the_impact_is_the_month_priced_both_ways(
    spans: list[tuple[Decimal, int, int]], before: Decimal, card: str
) -> None:
    rates = {"tiers": [rate(tiers=TIERS)], "dated": DATED, "commit": [rate(tiers=TIERS)]}[card]
    commits = [commitment(amount="150 USD", usage_type="Europe *")] if card == "commit" else []
    lines = [
        line(str(q), "Europe Bandwidth" if i % 2 else "North America Bandwidth",
             region=f"region {i}",  # lines are distinct, as tracked lines are
             start=date(2024, 6, min(a, b)), end=date(2024, 6, max(a, b)))
        for i, (q, a, b) in enumerate(spans)
    ]  # fmt: skip
    changed = lines[0]
    impact = ImpactPricer(rates, commits, lines).impact(changed, before)
    now = price_lines(rates, commits, lines).month_totals()
    then = price_lines(
        rates, commits, [replace(x, quantity=before) if x is changed else x for x in lines]
    ).month_totals()
    key = ("fastly", JUNE, "USD")
    assert impact is not None
    with localcontext(EXACT_CONTEXT):
        # The sum of the lines' shares and the tiered total may differ at the 100th digit.
        assert abs(impact.amount - (now[key] - then[key])) < Decimal("1E-40")
