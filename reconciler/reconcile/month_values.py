"""The month values an expectation is measured against, by measure kind. Pure.

A line's month value comes from its periods by its kind (:func:`measures.month_value`).
Lines then add up only where their kind does: volumes and gauges of one usage type and unit
add over the regions, products and accounts an expectation spans; a percentile or a peak is
never added, so an expectation on one is evaluated per region, product and account. Different
usage types, units or kinds are never added together: an expectation that spans several usage
types is evaluated per usage type.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from fnmatch import fnmatchcase
from fractions import Fraction
from typing import NamedTuple

from reconciler.domain import LineStatus, Month, reporting_group_of
from reconciler.reconcile.group_shares import as_decimal, breakdown_lines
from reconciler.reconcile.measures import MeasureKind, PeriodValue, combine, month_value
from reconciler.settings import ExpectationSettings
from reconciler.team_settings import UNALLOCATED


@dataclass(frozen=True, slots=True)
class MonthLine:
    """The current value of one tracked line (one period of a month), as expectations see it."""

    source: str
    provider: str
    account: str
    product: str
    product_name: str
    usage_type: str
    region: str
    service: str
    month: Month
    quantity: Decimal
    unit: str
    status: LineStatus
    period_start: date | None = None
    kind: MeasureKind = MeasureKind.VOLUME
    billable: bool | None = None
    owner: str = ""  # the team that owns the line (see reconcile.ownership)


class TotalKey(NamedTuple):
    """What one evaluation of an expectation covers; empty fields are spanned (added up)."""

    source: str
    month: Month
    usage_type: str
    unit: str
    service: str
    kind: MeasureKind
    region: str = ""
    product: str = ""
    account: str = ""


@dataclass
class MonthTotal:
    """The month value of the lines under one :class:`TotalKey`."""

    quantity: Decimal
    finalized: bool
    provider: str
    lines: int
    billable: bool
    regions: set[str] = field(default_factory=set)


def spans_services(expectation: ExpectationSettings) -> bool:
    """A team expectation not per service: it counts the team's lines of every service."""
    return expectation.team is not None and not expectation.per_service


def reads_services(expectations: Iterable[ExpectationSettings]) -> bool:
    """Whether any expectation counts service lines (per service, or a team's)."""
    return any(e.per_service or e.team is not None for e in expectations)


def matches(expectation: ExpectationSettings, line: MonthLine) -> bool:
    if expectation.per_service != bool(line.service) and not spans_services(expectation):
        return False
    if expectation.team is not None and line.owner != expectation.team:
        return False
    return (
        fnmatchcase(line.source, expectation.source)
        and (
            fnmatchcase(line.product, expectation.product)
            or fnmatchcase(line.product_name, expectation.product)
        )
        and fnmatchcase(line.usage_type, expectation.usage_type)
        and fnmatchcase(line.region, expectation.region)
        and fnmatchcase(line.service, expectation.service)
    )


class _SeriesKey(NamedTuple):
    source: str
    month: Month
    account: str
    product: str
    usage_type: str
    region: str
    service: str
    unit: str
    kind: MeasureKind


@dataclass
class _Series:
    provider: str
    periods: list[PeriodValue] = field(default_factory=list)
    finalized: bool = True
    billable: bool = False


def _usage(line: MonthLine) -> tuple[object, ...]:
    return (line.source, line.month, line.product, line.usage_type, line.region, line.unit)


def counted_lines(expectation: ExpectationSettings, lines: Iterable[MonthLine]) -> list[MonthLine]:
    """The lines an expectation adds up: those it matches, less (for a team expectation
    across services) the account-level lines its service lines break down.

    A team expectation counts what the showback counts in the team's usage: in a source's
    month with reporting-group lines, that month's CP-code lines (left from before a switch
    to reporting groups) are not the team's (:func:`breakdown_lines`), and across services a
    volume its groups break down counts as the showback shares it (:func:`_carved`)."""
    lines = list(lines) if expectation.team is None else breakdown_lines(lines)
    if not spans_services(expectation):
        return [line for line in lines if matches(expectation, line)]
    lines = _carved(lines)
    # A volume's group lines are parts of its contract line (carved above), not a breakdown.
    broken_down = {
        _usage(line)
        for line in lines
        if line.service and not (_is_group_line(line) and line.kind is MeasureKind.VOLUME)
    }
    return [
        line
        for line in lines
        if matches(expectation, line) and (line.service or _usage(line) not in broken_down)
    ]


