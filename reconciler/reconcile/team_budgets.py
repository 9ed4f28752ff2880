"""Team budgets: a team's share of the whole bill in a month against its budget. Pure.

An expectation with ``team`` and ``monthly_budget`` covers every source its ``source`` glob
matches (default: all of them): the team's shares of each source's month
(:func:`reconciler.reconcile.allocation.allocate`, shared cost included) are added up per
month in the budget's currency. Amounts in another currency are never converted: the
configuration refuses a team budget whose sources declare rates or commitments in another
currency (:func:`team_budget_problems`). Spent money is ``over_budget``; a collecting month
(any of its sources still collecting) whose month-end forecast is above the budget is
``projected_over_budget``.

A finding needs one source to belong to: the budget's *home*, the first configured source
its glob matches. The home's runs evaluate it over every source's stored lines (so another
source's new usage counts at the home's next run) and resolve it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase

from reconciler.domain import EXACT_CONTEXT, FindingKind, LineStatus, Month
from reconciler.money import Money
from reconciler.reconcile.allocation import Allocation
from reconciler.reconcile.expectations import Evaluated
from reconciler.reconcile.spend import budget_finding
from reconciler.settings import ExpectationSettings


@dataclass(frozen=True, slots=True)
class SourceShares:
    """One source's priced and month-end forecast months split among owners."""

    source: str
    actual: Allocation
    forecast: Allocation
    statuses: Mapping[Month, LineStatus]  # collecting if any line of the month is


def is_team_budget(exp: ExpectationSettings) -> bool:
    return exp.team is not None and exp.monthly_budget is not None


def budget_home(exp: ExpectationSettings, sources: Sequence[str]) -> str | None:
    """The first configured source the budget's ``source`` glob matches."""
    return next((name for name in sources if fnmatchcase(name, exp.source)), None)


def team_budget_findings(
    expectations: Sequence[ExpectationSettings],
    shares: Sequence[SourceShares],
    months: Sequence[Month],
    home: str,
    provider: str,
) -> list[Evaluated]:
    """The findings of the team budgets whose home is ``home``, over ``months``."""
    found: list[Evaluated] = []
    names = [s.source for s in shares]
    for exp in expectations:
        if not is_team_budget(exp) or budget_home(exp, names) != home:
            continue
        members = [s for s in shares if fnmatchcase(s.source, exp.source)]
        for month in months:
            found += _month_findings(exp, members, month, home, provider)
    return found


def _month_findings(
    exp: ExpectationSettings,
    members: Sequence[SourceShares],
    month: Month,
    home: str,
    provider: str,
) -> list[Evaluated]:
    assert exp.monthly_budget is not None and exp.team is not None
    budget = exp.monthly_budget
    spent = _team_amounts(exp.team, [s.actual for s in members], month, budget.currency)
    if not spent:
        return []
    collecting = any(s.statuses.get(month) is LineStatus.COLLECTING for s in members)
    status = LineStatus.COLLECTING if collecting else LineStatus.FINALIZED
    with localcontext(EXACT_CONTEXT):
        amount = sum(spent.values(), Decimal(0))
    if amount > budget.amount:
        kind, shown = FindingKind.OVER_BUDGET, spent
    elif collecting:
        shown = _team_amounts(exp.team, [s.forecast for s in members], month, budget.currency)
        with localcontext(EXACT_CONTEXT):
            amount = sum(shown.values(), Decimal(0))
        if amount <= budget.amount:
            return []
        kind = FindingKind.PROJECTED_OVER_BUDGET
    else:
        return []
    parts = _parts(shown, budget.currency)
    return [budget_finding(exp, home, provider, month, amount, status, kind, parts)]


def _team_amounts(
    team: str, allocations: Sequence[Allocation], month: Month, currency: str
) -> dict[str, Decimal]:
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    with localcontext(EXACT_CONTEXT):
        for allocation in allocations:
            for c in allocation.costs:
                if c.team == team and c.month == month and c.currency == currency:
                    amounts[c.source] += c.amount
    return dict(amounts)


def _parts(amounts: Mapping[str, Decimal], currency: str) -> str:
    """``akamai 10.00 USD + fastly 20.00 USD`` when more than one source adds to the month."""
    if len(amounts) < 2:
        return ""
    return " + ".join(f"{s} {Money(a, currency)}" for s, a in sorted(amounts.items()))
