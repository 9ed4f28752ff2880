"""Expectations and budgets that name a team apply to that team's lines and share of the bill."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from reconciler.domain import LineStatus, Month
from reconciler.errors import ConfigError
from reconciler.reconcile.allocation import allocate
from reconciler.reconcile.costing import CostLine, price_lines
from reconciler.reconcile.expectations import MonthLine, evaluate
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.team_budgets import SourceShares, team_budget_findings
from reconciler.settings import ExpectationSettings, settings_from_mapping
from reconciler.team_settings import ShowbackSettings
from tests.reconcile.test_allocation import ACCOUNT_RATE, TEAMS, line, rate

JUNE = Month(2024, 6)
PERCENTILE = MeasureKind.PERCENTILE
TODAY = date(2024, 7, 10)


def month_line(quantity: str, owner: str, account: str) -> MonthLine:
    return MonthLine(
        "akamai",
        "akamai",
        account,
        "1-WAA",
        "Web Application Accelerator",
        "Total MB",
        "GLOBAL",
        "",
        JUNE,
        Decimal(quantity),
        "GB",
        LineStatus.FINALIZED,
        owner=owner,
    )


def expectation(**values: Any) -> ExpectationSettings:
    return ExpectationSettings.model_validate({"source": "akamai", **values})


def test_a_team_expectation_counts_only_the_team_s_lines() -> None:
    lines = [month_line("700", "video", "C-VID1"), month_line("500", "web", "C-X")]
    found = evaluate([expectation(team="video", monthly_max="800")], lines, TODAY)
    assert found == []
    (over,) = evaluate([expectation(team="video", monthly_max="600")], lines, TODAY)
    assert over.item.kind == "over_expectation"
    assert over.item.after is not None and over.item.after.quantity == Decimal(700)
    assert "team video" in over.item.message
    (whole,) = evaluate([expectation(monthly_max="1000")], lines, TODAY)
    assert whole.item.after is not None and whole.item.after.quantity == Decimal(1200)


def source_shares(lines: list[CostLine], status: LineStatus = LineStatus.FINALIZED) -> SourceShares:
    sheet = price_lines([ACCOUNT_RATE, rate("0.02", source="akamai")], [], lines)
    allocation = allocate(sheet, lines, TEAMS, ShowbackSettings())
    return SourceShares(lines[0].source, allocation, allocation, {JUNE: status})


# 10.00 USD of Fastly account-level usage: video's services carry 60%, so video's share is
# 6.00; video's Akamai contract costs 2.00.
FASTLY = [
    line("100"),
    line("60", service="video-1"),
    line("30", service="svc-web"),
    line("10", service="svc-other"),
]
AKAMAI = [line("100", source="akamai", account="C-VID1")]


def team_budget(amount: str, source: str = "*") -> ExpectationSettings:
    return ExpectationSettings.model_validate(
        {"source": source, "team": "video", "monthly_budget": amount}
    )


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        # One budget for all the team's sources: 6.00 + 2.00 = 8.00 USD in June.
        (
            team_budget("7.99 USD"),
            "team video: 2024-06 costs 8.00 USD (akamai 2.00 USD + fastly 6.00 USD), over the "
            "monthly budget of 7.99 USD by 0.01 USD",
        ),
        (team_budget("8 USD"), None),  # neither source's share is compared alone
        (
            team_budget("5.99 USD", source="fastly"),
            "fastly team video: 2024-06 costs 6.00 USD, over the monthly budget of 5.99 USD by "
            "0.01 USD",
        ),
        (team_budget("7.99 EUR"), None),  # no cost in EUR
    ],
)
def test_a_team_budget_covers_all_the_team_s_sources_in_the_month(
    budget: ExpectationSettings, expected: str | None
) -> None:
    shares = [source_shares(FASTLY), source_shares(AKAMAI)]
    found = team_budget_findings([budget], shares, [JUNE], "fastly", "fastly")
    assert [e.item.message for e in found] == ([] if expected is None else [expected])
    assert all((e.item.source, e.item.kind) == ("fastly", "over_budget") for e in found)
    # Only the budget's home (its first source) raises it: never once per source.
    assert team_budget_findings([budget], shares, [JUNE], "akamai", "akamai") == []


def test_a_collecting_month_projects_the_team_s_sources_together() -> None:
    collecting = [source_shares(FASTLY, LineStatus.COLLECTING), source_shares(AKAMAI)]
    projected = replace(collecting[0], actual=source_shares(FASTLY[1:]).actual)
    found = team_budget_findings([team_budget("7 USD")], [projected, collecting[1]], [JUNE],
                                 "fastly", "fastly")  # fmt: skip
    (item,) = [e.item for e in found]
    assert item.kind == "projected_over_budget" and item.after is not None
    assert item.after.quantity == Decimal("8.00")
    assert item.after.status is LineStatus.COLLECTING


def test_a_team_budget_in_another_currency_than_its_sources_is_refused() -> None:
    data = {
        "sources": [
            {"name": "fastly", "provider": "fastly"},
            {"name": "akamai", "provider": "akamai", "edgerc": "/nonexistent"},
        ],
        "rates": [
            {"source": "fastly", "currency": "USD", "unit_price": "0.1"},
            {"name": "akamai eur", "source": "akamai", "currency": "EUR", "unit_price": "0.1"},
        ],
        "teams": [{"name": "video", "match": [{"service": "video-*"}]}],
        "expectations": [{"team": "video", "monthly_budget": "100 USD"}],
    }
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    assert (
        "expectations[0].monthly_budget: team video's budget is in USD but 'akamai eur' prices "
        "source 'akamai' in EUR; a team budget adds up its sources in one currency"
    ) in str(caught.value)
    data["expectations"] = [{"team": "video", "source": "fastly", "monthly_budget": "100 USD"}]
    assert settings_from_mapping(data).expectations[0].team == "video"


@pytest.mark.parametrize(
    ("expectations", "message"),
    [
        ([{"team": "ops", "monthly_max": 1}], "expectations[0].team: no team named 'ops'"),
        (
            [{"team": "video", "product": "x", "monthly_budget": "1 USD"}],
            "expectations[0]: a team budget is the team's share of the bill: it takes no product",
        ),
    ],
)
def test_team_expectation_errors_name_the_key(
    expectations: list[dict[str, Any]], message: str
) -> None:
    data = {
        "teams": [{"name": "video", "match": [{"service": "video-*"}]}],
        "expectations": expectations,
    }
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    assert message in str(caught.value)


def test_an_unrelated_rate_does_not_change_team_shares() -> None:
    lines = [line("100", source="akamai", account="C-VID1")]
    sheet = price_lines([rate("0.02", source="akamai")], [], lines)
    shares = allocate(sheet, lines, TEAMS, ShowbackSettings())
    assert [(c.team, str(c.amount)) for c in shares.costs] == [("video", "2.00")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"teams": [{"name": "a"}, {"name": "a"}]},
            "teams: two teams are named 'a'",
        ),
        ({"teams": [{"name": "unallocated"}]}, "teams[0].name: 'unallocated'"),
        ({"teams": [{"name": "shared"}]}, "teams[0].name: 'shared'"),
        ({"teams": [{"name": "a b"}]}, "teams[0].name: invalid team name 'a b'"),
        ({"teams": [{"name": "a", "match": [{"cp": "1"}]}]}, "teams[0].match[0].cp: unknown key"),
        (
            {"teams": [{"name": "a"}], "showback": {"split": "fixed"}},
            "showback: split = 'fixed' needs shares",
        ),
        (
            {"teams": [{"name": "a"}], "showback": {"split": "fixed", "shares": {"b": 1}}},
            "showback.shares: no team named 'b'",
        ),
        (
            {"teams": [{"name": "a"}], "showback": {"split": "owner", "owner": "b"}},
            "showback.owner: no team named 'b'",
        ),
        (
            {"showback": {"split": "fixed", "shares": {"a": -1}}},
            "showback.shares.a: share must be a finite number >= 0",
        ),
    ],
)
def test_team_config_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    assert message in str(caught.value)


def fastly_line(
    quantity: str,
    owner: str,
    service: str = "",
    *,
    usage_type: str = "North America Bandwidth",
    unit: str = "GB",
    kind: MeasureKind = MeasureKind.VOLUME,
) -> MonthLine:
    return MonthLine(
        "fastly",
        "fastly",
        "",
        "cdn_usage",
        "Full-Site Delivery",
        usage_type,
        "",
        service,
        JUNE,
        Decimal(quantity),
        unit,
        LineStatus.FINALIZED,
        kind=kind,
        owner=owner,
    )


def fastly_expectation(**values: Any) -> ExpectationSettings:
    return ExpectationSettings.model_validate({"source": "fastly", "team": "video", **values})


# The account line (1000 GB, shared) is the sum of its services' lines: video owns two.
FASTLY_MONTH = [
    fastly_line("1000", "unallocated"),
    fastly_line("300", "video", "video-1"),
    fastly_line("400", "video", "video-2"),
    fastly_line("300", "web", "svc-web"),
]


@pytest.mark.parametrize(
    ("lines", "monthly_max", "expected"),
    [
        (FASTLY_MONTH, "800", []),  # 700 GB: the two services added, not each alone
        (FASTLY_MONTH, "650", ["700"]),
        # A team owning the account line as well counts its services once, never both.
        ([fastly_line("700", "video"), *FASTLY_MONTH[1:3]], "650", ["700"]),
        # An account line no service breaks down is the team's usage of its own.
        ([fastly_line("50", "video", usage_type="Requests"), *FASTLY_MONTH], "650", ["700"]),
    ],
)
def test_a_team_volume_expectation_adds_up_the_team_s_services(
    lines: list[MonthLine], monthly_max: str, expected: list[str]
) -> None:
    found = evaluate(
        [fastly_expectation(usage_type="North America Bandwidth", monthly_max=monthly_max)],
        lines,
        TODAY,
    )
    over = [e.item for e in found if e.item.kind == "over_expectation"]
    assert [str(i.after.quantity) for i in over if i.after is not None] == expected
    assert all(i.service == "" for i in over)  # the team's total, not one service's


def test_a_team_percentile_expectation_is_per_service_never_a_sum() -> None:
    p95 = [
        fastly_line("60", "video", "video-1", usage_type="95th", unit="Mbps", kind=PERCENTILE),
        fastly_line("90", "video", "video-2", usage_type="95th", unit="Mbps", kind=PERCENTILE),
    ]
    found = evaluate([fastly_expectation(usage_type="95th", monthly_max="80")], p95, TODAY)
    (over,) = [e.item for e in found if e.item.kind == "over_expectation"]
    assert over.service == "video-2" and over.after is not None
    assert over.after.quantity == Decimal(90)  # video-2 alone; 60 + 90 is no 95th percentile
    assert over.message.startswith("fastly/95th team video / cdn_usage service video-2: ")
    assert evaluate([fastly_expectation(usage_type="95th", monthly_max="95")], p95, TODAY) == []
