"""Reporting groups in showback: (lines, rules) -> owners exact to the cent, a group's part of
its contract product's line owned once, the rest with the contract's rule or ``unallocated``,
and the owners plus ``unallocated`` always the account's total."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import Month, reporting_group_service
from reconciler.reconcile.allocation import Allocation, allocate
from reconciler.reconcile.costing import CostLine, CostSheet, price_lines
from reconciler.reconcile.group_shares import (
    as_decimal,
    breakdown_lines,
    group_shares,
    is_group_line,
)
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.month_values import MonthLine, month_totals
from reconciler.reconcile.ownership import owner_of, unused_rules
from reconciler.reports.showback import team_usage
from reconciler.settings import ExpectationSettings
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
        "in a month with group lines, groups alone break the line down: its CP codes split none",
        [contract("1000"), group("100", "400"), cp_code("7654321", "750"), cp_code("12345", "250")],
        [VIDEO, EDGE],
        {"video": "13.32", "unallocated": "19.98", "total": "33.30"},
    ),
    (
        "in a month with CP codes and no group lines, the CP codes' volume splits the line",
        [contract("1000"), cp_code("7654321", "750"), cp_code("12345", "250")],
        [VIDEO, EDGE],
        # 24.975 and 8.325: the cent left over goes to the tie's first name.
        {"edge": "24.98", "unallocated": "8.32", "total": "33.30"},
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


@pytest.mark.parametrize(("lines", "teams"), [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_the_part_of_each_line_its_owner_counts_adds_up_to_the_showback_s_usage(
    lines: list[CostLine], teams: list[TeamSettings]
) -> None:
    # A team's report charts each line at the part of it that is its owner's usage.
    kept = breakdown_lines(lines)
    found = group_shares(kept, teams)
    per_service = {x.usage_type for x in kept if x.service and not is_group_line(x)}
    counted: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for x in kept:
        if x.additive and (x.service or x.usage_type not in per_service):
            owner = owner_of(teams, x)
            counted[(owner, x.usage_type)] += Fraction(x.quantity) * found.counted(x, owner)
    usage = {(u.team, u.usage_type): u.quantity for u in team_usage(teams, lines)}
    assert {k: as_decimal(v) for k, v in counted.items() if v} == {
        k: v for k, v in usage.items() if v
    }


def test_a_percentile_line_counts_whole_and_a_group_no_rule_owns_counts_nothing() -> None:
    percentile = contract("1000", usage_type="95th Percentile")
    lines = [contract("1000"), group("100", "400"), group("999", "300"), percentile]
    found = group_shares(lines, [VIDEO])
    assert found.counted(percentile, "unallocated") == 1
    assert found.counted(lines[0], "unallocated") == Fraction(6, 10)
    assert found.counted(lines[1], "video") == 1
    assert found.counted(lines[2], "unallocated") == 0
    # Groups above the contract's volume: each counts at the contract's share of theirs.
    over = [contract("1000"), group("100", "700"), group("250", "600")]
    shared = group_shares(over, [VIDEO, RADIO])
    assert [shared.counted(x, owner_of([VIDEO, RADIO], x)) for x in over] == [
        0,
        Fraction(1000, 1300),
        Fraction(1000, 1300),
    ]


def test_a_groups_line_is_never_priced_on_its_own() -> None:
    # Even a per-service rate leaves it out: the contract's line is the one billed.
    lines = [contract("1000"), group("100", "400")]
    sheet = price_lines([AKAMAI_RATE, rate("1", source="akamai", per_service=True)], [], lines)
    assert [c.line.service for c in sheet.lines] == [""]
    assert [u.line.service for u in sheet.unpriced] == [reporting_group_service("100")]


def test_team_usage_counts_a_groups_part_once() -> None:
    april, june = Month.parse("2024-04"), Month.parse("2024-06")
    cp_codes = [cp_code("7654321", "750"), cp_code("1234567", "250")]
    lines = [
        *(in_month(x, april) for x in (contract("1000"), *cp_codes)),
        contract("1000"),
        group("100", "400"),
        group("250", "250"),
        *cp_codes,  # the same month's CP codes, from before a switch to reporting groups
    ]
    usage = {(u.month, u.team): u.quantity for u in team_usage([VIDEO, RADIO, EDGE], lines)}
    # June: the groups alone, 35% in no group stays with the contract line's owner; April:
    # no group line, the CP codes' volumes.
    assert usage == {
        (april, "edge"): Decimal("750"),
        (april, "unallocated"): Decimal("250"),
        (june, "video"): Decimal("400"),
        (june, "radio"): Decimal("250"),
        (june, "unallocated"): Decimal("350"),
    }


def in_month(x: CostLine, month: Month) -> CostLine:
    return replace(x, month=month, period_start=month.first_day, period_end=month.last_day)


def by_month(allocation: Allocation, month: Month) -> dict[str, tuple[Decimal, bool]]:
    return {c.team: (c.amount, c.shared) for c in allocation.costs if c.month == month}


def test_a_month_is_broken_down_by_its_own_lines_alone() -> None:
    # A source switched from cp_codes to reporting_groups: April keeps its CP-code lines,
    # June has group lines only. June is shared as if April were not there.
    april, june = Month.parse("2024-04"), Month.parse("2024-06")
    groups_month = [contract("1000"), group("100", "400")]
    cp_codes = [contract("1000"), cp_code("7654321", "750"), cp_code("12345", "250")]
    cp_month = [in_month(x, april) for x in cp_codes]
    teams = [VIDEO, EDGE]

    def allocated(lines: list[CostLine]) -> Allocation:
        return allocate(price_lines([AKAMAI_RATE], [], lines), lines, teams, ShowbackSettings())

    both = allocated([*cp_month, *groups_month])
    june_alone = {"video": (Decimal("13.32"), False), "unallocated": (Decimal("19.98"), False)}
    assert by_month(allocated(groups_month), june) == june_alone
    assert by_month(both, june) == june_alone
    # April, without group lines, is still split by its CP codes' volume (750 and 250).
    april_alone = {"edge": (Decimal("24.98"), True), "unallocated": (Decimal("8.32"), True)}
    assert by_month(allocated(cp_month), april) == april_alone
    assert by_month(both, april) == april_alone


def as_month_line(x: CostLine, teams: list[TeamSettings]) -> MonthLine:
    return MonthLine(
        x.source, "akamai", x.account, x.product, x.product_name, x.usage_type, x.region,
        x.service, x.month, x.quantity, x.unit, x.status, x.period_start, x.kind, x.billable,
        owner_of(teams, x),
    )  # fmt: skip


def test_a_team_expectation_counts_what_the_showback_gives_the_team_in_a_switched_month() -> None:
    # Video owned CP code 7654321 before the source switched to reporting groups and owns
    # group 100 since: June (pulled again after the switch) holds the group's line and the
    # CP code's, and only the group's part is video's June usage, as in the showback.
    april, june = Month.parse("2024-04"), Month.parse("2024-06")
    video = team("video", {"reporting_group": "100"}, {"cp_code": "7654321"})
    cp_codes = [contract("1000"), cp_code("7654321", "750"), cp_code("1234567", "250")]
    lines = [
        *(in_month(x, april) for x in cp_codes),
        contract("1000"),
        group("100", "400"),
        cp_code("7654321", "750"),
    ]
    usage = {u.month: u.quantity for u in team_usage([video], lines) if u.team == "video"}
    assert usage == {april: Decimal("750"), june: Decimal("400")}
    across = ExpectationSettings.model_validate(
        {"source": "akamai", "team": "video", "monthly_max": "1"}
    )
    totals = month_totals(across, [as_month_line(x, [video]) for x in lines])
    assert {k.month: t.quantity for k, t in totals.items()} == usage
    per_service = across.model_copy(update={"per_service": True})
    totals = month_totals(per_service, [as_month_line(x, [video]) for x in lines])
    assert sorted((k.month, k.service, t.quantity) for k, t in totals.items()) == [
        (april, "7654321", Decimal("750")),
        (june, GROUP_100, Decimal("400")),
    ]


# A team expectation across services counts the team's usage as the showback has it.
EXPECTED_USAGE = [
    (
        "each group's owner counts its part, what no group covers counts for nobody",
        [contract("1000"), group("100", "400"), group("250", "250")],
        [VIDEO, RADIO],
        {"video": "400", "radio": "250"},
    ),
    (
        "what no group covers counts for the contract-level rule's team",
        [contract("1000"), group("100", "400"), group("250", "250")],
        [VIDEO, RADIO, MEDIA],
        {"video": "400", "radio": "250", "media": "350"},
    ),
    (
        "a contract-level rule declared first owns the groups' parts too, counted once",
        [contract("1000"), group("100", "400")],
        [MEDIA, VIDEO],
        {"media": "1000"},
    ),
    (
        "overlapping groups above the contract's volume count all of it, never more",
        [contract("1000"), group("100", "750"), group("250", "500")],
        [VIDEO, RADIO, MEDIA],
        {"video": "600", "radio": "400"},
    ),
    (
        "a group no rule owns leaves its part with the contract line's team",
        [contract("1000"), group("100", "400"), group("999", "500")],
        [VIDEO, MEDIA],
        {"video": "400", "media": "600"},
    ),
    (
        "a group of a usage the contract has no volume of counts nothing",
        [contract("1000"), group("100", "400", usage_type="Total Hits")],
        [VIDEO, MEDIA],
        {"media": "1000"},
    ),
    (
        "in a month with group lines, its CP-code lines count for nobody",
        [contract("1000"), group("100", "400"), cp_code("7654321", "750")],
        [team("video", {"reporting_group": "100"}, {"cp_code": "7654321"}), MEDIA],
        {"video": "400", "media": "600"},
    ),
]


@pytest.mark.parametrize(
    ("lines", "teams", "expected"),
    [c[1:] for c in EXPECTED_USAGE],
    ids=[c[0] for c in EXPECTED_USAGE],
)
def test_a_team_expectation_counts_the_team_s_usage_in_the_showback(
    lines: list[CostLine], teams: list[TeamSettings], expected: dict[str, str]
) -> None:
    month_lines = [as_month_line(x, teams) for x in lines]
    counted: dict[str, Decimal] = {}
    for name in (t.name for t in teams):
        exp = ExpectationSettings.model_validate(
            {"source": "akamai", "team": name, "monthly_max": "1"}
        )
        if total := sum((t.quantity for t in month_totals(exp, month_lines).values()), Decimal(0)):
            counted[name] = total
    usage: dict[str, Decimal] = defaultdict(Decimal)
    for u in team_usage(teams, lines):
        if u.quantity and u.team != "unallocated":
            usage[u.team] += u.quantity
    assert counted == usage == {name: Decimal(q) for name, q in expected.items()}


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
    june, april = Month.parse("2024-06"), Month.parse("2024-04")
    lines = [contract(str(q), usage_type=u, product=f"p{i}") for i, (q, u) in enumerate(contracts)]
    lines += [group(g, str(q), usage_type=u, product="p0") for g, q, u in groups]
    cp_codes: list[CostLine] = []
    if cp_split is not None:
        # The first product broken down by two CP codes, as the per-CP-code summary does: in
        # June beside its groups (a source switched to reporting groups), and in April alone.
        first, usage_type = contracts[0]
        edge = first * cp_split
        for code, quantity in (("7654321", edge), ("1234567", first - edge)):
            cp_codes.append(
                contract(str(quantity), service=code, product="p0", usage_type=usage_type)
            )
        first_contract = contract(str(first), usage_type=usage_type, product="p0")
        cp_codes += [in_month(x, april) for x in (first_contract, *cp_codes)]
    teams = [VIDEO, RADIO, EDGE, *([MEDIA] if with_media else [])]
    showback = ShowbackSettings.model_validate(split)
    rates = [rate(str(price), source="akamai")]

    def allocated(lines: list[CostLine]) -> tuple[CostSheet, Allocation]:
        sheet = price_lines(rates, [], lines)
        return sheet, allocate(sheet, lines, teams, showback)

    sheet, allocation = allocated([*lines, *cp_codes])
    for key, exact in sheet.month_totals().items():
        total = exact.quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        owned = [c for c in allocation.costs if (c.source, c.month, c.currency) == key]
        assert sum((c.amount for c in owned), Decimal(0)) == total == allocation.totals[key]
    # Each month is shared by its own lines alone; June's CP codes count only without groups.
    june_cp = [x for x in cp_codes if x.month == june]
    june_lines = [*lines, *(june_cp if not groups else [])]
    assert by_month(allocation, june) == by_month(allocated(june_lines)[1], june)
    april_lines = [x for x in cp_codes if x.month == april]
    assert by_month(allocation, april) == by_month(allocated(april_lines)[1], april)
    # Team usage counts each month's contract volume once, whatever breaks it down.
    usage = team_usage(teams, [*lines, *cp_codes])
    contract_lines = [x for x in [*lines, *cp_codes] if not x.service]
    for month, usage_type in {(x.month, x.usage_type) for x in contract_lines}:
        volume = sum(
            (x.quantity for x in contract_lines if (x.month, x.usage_type) == (month, usage_type)),
            Decimal(0),
        )
        counted = sum(
            (u.quantity for u in usage if (u.month, u.usage_type) == (month, usage_type)),
            Decimal(0),
        )
        assert abs(counted - volume) < Decimal("1e-20")
