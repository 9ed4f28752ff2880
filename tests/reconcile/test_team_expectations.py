"""Expectations and budgets that name a team apply to that team's lines and share of the bill."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from reconciler.domain import LineStatus, Month
from reconciler.errors import ConfigError
from reconciler.reconcile.allocation import allocate
from reconciler.reconcile.costing import price_lines
from reconciler.reconcile.expectations import MonthLine, evaluate
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.spend import budget_findings
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


def test_a_team_budget_is_measured_against_its_share_of_the_bill() -> None:
    # 10.00 USD of account-level usage: video's services carry 60%, so video's share is 6.00.
    lines = [
        line("100"),
        line("60", service="video-1"),
        line("30", service="svc-web"),
        line("10", service="svc-other"),
    ]
    sheet = price_lines([ACCOUNT_RATE], [], lines)
    shares = allocate(sheet, lines, TEAMS, ShowbackSettings())
    video = ExpectationSettings.model_validate(
        {"source": "fastly", "team": "video", "monthly_budget": "5.99 USD"}
    )
    web = ExpectationSettings.model_validate(
        {"source": "fastly", "team": "web", "monthly_budget": "3 USD"}
    )
    (over,) = budget_findings([video, web], sheet, sheet, (shares, shares))
    assert over.item.kind == "over_budget"
    assert over.item.after is not None and over.item.after.quantity == Decimal("6.00")
    assert over.item.message == (
        "fastly team video: 2024-06 costs 6.00 USD, over the monthly budget of 5.99 USD by 0.01 USD"
    )


@pytest.mark.parametrize(
    ("expectations", "message"),
    [
        ([{"team": "ops", "monthly_max": 1}], "expectations[0].team: no team named 'ops'"),
        (
            [{"team": "video", "product": "x", "monthly_budget": "1 USD"}],
            "expectations[0]: a team budget is the team's share of each source's month: it takes "
            "no product",
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
