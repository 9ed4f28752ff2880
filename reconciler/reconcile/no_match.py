"""Expectations that match nothing: found per month, with the closest names seen. Pure.

An expectation whose source has data for a month but none of whose lines it matches is most
likely a typo (``"North America Bandwith"``); it must say so rather than pass in silence, and
its open findings for that month stay as they are (nothing was re-evaluated).
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from reconciler.domain import Month
from reconciler.reconcile.month_values import MonthLine, matches
from reconciler.settings import ExpectationSettings

_MAX_HINTS = 3


@dataclass(frozen=True, slots=True)
class NoMatch:
    """An expectation that matched no line of a month for which its source has data."""

    expectation: ExpectationSettings
    source: str
    month: Month
    hint: str  # the fields that matched nothing and the closest values seen; may be empty


def find_unmatched(
    expectations: Sequence[ExpectationSettings], lines: Iterable[MonthLine]
) -> list[NoMatch]:
    by_month: dict[tuple[str, Month], list[MonthLine]] = defaultdict(list)
    for line in lines:
        by_month[(line.source, line.month)].append(line)
    found: list[NoMatch] = []
    for expectation in expectations:
        if _team_budget_only(expectation):
            continue  # measured against the team's share of the bill, not against lines
        for (source, month), seen in sorted(by_month.items(), key=lambda kv: kv[0]):
            if not fnmatchcase(source, expectation.source):
                continue
            if any(matches(expectation, line) for line in seen):
                continue
            found.append(NoMatch(expectation, source, month, _hint(expectation, seen)))
    return found


def _team_budget_only(expectation: ExpectationSettings) -> bool:
    quantities = (
        expectation.monthly_max,
        expectation.monthly_min,
        expectation.monthly_quantity,
        expectation.unit,
    )
    return (
        expectation.team is not None
        and all(v is None for v in quantities)
        and not expectation.invoices
    )


def _hint(expectation: ExpectationSettings, seen: Sequence[MonthLine]) -> str:
    """Which matcher fields match no line, and the closest values the lines have."""
    fields: list[tuple[str, str, set[str]]] = [
        (
            "product",
            expectation.product,
            {line.product for line in seen} | {line.product_name for line in seen},
        ),
        ("usage_type", expectation.usage_type, {line.usage_type for line in seen}),
        ("region", expectation.region, {line.region for line in seen}),
        ("service", expectation.service, {line.service for line in seen}),
        ("team", expectation.team or "*", {line.owner for line in seen}),
    ]
    parts: list[str] = []
    for name, pattern, values in fields:
        values.discard("")
        if pattern == "*" or any(fnmatchcase(v, pattern) for v in values):
            continue
        close = difflib.get_close_matches(pattern, sorted(values), n=_MAX_HINTS, cutoff=0.5)
        if close:
            names = ", ".join(repr(c) for c in close)
            parts.append(f"{name} {pattern!r} matches nothing; closest seen: {names}")
        else:
            parts.append(f"{name} {pattern!r} matches nothing")
    if not parts:
        account_level = not any(line.service for line in seen)
        if expectation.per_service and account_level:
            parts.append("per_service is set but the month has no per-service lines")
        else:
            parts.append("no line matches all its fields at once")
    return "; ".join(parts)