def _is_group_line(line: MonthLine) -> bool:
    return reporting_group_of(line.service) is not None


def _group_usage(line: MonthLine) -> tuple[object, ...]:
    return (line.source, line.account, line.product, line.usage_type, line.region, line.unit,
            line.month)  # fmt: skip


def _carved(lines: list[MonthLine]) -> list[MonthLine]:
    """The volume lines of a usage with reporting-group lines as the showback shares them
    (:mod:`reconciler.reconcile.group_shares`): an owned group's line is its part of the
    contract's volume (its own volume, scaled down when the groups add up to more than the
    contract's), the contract's lines keep what no owned group covers, and a group line no
    rule owns, of no volume, or of a usage the contract has no volume of counts nothing."""
    contract: dict[tuple[object, ...], Fraction] = defaultdict(Fraction)
    groups: dict[tuple[object, ...], Fraction] = defaultdict(Fraction)
    owned: dict[tuple[object, ...], Fraction] = defaultdict(Fraction)
    for line in lines:
        if line.kind is not MeasureKind.VOLUME:
            continue
        key = _group_usage(line)
        if not line.service:
            contract[key] += Fraction(line.quantity)
        elif _is_group_line(line) and line.quantity > 0:
            groups[key] += Fraction(line.quantity)
            if line.owner != UNALLOCATED:
                owned[key] += Fraction(line.quantity)
    carved: list[MonthLine] = []
    for line in lines:
        key = _group_usage(line)
        volume = contract.get(key, Fraction(0))
        if line.kind is not MeasureKind.VOLUME or key not in groups or volume <= 0:
            if not (_is_group_line(line) and line.kind is MeasureKind.VOLUME):
                carved.append(line)
            continue
        scale = max(volume, groups[key])
        if not line.service:
            factor = 1 - owned[key] / scale
        elif _is_group_line(line) and line.quantity > 0 and line.owner != UNALLOCATED:
            factor = volume / scale
        elif _is_group_line(line):
            continue
        else:
            carved.append(line)
            continue
        if factor == 1:
            carved.append(line)
        else:
            carved.append(replace(line, quantity=as_decimal(Fraction(line.quantity) * factor)))
    return carved


def month_totals(
    expectation: ExpectationSettings, lines: Iterable[MonthLine]
) -> dict[TotalKey, MonthTotal]:
    """The month values of the lines an expectation matches, one per :class:`TotalKey`."""
    series: dict[_SeriesKey, _Series] = {}
    for line in counted_lines(expectation, lines):
        key = _SeriesKey(
            line.source,
            line.month,
            line.account,
            line.product,
            line.usage_type,
            line.region,
            line.service,
            line.unit,
            line.kind,
        )
        one = series.get(key)
        if one is None:
            one = series[key] = _Series(line.provider)
        one.periods.append(PeriodValue(line.period_start or line.month.first_day, line.quantity))
        one.finalized = one.finalized and line.status == LineStatus.FINALIZED
        one.billable = one.billable or line.billable is not False
    grouped: dict[TotalKey, list[tuple[_SeriesKey, _Series]]] = defaultdict(list)
    spans = spans_services(expectation)
    for key, one in series.items():
        grouped[_total_key(key, spans)].append((key, one))
    return {key: _total(key.kind, members) for key, members in grouped.items()}


def _total_key(key: _SeriesKey, spans_services: bool) -> TotalKey:
    base = TotalKey(key.source, key.month, key.usage_type, key.unit, key.service, key.kind)
    if key.kind.adds_up:
        return base._replace(service="") if spans_services else base
    return base._replace(region=key.region, product=key.product, account=key.account)


def _total(kind: MeasureKind, members: list[tuple[_SeriesKey, _Series]]) -> MonthTotal:
    values = [month_value(kind, one.periods) for _, one in members]
    quantity = values[0] if len(values) == 1 else combine(kind, values)
    return MonthTotal(
        quantity=quantity,
        finalized=all(one.finalized for _, one in members),
        provider=members[0][1].provider,
        lines=sum(len(one.periods) for _, one in members),
        billable=any(one.billable for _, one in members),
        regions={key.region for key, _ in members},
    )
