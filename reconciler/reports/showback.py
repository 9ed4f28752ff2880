"""The report's showback: each team's usage, cost, forecast, findings and share of the bill.

Built from the same priced months as the cost section (:mod:`reconciler.reports.costs`) and
split by :func:`reconciler.reconcile.allocation.allocate`: a month's team amounts, with
``unallocated``, add up exactly to the month's total of every source, as the cost section
rounds it. Usage counts volumes only (a percentile or a peak is never added): service lines,
and account-level lines of a usage no service line breaks down (they would count it twice).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction

from reconciler.domain import EXACT_CONTEXT, LineStatus, Month
from reconciler.reconcile.allocation import Allocation
from reconciler.reconcile.costing import CostLine
from reconciler.reconcile.group_shares import (
    as_decimal,
    breakdown_lines,
    group_shares,
    is_group_line,
)
from reconciler.reconcile.ownership import owner_of
from reconciler.settings import Settings
from reconciler.team_settings import SHARED, UNALLOCATED, TeamSettings


@dataclass(frozen=True, slots=True)
class TeamMonth:
    """One team's month in one currency, every source added: priced or projected."""

    team: str
    month: Month
    currency: str
    amount: Decimal
    total: Decimal  # the whole account's month in that currency
    state: str  # finalized | collecting | projected
    shared: bool  # part of it is shared cost split by the [showback] rule

    @property
    def share_percent(self) -> Decimal | None:
        if self.total == 0:
            return None
        with localcontext(EXACT_CONTEXT):
            return (self.amount * 100 / self.total).quantize(Decimal("0.1"))


@dataclass(frozen=True, slots=True)
class TeamUsage:
    """A team's month total of one volume usage type (one source, one unit)."""

    team: str
    source: str
    month: Month
    usage_type: str
    unit: str
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class Showback:
    """The teams' part of the report (``team``: a report on that team alone)."""

    teams: tuple[str, ...]
    months: tuple[TeamMonth, ...]
    usage: tuple[TeamUsage, ...]
    open_findings: dict[str, int] = field(default_factory=dict)
    team: str | None = None
    split: str = "proportional"

    def rows(self) -> list[TeamMonth]:
        return [m for m in self.months if self.team is None or m.team == self.team]

    def usage_rows(self, month: Month | None = None) -> list[TeamUsage]:
        return [
            u
            for u in self.usage
            if (self.team is None or u.team == self.team) and (month is None or u.month == month)
        ]

    @property
    def last_month(self) -> Month | None:
        return max((u.month for u in self.usage), default=None)

    def findings_text(self) -> str:
        shown = [self.team] if self.team else list(self.teams)
        if not self.team and self.open_findings.get(SHARED):
            shown.append(SHARED)
        return ", ".join(f"{team} {self.open_findings.get(team, 0)}" for team in shown)


@dataclass
class ShowbackParts:
    """What each source adds while the cost section is gathered."""

    priced: list[tuple[Allocation, dict[tuple[str, Month], LineStatus]]] = field(
        default_factory=list
    )
    projected: list[Allocation] = field(default_factory=list)
    lines: list[CostLine] = field(default_factory=list)

    def add(self, priced: Allocation, projected: Allocation | None, lines: list[CostLine]) -> None:
        statuses: dict[tuple[str, Month], LineStatus] = {}
        for x in lines:
            key = (x.source, x.month)
            if x.status is LineStatus.COLLECTING or key not in statuses:
                statuses[key] = x.status
        self.priced.append((priced, statuses))
        if projected is not None:
            self.projected.append(projected)
        self.lines += lines


def build_showback(settings: Settings, parts: ShowbackParts, team: str | None) -> Showback:
    amounts: dict[tuple[str, Month, str, str], Decimal] = defaultdict(Decimal)
    totals: dict[tuple[Month, str, str], Decimal] = defaultdict(Decimal)
    shared: set[tuple[str, Month, str, str]] = set()
    month_state: dict[Month, str] = {}
    for allocation, statuses in parts.priced:
        for (source, month, _), _amount in allocation.totals.items():
            collecting = statuses.get((source, month)) is LineStatus.COLLECTING
            if collecting or month not in month_state:
                month_state[month] = "collecting" if collecting else "finalized"
    for allocation, _ in parts.priced:
        _add(allocation, amounts, totals, shared, lambda m: month_state.get(m, "finalized"))
    for allocation in parts.projected:
        _add(allocation, amounts, totals, shared, lambda m: "projected")
    names = [t.name for t in settings.teams]

    def rank(name: str) -> int:
        return names.index(name) if name in names else len(names)

    months = tuple(
        TeamMonth(
            name,
            month,
            currency,
            amount,
            totals[(month, currency, state)],
            state,
            (name, month, currency, state) in shared,
        )
        for (name, month, currency, state), amount in sorted(
            amounts.items(),
            key=lambda kv: (kv[0][1], kv[0][3], kv[0][2], rank(kv[0][0])),
        )
    )
    return Showback(
        teams=(*(t.name for t in settings.teams), UNALLOCATED),
        months=months,
        usage=tuple(team_usage(settings.teams, parts.lines)),
        team=team,
        split=settings.showback.split,
    )


def _add(
    allocation: Allocation,
    amounts: dict[tuple[str, Month, str, str], Decimal],
    totals: dict[tuple[Month, str, str], Decimal],
    shared: set[tuple[str, Month, str, str]],
    state_of: Callable[[Month], str],
) -> None:
    with localcontext(EXACT_CONTEXT):
        for (_, month, currency), total in allocation.totals.items():
            totals[(month, currency, state_of(month))] += total
        for cost in allocation.costs:
            key = (cost.team, cost.month, cost.currency, state_of(cost.month))
            amounts[key] += cost.amount
            if cost.shared:
                shared.add(key)


def team_usage(teams: Sequence[TeamSettings], lines: Iterable[CostLine]) -> list[TeamUsage]:
    """Each owner's volume per source, month, usage type and unit (no double counting of an
    account-level line a service breakdown covers, nor of a CP code's line in a month its
    reporting groups break down)."""
    lines = breakdown_lines(lines)
    broken_down = {
        (x.source, x.month, x.product, x.usage_type, x.region, x.unit)
        for x in lines
        if x.service and not is_group_line(x)
    }
    groups = group_shares(lines, teams)
    totals: dict[tuple[str, str, Month, str, str], Fraction] = defaultdict(Fraction)
    for x in lines:
        usage = (x.source, x.month, x.product, x.usage_type, x.region, x.unit)
        if not x.additive or is_group_line(x) or (not x.service and usage in broken_down):
            continue
        # What reporting groups cover is counted once, as theirs (below).
        quantity = Fraction(x.quantity) * groups.remainder(x)
        totals[(owner_of(teams, x), x.source, x.month, x.usage_type, x.unit)] += quantity
    for (owner, key), quantity in groups.quantities().items():
        source, _, _, usage_type, _, unit, month = key
        totals[(owner, source, month, usage_type, unit)] += quantity
    return [
        TeamUsage(team, source, month, usage_type, unit, as_decimal(quantity))
        for (team, source, month, usage_type, unit), quantity in sorted(
            totals.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1], kv[0][3])
        )
    ]
