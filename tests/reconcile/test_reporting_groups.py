"""Reporting groups in showback: (lines, rules) -> owners exact to the cent, a group's part of
its contract product's line owned once, the rest with the contract's rule or ``unallocated``,
and the owners plus ``unallocated`` always the account's total."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import reporting_group_service
from reconciler.reconcile.allocation import allocate
from reconciler.reconcile.costing import CostLine, price_lines
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.ownership import owner_of, unused_rules
from reconciler.reports.showback import team_usage
from reconciler.team_settings import ShowbackSettings, TeamSettings
from tests.reconcile.test_allocation import line, rate, shares, team

AKAMAI_RATE = rate("0.0333", source="akamai")


def contract(quantity: str, **values: Any) -> CostLine:
    base: dict[str, Any] = {
        "source": "akamai",
        "account": "K-1",
        "product": "1-AMD",
        "product_name": "Adaptive Media Delivery",
        "usage_type": "Total MB",
    }
    billable = values.pop("billable", None)
    found = replace(line(quantity, **{**base, **values}), billable=billable)
    if "Percentile" in found.usage_type:
        return replace(found, kind=MeasureKind.PERCENTILE)
    return found


def group(name: str, quantity: str, **values: Any) -> CostLine:
    service = reporting_group_service(name)
    return contract(quantity, service=service, service_name=f"reporting group {name}", **values)


def cp_code(code: str, quantity: str) -> CostLine:
    return contract(quantity, service=code)


GROUP_100 = reporting_group_service("100")
VIDEO = team("video", {"reporting_group": "100"})
RADIO = team("radio", {"reporting_group": "2*"})
MEDIA = team("media", {"source": "akamai", "product": "Adaptive Media Delivery"})
EDGE = team("edge", {"cp_code": "7654321"})


@pytest.mark.parametrize(
    ("rules", "values", "owner"),
    [
        ([VIDEO], {"service": reporting_group_service("100")}, "video"),
        ([VIDEO], {"service": reporting_group_service("101")}, "unallocated"),
        ([RADIO], {"service": reporting_group_service("250")}, "radio"),
        # A reporting group rule owns only a group's lines: never the product's, nor a CP code's.
        ([VIDEO], {"service": ""}, "unallocated"),
        ([team("g", {"reporting_group": "7*"})], {"service": "7654321"}, "unallocated"),
        # A rule naming a CP code or a service never owns a group's line ...
        ([EDGE], {"service": reporting_group_service("100")}, "unallocated"),
        ([team("s", {"service": "report*"})], {"service": GROUP_100}, "unallocated"),
        # ... and one naming neither owns it as it owns the product's line (first match wins).
        ([MEDIA, VIDEO], {"service": reporting_group_service("100")}, "media"),
        ([VIDEO, MEDIA], {"service": reporting_group_service("100")}, "video"),
        ([team("k", {"contract": "K-2"})], {"service": GROUP_100}, "unallocated"),
    ],
)
def test_owner_of_a_reporting_group_line(
    rules: list[TeamSettings], values: dict[str, str], owner: str
) -> None:
    assert owner_of(rules, contract("1", **values)) == owner


def test_a_reporting_group_rule_that_owns_nothing_is_named() -> None:
    lines = [contract("1"), group("100", "1")]
    assert unused_rules([VIDEO, RADIO], lines) == ["teams[1].match[0] (radio: reporting_group=2*)"]


# 1000 GB at 0.0333 USD: the contract's line costs 33.30 USD, the billing truth.
CASES: list[tuple[str, list[CostLine], list[TeamSettings], dict[str, str]]] = [
    (
        "each group owns its part, what no group covers stays unallocated",
        [contract("1000"), group("100", "400"), group("250", "250")],
        [VIDEO, RADIO],
        # 8.325 and 11.655: the cent left over goes to the tie's first name.
        {"video": "13.32", "radio": "8.33", "unallocated": "11.65", "total": "33.30"},
    ),
    (
        "what no group covers goes to the contract-level rule",
        [contract("1000"), group("100", "400"), group("250", "250")],
        [VIDEO, RADIO, MEDIA],
        {"video": "13.32", "radio": "8.32", "media": "11.66", "total": "33.30"},
    ),
    (
        "a contract-level rule declared first owns the groups' parts too",
        [contract("1000"), group("100", "400")],
        [MEDIA, VIDEO],
        {"media": "33.30", "total": "33.30"},
    ),
    (
        "a group no rule owns leaves its part with the contract line",
        [contract("1000"), group("100", "400"), group("999", "500")],
        [VIDEO, MEDIA],
        {"video": "13.32", "media": "19.98", "total": "33.30"},
    ),
    (
        "overlapping groups above the contract's volume share all of it, never more",
        [contract("1000"), group("100", "700"), group("250", "600")],
        [VIDEO, RADIO, MEDIA],
        {"video": "17.93", "radio": "15.37", "total": "33.30"},
    ),
    (
        "a group of a usage the contract has no volume of carries nothing",
        [contract("1000"), group("100", "400", usage_type="Total Hits")],
        [VIDEO, MEDIA],
        {"media": "33.30", "total": "33.30"},
    ),
    (
        "a percentile is never a share: the contract's rule keeps it",
        [
            contract("1000", usage_type="95th Percentile"),
            group("100", "400", usage_type="95th Percentile"),
        ],
        [VIDEO, MEDIA],
        {"media": "33.30", "total": "33.30"},
    ),
    (
        "a not billable contract stat costs nothing, so neither does its groups' part",
        [contract("1000", billable=False), group("100", "400")],
        [VIDEO, MEDIA],
        {"media": "0.00", "video": "0.00", "total": "0.00"},
    ),
    (
        "with CP codes, groups carve first and the rest is split by the CP codes' volume",
        [contract("1000"), group("100", "400"), cp_code("7654321", "750"), cp_code("12345", "250")],
        [VIDEO, EDGE],
        {"video": "13.32", "edge": "14.99", "unallocated": "4.99", "total": "33.30"},
    ),
]


@pytest.mark.parametrize(
    ("lines", "teams", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_reporting_groups_own_their_part_of_the_contract_line(
    lines: list[CostLine], teams: list[TeamSettings], expected: dict[str, str]
) -> None:
    found = shares(lines, [AKAMAI_RATE], teams=teams)
    assert found == expected
    owned = sum(Decimal(v) for k, v in found.items() if k != "total")
    assert owned == Decimal(found["total"])


def test_a_groups_line_is_never_priced_on_its_own() -> None:
    # Even a per-service rate leaves it out: the contract's line is the one billed.
    lines = [contract("1000"), group("100", "400")]
    sheet = price_lines([AKAMAI_RATE, rate("1", source="akamai", per_service=True)], [], lines)
    assert [c.line.service for c in sheet.lines] == [""]
    assert [u.line.service for u in sheet.unpriced] == [reporting_group_service("100")]


def test_team_usage_counts_a_groups_part_once() -> None:
    lines = [
        contract("1000"),
        group("100", "400"),
        group("250", "250"),
        cp_code("7654321", "750"),
        cp_code("1234567", "250"),
    ]
    usage = {u.team: u.quantity for u in team_usage([VIDEO, RADIO, EDGE], lines)}
    # 35% is in no group: the CP codes' volumes share it (750 and 250 of 1000).
    assert usage == {
        "video": Decimal("400"),
        "radio": Decimal("250"),
        "edge": Decimal("262.5"),
        "unallocated": Decimal("87.5"),
    }
    assert sum(usage.values()) == Decimal("1000")


quantities = st.decimals(min_value=0, max_value=100_000, places=3, allow_nan=False)
group_ids = st.sampled_from(["100", "250", "251", "999"])
usages = st.sampled_from(["Total MB", "Edge Hits"])
splits = st.sampled_from([{}, {"split": "owner", "owner": "video"}])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(quantities, usages), min_size=1, max_size=4),
    st.lists(st.tuples(group_ids, quantities, usages), max_size=6),
    st.none() | st.decimals(min_value=0, max_value=1, places=2, allow_nan=False),
    st.decimals(min_value="0.0001", max_value=1, places=4, allow_nan=False),
    splits,
    st.booleans(),
)
def test_owners_plus_unallocated_are_the_account_total_with_groups(
    contracts: list[tuple[Decimal, str]],
    groups: list[tuple[str, Decimal, str]],
    cp_split: Decimal | None,
    price: Decimal,
    split: dict[str, Any],
    with_media: bool,
) -> None:
    lines = [contract(str(q), usage_type=u, product=f"p{i}") for i, (q, u) in enumerate(contracts)]
    lines += [group(g, str(q), usage_type=u, product="p0") for g, q, u in groups]
    if cp_split is not None:
        # The first product broken down by two CP codes, as the per-CP-code summary does.
        first, usage_type = contracts[0]
        edge = first * cp_split
        for code, quantity in (("7654321", edge), ("1234567", first - edge)):
            lines.append(contract(str(quantity), service=code, product="p0", usage_type=usage_type))
    teams = [VIDEO, RADIO, EDGE, *([MEDIA] if with_media else [])]
    sheet = price_lines([rate(str(price), source="akamai")], [], lines)
    allocation = allocate(sheet, lines, teams, ShowbackSettings.model_validate(split))
    for key, exact in sheet.month_totals().items():
        total = exact.quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        owned = [c for c in allocation.costs if (c.source, c.month, c.currency) == key]
        assert sum((c.amount for c in owned), Decimal(0)) == total == allocation.totals[key]
    usage = team_usage(teams, lines)
    for usage_type in {u for _, u in contracts}:
        volume = sum((Decimal(q) for q, u in contracts if u == usage_type), Decimal(0))
        counted = sum((u.quantity for u in usage if u.usage_type == usage_type), Decimal(0))
        assert abs(counted - volume) < Decimal("1e-20")
