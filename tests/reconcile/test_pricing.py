"""Rate cards, tiers and commitments: (usage, rates, commitment, dates) -> cost, to the cent."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.cost_settings import CommitmentSettings, RateSettings
from reconciler.domain import LineStatus, Month
from reconciler.money import Money
from reconciler.reconcile.costing import CostLine, price_lines
from reconciler.reconcile.measures import classify
from reconciler.reconcile.pricing import RateVersion, Tier, Usage, price_volume, tiered

JUNE = Month(2024, 6)
F = LineStatus.FINALIZED


def line(
    quantity: str,
    *,
    start: date = date(2024, 6, 1),
    end: date = date(2024, 6, 30),
    unit: str = "GB",
    usage_type: str = "North America Bandwidth",
    region: str = "North America",
    month: Month = JUNE,
) -> CostLine:
    return CostLine(
        "fastly",
        "acct",
        "cdn_usage",
        "Full-Site Delivery",
        usage_type,
        region,
        "",
        month,
        start,
        end,
        Decimal(quantity),
        unit,
        F,
        classify("akamai", usage_type, unit).kind,
    )


def rate(**values: Any) -> RateSettings:
    base: dict[str, Any] = {"source": "fastly", "usage_type": "North America*", "currency": "USD"}
    return RateSettings.model_validate({**base, **values})


def commit(**values: Any) -> CommitmentSettings:
    base: dict[str, Any] = {"name": "commit", "source": "fastly", "currency": "USD"}
    return CommitmentSettings.model_validate({**base, **values})


TIERS = [
    {"up_to": "10000", "unit_price": "0.12"},
    {"up_to": "50000", "unit_price": "0.08"},
    {"unit_price": "0.05"},
]


def total(rates: list[RateSettings], lines: list[CostLine], commits: Any = ()) -> str:
    sheet = price_lines(rates, list(commits), lines)
    assert not sheet.unpriced, sheet.unpriced
    amounts = sheet.month_totals()
    return " + ".join(
        f"{Money(amount, currency).display()} ({month})"
        for (_, month, currency), amount in sorted(amounts.items())
    )


@pytest.mark.parametrize(
    ("rates", "lines", "commits", "expected"),
    [
        pytest.param(
            [rate(unit_price="0.12")], [line("1000")], [], "120.00 USD (2024-06)", id="flat"
        ),
        pytest.param(
            [rate(unit_price="0.12")], [line("0.004")], [], "0.00 USD (2024-06)", id="below-a-cent"
        ),
        pytest.param(
            [rate(tiers=TIERS)], [line("10000")], [], "1,200.00 USD (2024-06)", id="tier-top"
        ),
        pytest.param(
            [rate(tiers=TIERS)], [line("10001")], [], "1,200.08 USD (2024-06)", id="tier-boundary"
        ),
        pytest.param(
            [rate(tiers=TIERS)], [line("60000")], [], "4,900.00 USD (2024-06)", id="three-tiers"
        ),
        pytest.param(
            [rate(tiers=TIERS)],
            [line("6000"), line("4001", usage_type="North America Bandwidth 2")],
            [],
            "1,200.08 USD (2024-06)",
            id="tiers-on-the-month-total",
        ),
        pytest.param(
            [
                rate(name="2024", unit_price="0.12", effective_to="2024-06-15"),
                rate(name="renewal", unit_price="0.10", effective_from="2024-06-16"),
            ],
            [line("1000")],
            [],
            "110.00 USD (2024-06)",
            id="mid-month-rate-change-prorated",
        ),
        pytest.param(
            [
                rate(name="2024", unit_price="0.12", effective_to="2024-06-15"),
                rate(name="renewal", unit_price="0.10", effective_from="2024-06-16"),
            ],
            [
                line("600", end=date(2024, 6, 10)),
                line("400", start=date(2024, 6, 11), usage_type="North America Bandwidth b"),
            ],
            [],
            "114.00 USD (2024-06)",
            id="mid-month-rate-change-by-period",
        ),
        pytest.param(
            [
                rate(name="old", unit_price="0.12", effective_to="2024-05-31"),
                rate(name="new", unit_price="0.10", effective_from="2024-06-01"),
            ],
            [
                line("1000", month=Month(2024, 5), start=date(2024, 5, 1), end=date(2024, 5, 31)),
                line("1000"),
            ],
            [],
            "120.00 USD (2024-05) + 100.00 USD (2024-06)",
            id="contract-change-between-months",
        ),
        pytest.param(
            [],
            [line("8000")],
            [commit(quantity="10000", unit="GB", commit_price="0.10", overage_price="0.12")],
            "1,000.00 USD (2024-06)",
            id="commit-shortfall-billed-at-commit",
        ),
        pytest.param(
            [],
            [line("12000")],
            [commit(quantity="10000", unit="GB", commit_price="0.10", overage_price="0.12")],
            "1,240.00 USD (2024-06)",
            id="commit-overage",
        ),
        pytest.param(
            [],
            [
                line("120", unit="95/5 Mbps", usage_type="95/5 Mbps", end=date(2024, 6, 14)),
                line("131.1", unit="95/5 Mbps", usage_type="95/5 Mbps", start=date(2024, 6, 15)),
            ],
            [commit(quantity="100", unit="95/5 Mbps", commit_price="2.50", overage_price="3.00")],
            "343.30 USD (2024-06)",
            id="95/5-overage-on-the-percentile-never-a-sum",
        ),
        pytest.param(
            [rate(unit_price="0.12")],
            [line("35000")],
            [commit(amount="5000 USD")],
            "5,000.00 USD (2024-06)",
            id="money-commit-shortfall",
        ),
        pytest.param(
            [rate(unit_price="0.12")],
            [line("50000")],
            [commit(amount="5000 USD")],
            "6,000.00 USD (2024-06)",
            id="money-commit-exceeded",
        ),
        pytest.param(
            [rate(currency="JPY", unit_price="12.5")],
            [line("3")],
            [],
            "38 JPY (2024-06)",
            id="yen-has-no-minor-unit",
        ),
    ],
)
def test_expected_cost(
    rates: list[RateSettings], lines: list[CostLine], commits: Any, expected: str
) -> None:
    assert total(rates, lines, commits) == expected


def test_shortfall_is_shown() -> None:
    sheet = price_lines(
        [],
        [commit(quantity="10000", unit="GB", commit_price="0.10", overage_price="0.12")],
        [line("8000")],
    )
    (month,) = sheet.commitments
    assert (month.shortfall_quantity, month.shortfall, month.billed) == (
        Decimal("2000"),
        Decimal("200.00"),
        Decimal("1000.00"),
    )


def test_term_commit_burns_down_and_shows_the_shortfall_at_term_end() -> None:
    term = commit(
        period="term",
        quantity="30000",
        unit="GB",
        commit_price="0.10",
        overage_price="0.15",
        effective_from="2024-05-01",
        effective_to="2024-07-31",
    )
    lines = [
        line("12000", month=Month(2024, 5), start=date(2024, 5, 1), end=date(2024, 5, 31)),
        line("15000"),
        line("4000", month=Month(2024, 7), start=date(2024, 7, 1), end=date(2024, 7, 31)),
    ]
    sheet = price_lines([], [term], lines)
    rows = [(str(m.month), m.remaining, m.billed, m.shortfall) for m in sheet.commitments]
    assert rows == [
        ("2024-05", Decimal("18000"), Decimal("3000.00"), Decimal(0)),
        ("2024-06", Decimal("3000"), Decimal(0), Decimal(0)),
        ("2024-07", Decimal(0), Decimal("150.00"), Decimal(0)),
    ]


def test_a_percentile_commit_over_several_lines_is_not_summed() -> None:
    lines = [
        line("120", unit="95/5 Mbps", usage_type="95/5 Mbps", region="EMEA"),
        line("80", unit="95/5 Mbps", usage_type="95/5 Mbps", region="Americas"),
    ]
    sheet = price_lines([], [commit(quantity="100", unit="95/5 Mbps", commit_price="2.5")], lines)
    assert not sheet.lines
    assert {u.reason for u in sheet.unpriced} == {"commit matches several percentile lines"}


def test_unit_mismatch_is_not_priced() -> None:
    sheet = price_lines([rate(unit_price="0.12", unit="GB")], [], [line("10", unit="TB")])
    assert not sheet.lines
    assert [u.reason for u in sheet.unpriced] == ["in 'TB', the rate in 'GB'"]


def test_how_it_was_computed() -> None:
    sheet = price_lines([rate(name="cdn", tiers=TIERS)], [], [line("10001")])
    (cost,) = sheet.lines
    assert cost.basis == (
        "cdn: 10000 GB x 0.12 USD (tier 1) [2024-06-01..2024-06-30]; "
        "cdn: 1 GB x 0.08 USD (tier 2) [2024-06-01..2024-06-30]"
    )


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"currency": "usd", "unit_price": "1"}, "unknown currency 'usd'"),
        ({"currency": "XYZ", "unit_price": "1"}, "unknown currency 'XYZ'"),
        ({"currency": "USD"}, "set either unit_price or tiers"),
        ({"currency": "USD", "tiers": [{"unit_price": "1"}, {"unit_price": "2"}]}, "only the last"),
        (
            {"currency": "USD", "unit_price": "1", "effective_from": "2024-06-02",
             "effective_to": "2024-06-01"},
            "effective_to is before effective_from",
        ),
    ],
)  # fmt: skip
def test_rate_validation(values: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        RateSettings.model_validate(values)


quantities = st.decimals(min_value=0, max_value=10**7, places=3, allow_nan=False)
A_TIERS = tuple(Tier(t.up_to, t.unit_price) for t in rate(tiers=TIERS).tiers)
B_TIERS = (Tier(Decimal(20000), Decimal("0.2")), Tier(None, Decimal("0.01")))
VERSIONS = [
    RateVersion("a", "USD", None, A_TIERS, None, date(2024, 6, 12)),
    RateVersion("b", "USD", None, B_TIERS, date(2024, 6, 13), None),
]


@given(st.lists(quantities, min_size=1, max_size=8))
def test_splitting_usage_across_lines_never_changes_a_tiered_total(parts: list[Decimal]) -> None:
    whole = [Usage(sum(parts, Decimal(0)), "GB", JUNE.first_day, JUNE.last_day)]
    split = [Usage(p, "GB", JUNE.first_day, JUNE.last_day) for p in parts]
    one, many = price_volume(VERSIONS, JUNE, whole), price_volume(VERSIONS, JUNE, split)
    assert one is not None and many is not None
    assert one.amount == many.amount


@given(quantities, quantities)
def test_cost_is_monotone_in_volume(a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    cost = [
        price_volume(VERSIONS, JUNE, [Usage(q, "GB", JUNE.first_day, JUNE.last_day)])
        for q in (low, high)
    ]
    assert cost[0] is not None and cost[1] is not None
    assert cost[0].amount <= cost[1].amount


@given(quantities)
def test_tiers_add_up_to_the_quantity(quantity: Decimal) -> None:
    steps = tiered(quantity, VERSIONS[0].tiers)
    assert sum((units for _, units, _ in steps), Decimal(0)) == quantity


def test_overlapping_versions_of_a_rate_card_are_refused() -> None:
    from reconciler.errors import ConfigError
    from reconciler.settings import settings_from_mapping

    base = {"source": "fastly", "currency": "USD", "unit_price": "1"}
    with pytest.raises(ConfigError, match=r"rates\[1\]: in force on the same days as rates\[0\]"):
        settings_from_mapping(
            {
                "rates": [
                    {**base, "effective_to": "2024-06-15"},
                    {**base, "effective_from": "2024-06-15"},
                ]
            }
        )
    settings_from_mapping(
        {
            "rates": [
                {**base, "effective_to": "2024-06-15"},
                {**base, "effective_from": "2024-06-16"},
            ]
        }
    )


def test_a_line_names_the_versions_that_priced_its_month() -> None:
    rates = [
        rate(name="2024", unit_price="0.12", effective_to="2024-06-15"),
        rate(name="renewal", unit_price="0.10", effective_from="2024-06-16"),
    ]
    july = line("10", month=Month(2024, 7), start=date(2024, 7, 1), end=date(2024, 7, 31))
    sheet = price_lines(rates, [], [line("1000"), july])
    assert [c.priced_by for c in sheet.lines] == ["2024, renewal", "renewal"]
