"""Showback: a priced month split among its owners, to the cent. Pure.

Every priced line goes to its owner (:mod:`reconciler.reconcile.ownership`). Shared cost is
split by the declared ``[showback]`` rule: an account-level line no rule owns of a source's
month that reports per-service usage (Fastly services, Akamai CP codes), a money
commitment's lift to its commit and a contract credit. ``proportional`` weighs an
account-level line by the service lines of the same usage (source, month, product, usage
type, region, unit: volumes only, a percentile is never summed), falling back to each owner's
cost in the source's month, which also weighs commitments and credits; ``fixed`` weighs by
the declared shares; ``owner`` gives it all to one team. With nothing to weigh by, shared
cost stays ``unallocated``. In a source's month with Akamai reporting-group lines, the groups
alone break a contract product's line down (:mod:`reconciler.reconcile.group_shares`): each
group's owner takes its part, and the rest stays with the line's owner (its rule or
``unallocated``); that month's CP-code lines, if any, split nothing. Whether a month is
broken down, and by what, depends on that month's lines alone.

Owners' shares are kept as exact fractions, and each (source, month, currency) is then
apportioned to the currency's minor unit by largest remainder (ties: owner name): the owners'
amounts, ``unallocated`` included, add up exactly to the month's total rounded half to even,
the amount the report shows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

from reconciler.domain import EXACT_CONTEXT, Month
from reconciler.money import minor_unit
from reconciler.reconcile.costing import CostLine, CostSheet
from reconciler.reconcile.group_shares import (
    breakdown_lines,
    group_shares,
    is_group_line,
    merged,
)
from reconciler.reconcile.ownership import owner_of
from reconciler.team_settings import UNALLOCATED, ShowbackSettings, TeamSettings

MonthKey = tuple[str, Month, str]  # source, month, currency
Weights = dict[str, Fraction]


@dataclass(frozen=True, slots=True)
class TeamCost:
    """One owner's part of a source's month in one currency, rounded to the minor unit."""

    team: str
    source: str
    month: Month
    currency: str
    amount: Decimal
    shared: bool  # whether part of it comes from shared cost


@dataclass(frozen=True, slots=True)
class Allocation:
    """Each source month's owners' amounts and the totals they add up to."""

    costs: tuple[TeamCost, ...]
    totals: Mapping[MonthKey, Decimal]

    def team_total(self, team: str, month: Month, currency: str) -> Decimal:
        return sum(
            (
                c.amount
                for c in self.costs
                if c.team == team and c.month == month and c.currency == currency
            ),
            Decimal(0),
        )

    def teams(self) -> list[str]:
        return sorted({c.team for c in self.costs}, key=lambda t: (t == UNALLOCATED, t))


def allocate(
    sheet: CostSheet,
    lines: Sequence[CostLine],
    teams: Sequence[TeamSettings],
    showback: ShowbackSettings,
) -> Allocation:
    """The sheet's cost split among owners; ``lines`` are every line the sheet priced or
    not (the per-service lines that weigh an account-level line are usually not priced)."""
    shares = exact_shares(sheet, lines, teams, showback)
    totals = {key: _rounded(amount, key[2]) for key, amount in sheet.month_totals().items()}
    costs: list[TeamCost] = []
    for key, parts in sorted(shares.months.items()):
        rounded = apportion(totals.get(key, Decimal(0)), parts, minor_unit(key[2]))
        source, month, currency = key
        shared = shares.shared.get(key, set())
        costs.extend(
            TeamCost(team, source, month, currency, amount, team in shared)
            for team, amount in rounded.items()
        )
    return Allocation(tuple(costs), totals)


@dataclass(frozen=True, slots=True)
class OwnerShares:
    """Who owns what, exactly: each priced line's owners (fractions adding up to 1), each
    (source, month, currency)'s owners' amounts, and how its shared adjustments (money
    commitments' lifts, credits) were split (fractions adding up to 1)."""

    lines: Mapping[tuple[object, ...], Weights]
    months: Mapping[MonthKey, Weights]
    shared: Mapping[MonthKey, set[str]]
    adjustments: Mapping[MonthKey, Weights]


def exact_shares(
    sheet: CostSheet,
    lines: Sequence[CostLine],
    teams: Sequence[TeamSettings],
    showback: ShowbackSettings,
) -> OwnerShares:
    """Each owner's exact share of each line and of each (source, month, currency)."""
    lines = breakdown_lines(lines)
    owners = {line_key(x): owner_of(teams, x) for x in lines}
    # Per source and month: a month broken down by reporting groups has no CP-code lines
    # left, so none of its contract lines is split by service volume.
    per_service = {(x.source, x.month) for x in lines if x.service and not is_group_line(x)}
    volumes = _service_volumes(lines, owners)
    groups = group_shares(lines, teams)
    direct: dict[MonthKey, Weights] = defaultdict(lambda: defaultdict(Fraction))
    by_line: dict[tuple[object, ...], Weights] = {}
    pending: list[tuple[MonthKey, CostLine, Fraction]] = []
    for cost in sheet.lines:
        line = cost.line
        key = (line.source, line.month, cost.currency)
        owner = owners.get(line_key(line)) or owner_of(teams, line)
        amount = Fraction(cost.amount)
        if owner == UNALLOCATED and not line.service and (line.source, line.month) in per_service:
            pending.append((key, line, amount))
            continue
        # Reporting groups own their part of the line; the rest follows the line's owner.
        carved = groups.of(line)
        for group_owner, fraction in carved.items():
            direct[key][group_owner] += amount * fraction
        rest = 1 - sum(carved.values(), Fraction(0))
        if rest or not carved:
            direct[key][owner] += amount * rest
        by_line[line_key(line)] = merged(carved, {owner: Fraction(1)}, rest)
    result: dict[MonthKey, Weights] = defaultdict(lambda: defaultdict(Fraction))
    shared: dict[MonthKey, set[str]] = defaultdict(set)
    for key, parts in direct.items():
        for owner, amount in parts.items():
            result[key][owner] += amount
    for key, line, amount in pending:
        weights = _normal(
            _line_weights(showback, volumes.get(_usage(line), {}), direct.get(key, {}))
        )
        by_line[line_key(line)] = weights
        _spread(result[key], shared[key], amount, weights)
    adjustments: dict[MonthKey, Weights] = {}
    for key, amount in _shared_adjustments(sheet):
        weights = adjustments.setdefault(key, _normal(_weights(showback, dict(result[key]))))
        _spread(result[key], shared[key], amount, weights)
    return OwnerShares(
        by_line, {key: dict(parts) for key, parts in result.items()}, shared, adjustments
    )


def apportion(total: Decimal, parts: Mapping[str, Fraction], unit: Decimal) -> dict[str, Decimal]:
    """``total`` (a multiple of ``unit``) split in ``unit`` steps after the exact ``parts``:
    each part rounded down, then the units left over one each to the largest remainders
    (ties by name), so the results add up to ``total`` exactly."""
    step = Fraction(unit)
    floors = {name: math.floor(value / step) for name, value in parts.items()}
    remainders = {name: value / step - floors[name] for name, value in parts.items()}
    left = int(Fraction(total) / step) - sum(floors.values())
    order = sorted(parts, key=lambda name: (-remainders[name], name))
    if left < 0:
        order.reverse()
    for index in range(abs(left)):
        floors[order[index % len(order)]] += 1 if left > 0 else -1
    with localcontext(EXACT_CONTEXT):
        return {name: count * unit for name, count in sorted(floors.items())}


def _rounded(amount: Decimal, currency: str) -> Decimal:
    with localcontext(EXACT_CONTEXT):
        return amount.quantize(minor_unit(currency), ROUND_HALF_EVEN)


def line_key(line: CostLine) -> tuple[object, ...]:
    """A priced line's key: identity, month and period start."""
    return (*line.identity, line.month, line.period_start)


def _usage(line: CostLine) -> tuple[object, ...]:
    return (line.source, line.month, line.product, line.usage_type, line.region, line.unit)


def _service_volumes(
    lines: Iterable[CostLine], owners: Mapping[tuple[object, ...], str]
) -> dict[tuple[object, ...], Weights]:
    """Per usage, each owner's quantity in the service lines (volumes only)."""
    volumes: dict[tuple[object, ...], Weights] = defaultdict(lambda: defaultdict(Fraction))
    for line in lines:
        if line.service and line.additive and line.quantity > 0 and not is_group_line(line):
            volumes[_usage(line)][owners[line_key(line)]] += Fraction(line.quantity)
    return volumes


def _shared_adjustments(sheet: CostSheet) -> list[tuple[MonthKey, Fraction]]:
    """Money commitments' lifts to their commit and credits (subtracted): cost of no line."""
    found = [
        ((c.source, c.month, c.currency), Fraction(c.adjustment))
        for c in sheet.commitments
        if c.adjustment
    ]
    found += [((c.source, c.month, c.currency), -Fraction(c.amount)) for c in sheet.credits]
    return found


def _line_weights(
    showback: ShowbackSettings, volume: Weights, cost: Mapping[str, Fraction]
) -> Weights:
    if showback.split == "proportional" and sum(volume.values()) > 0:
        return dict(volume)
    return _weights(showback, dict(cost))


def _weights(showback: ShowbackSettings, cost: Weights) -> Weights:
    if showback.split == "owner":
        assert showback.owner is not None
        return {showback.owner: Fraction(1)}
    if showback.split == "fixed":
        return {name: Fraction(share) for name, share in showback.shares.items() if share}
    return {name: value for name, value in cost.items() if value > 0}


def _normal(weights: Weights) -> Weights:
    """Weights as fractions adding up to 1 (all to ``unallocated`` when there are none)."""
    total = sum(weights.values(), Fraction(0))
    if total <= 0:
        return {UNALLOCATED: Fraction(1)}
    return {name: weight / total for name, weight in weights.items()}


def _spread(into: Weights, shared: set[str], amount: Fraction, weights: Weights) -> None:
    for name, weight in weights.items():
        into[name] += amount * weight
        shared.add(name)
