"""Showback: (lines, rules, shared split) -> owners and their cost, exact to the cent."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cost_settings import CommitmentSettings, CreditSettings, RateSettings
from reconciler.domain import LineStatus, Month
from reconciler.reconcile.allocation import allocate, apportion
from reconciler.reconcile.costing import CostLine, price_lines
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.ownership import owner_of, unused_rules
from reconciler.team_settings import ShowbackSettings, TeamSettings

JUNE = Month(2024, 6)


def line(
    quantity: str,
    *,
    source: str = "fastly",
    account: str = "",
    product: str = "cdn_usage",
    product_name: str = "Full-Site Delivery",
    usage_type: str = "North America Bandwidth",
    region: str = "",
    service: str = "",
    service_name: str = "",
) -> CostLine:
    return CostLine(
        source,
        account,
        product,
        product_name,
        usage_type,
        region,
        service,
        JUNE,
        date(2024, 6, 1),
        date(2024, 6, 30),
        Decimal(quantity),
        "GB",
        LineStatus.FINALIZED,
        MeasureKind.VOLUME,
        service_name=service_name,
    )


def team(name: str, *rules: dict[str, str]) -> TeamSettings:
    return TeamSettings.model_validate({"name": name, "match": list(rules)})


def rate(price: str, **values: Any) -> RateSettings:
    base: dict[str, Any] = {"source": "*", "currency": "USD", "unit_price": price}
    return RateSettings.model_validate({**base, **values})


VIDEO = team("video", {"source": "fastly", "service": "video-*"}, {"contract": "C-VID*"})
WEB = team("web", {"source": "fastly", "service": "svc-web"}, {"product": "Ion*"})
TEAMS = [VIDEO, WEB]


@pytest.mark.parametrize(
    ("rules", "values", "owner"),
    [
        ([VIDEO], {"service": "abc", "service_name": "video-eu"}, "video"),
        ([VIDEO], {"service": "video-1"}, "video"),
        ([VIDEO], {"service": "abc", "service_name": "images"}, "unallocated"),
        # A rule naming a service never owns an account-level line.
        ([team("all", {"service": "*x*"})], {"service": ""}, "unallocated"),
        ([team("all", {"source": "fastly"})], {"service": ""}, "all"),
        (TEAMS, {"source": "akamai", "account": "C-VID1", "product": "1-ION"}, "video"),
        (TEAMS, {"source": "akamai", "account": "C-OTHER", "product_name": "Ion Standard"}, "web"),
        # First match wins: video is declared first.
        (
            [team("video", {"source": "akamai"}), team("web", {"product": "1-ION"})],
            {"source": "akamai", "product": "1-ION"},
            "video",
        ),
        (TEAMS, {"source": "akamai", "account": "C-OTHER", "product": "1-WAA"}, "unallocated"),
        ([], {"service": "video-1"}, "unallocated"),
    ],
)
def test_owner_of_a_line(rules: list[TeamSettings], values: dict[str, str], owner: str) -> None:
    assert owner_of(rules, line("1", **values)) == owner


def test_unused_rules_are_named_by_key_path() -> None:
    lines = [line("1", service="video-1"), line("1", source="akamai", product_name="Ion Standard")]
    shadowed = team("late", {"service": "video-*"})
    assert unused_rules([*TEAMS, shadowed], lines) == [
        "teams[0].match[1] (video: contract=C-VID*)",
        "teams[1].match[0] (web: source=fastly service=svc-web)",
        "teams[2].match[0] (late: service=video-*)",
    ]


def shares(
    lines: list[CostLine],
    rates: list[RateSettings],
    showback: dict[str, Any] | None = None,
    teams: list[TeamSettings] = TEAMS,
    commitments: list[CommitmentSettings] = (),  # type: ignore[assignment]
    credits: list[CreditSettings] = (),  # type: ignore[assignment]
) -> dict[str, str]:
    sheet = price_lines(rates, commitments, lines, credits)
    allocation = allocate(sheet, lines, teams, ShowbackSettings.model_validate(showback or {}))
    found = {c.team: str(c.amount) for c in allocation.costs}
    found["total"] = str(sum(allocation.totals.values(), Decimal(0)))
    return found


ACCOUNT_LINE = line("100")  # priced at 0.10 -> 10.00 USD, of no service
SERVICE_LINES = [
    line("60", service="video-1"),
    line("30", service="svc-web"),
    line("10", service="svc-other"),
]
ACCOUNT_RATE = rate("0.10", source="fastly")


@pytest.mark.parametrize(
    ("lines", "showback", "expected"),
    [
        # Proportional to the service lines of the same usage, the unowned service included.
        (
            [ACCOUNT_LINE, *SERVICE_LINES],
            None,
            {"video": "6.00", "web": "3.00", "unallocated": "1.00", "total": "10.00"},
        ),
        (
            [ACCOUNT_LINE, *SERVICE_LINES],
            {"split": "fixed", "shares": {"video": 1, "web": 3}},
            {"video": "2.50", "web": "7.50", "total": "10.00"},
        ),
        (
            [ACCOUNT_LINE, *SERVICE_LINES],
            {"split": "owner", "owner": "web"},
            {"web": "10.00", "total": "10.00"},
        ),
        # Thirds: one cent left over goes to the largest remainder, then by name.
        (
            [
                ACCOUNT_LINE,
                line("1", service="video-1"),
                line("1", service="svc-web"),
                line("1", service="svc-other"),
            ],
            None,
            {"unallocated": "3.34", "video": "3.33", "web": "3.33", "total": "10.00"},
        ),
        # No service lines of that usage and no owned cost: it stays unallocated.
        (
            [ACCOUNT_LINE, line("5", usage_type="Europe Bandwidth", service="video-1")],
            None,
            {"unallocated": "10.00", "total": "10.00"},
        ),
    ],
)
def test_shared_account_line(
    lines: list[CostLine], showback: dict[str, Any] | None, expected: dict[str, str]
) -> None:
    assert shares(lines, [ACCOUNT_RATE], showback) == expected


AKAMAI = [
    line("1000", source="akamai", account="C-VID1", product="1-WAA"),  # video 15.00
    line("500", source="akamai", account="C-X", product_name="Ion Standard"),  # web 7.50
    line("333", source="akamai", account="C-X", product="1-DSA"),  # unallocated 4.995
]
AKAMAI_RATE = rate("0.015", source="akamai")


def test_akamai_rounding_follows_the_total() -> None:
    found = shares(AKAMAI, [AKAMAI_RATE])
    assert found["total"] == "27.50"
    # 4.995 has the largest remainder: it takes the cent the rounded total leaves over.
    assert found == {"video": "15.00", "web": "7.50", "unallocated": "5.00", "total": "27.50"}


def test_a_money_commitment_shortfall_is_split_by_owned_cost() -> None:
    commitment = CommitmentSettings.model_validate(
        {"name": "commit", "source": "akamai", "currency": "USD", "amount": "60 USD"}
    )
    lines = AKAMAI[:2]  # 15.00 video + 7.50 web; the commit lifts the month to 60.00
    assert shares(lines, [AKAMAI_RATE], commitments=[commitment]) == {
        "video": "40.00",
        "web": "20.00",
        "total": "60.00",
    }


def test_a_credit_is_split_by_fixed_shares() -> None:
    credit = CreditSettings.model_validate({"source": "akamai", "amount": "2.50 USD"})
    found = shares(
        AKAMAI[:2],
        [AKAMAI_RATE],
        {"split": "fixed", "shares": {"video": 1, "web": 1}},
        credits=[credit],
    )
    assert found == {"video": "13.75", "web": "6.25", "total": "20.00"}


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [
        ("1.00", {"a": "1/3", "b": "1/3", "c": "1/3"}, {"a": "0.34", "b": "0.33", "c": "0.33"}),
        ("0.01", {"b": "1/200", "a": "1/200"}, {"a": "0.01", "b": "0.00"}),
        ("-1.00", {"a": "-2/3", "b": "-1/3"}, {"a": "-0.67", "b": "-0.33"}),
        ("5", {"a": "2.5", "b": "2.5"}, {"a": "3", "b": "2"}),
    ],
)
def test_apportion(total: str, parts: dict[str, str], expected: dict[str, str]) -> None:
    from fractions import Fraction

    unit = Decimal("1") if "." not in total else Decimal("0.01")
    found = apportion(Decimal(total), {k: Fraction(v) for k, v in parts.items()}, unit)
    assert {k: str(v) for k, v in found.items()} == expected


amounts = st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False)
services = st.sampled_from(["", "video-1", "svc-web", "svc-other", "video-2"])
usage_types = st.sampled_from(["North America Bandwidth", "Europe Bandwidth"])
splits = st.sampled_from(
    [
        {},
        {"split": "fixed", "shares": {"video": 2, "web": 1, "unallocated": 1}},
        {"split": "owner", "owner": "video"},
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(amounts, services, usage_types), min_size=1, max_size=12),
    st.decimals(min_value=0, max_value=1, places=7, allow_nan=False),
    splits,
    st.decimals(min_value=0, max_value=500, places=2, allow_nan=False),
    st.decimals(min_value="0.01", max_value=50, places=3, allow_nan=False),
)
def test_owners_plus_unallocated_add_up_to_the_account_total(
    rows: list[tuple[Decimal, str, str]],
    price: Decimal,
    split: dict[str, Any],
    commit: Decimal,
    credit: Decimal,
) -> None:
    lines = [
        line(str(quantity), usage_type=usage, service=service, product=f"p{i % 2}")
        for i, (quantity, service, usage) in enumerate(rows)
    ]
    rates = [rate(str(price), source="fastly", per_service=per) for per in (False, True)]
    commitments = [
        CommitmentSettings.model_validate(
            {"name": "c", "source": "fastly", "currency": "USD", "amount": f"{commit} USD"}
        )
    ]
    credits = [CreditSettings.model_validate({"source": "fastly", "amount": f"{credit} USD"})]
    sheet = price_lines(rates, commitments, lines, credits)
    allocation = allocate(sheet, lines, TEAMS, ShowbackSettings.model_validate(split))
    for key, exact in sheet.month_totals().items():
        total = exact.quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        owned = [c for c in allocation.costs if (c.source, c.month, c.currency) == key]
        assert allocation.totals[key] == total
        assert sum((c.amount for c in owned), Decimal(0)) == total
        assert all(c.amount == c.amount.quantize(Decimal("0.01")) for c in owned)
        assert len({c.team for c in owned}) == len(owned)
