"""The rules of billing data, as pure functions: what a line's change between runs means.

A finalized (billed) period must never change, so a changed finalized quantity is a
restatement (critical). A collecting period should only grow, so a decrease is suspicious.
A line that appears in a month that was already tracked is ``new``; lines of a month seen for
the first time are an import, not drift. A line missing from a complete pull that covered its
month ``disappeared``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.domain import ChangeKind, LineStatus, Observation, Severity

DEFAULT_SEVERITIES: Mapping[ChangeKind, Severity] = {
    ChangeKind.NEW: Severity.INFO,
    ChangeKind.GREW: Severity.INFO,
    ChangeKind.DECREASED: Severity.WARNING,
    ChangeKind.FINALIZED: Severity.INFO,
    ChangeKind.RESTATED: Severity.CRITICAL,
    ChangeKind.REOPENED: Severity.CRITICAL,
    ChangeKind.UNIT_CHANGED: Severity.CRITICAL,
    ChangeKind.DISAPPEARED: Severity.WARNING,
    ChangeKind.REAPPEARED: Severity.INFO,
}

# Kinds recorded in the history but not raised for review: growth is what collecting data does.
QUIET_KINDS = frozenset({ChangeKind.GREW})


@dataclass(frozen=True, slots=True)
class Tracked:
    """A line as the state knows it: its current values and whether the last pull had it."""

    observation: Observation
    present: bool


def classify(
    before: Tracked | None,
    after: Observation | None,
    *,
    month_tracked: bool = True,
) -> ChangeKind | None:
    """The change from the tracked line to what a complete pull saw (None: no change).

    ``after`` is None when the pull covered the line's month but did not return the line.
    ``month_tracked`` says whether the state already had lines of this source and month.
    """
    if before is None:
        if after is None:
            return None
        return ChangeKind.NEW if month_tracked else None
    if after is None:
        return ChangeKind.DISAPPEARED if before.present else None
    if not before.present:
        return ChangeKind.REAPPEARED
    old = before.observation
    if after.unit != old.unit:
        return ChangeKind.UNIT_CHANGED
    if old.status == LineStatus.FINALIZED:
        if after.status == LineStatus.COLLECTING:
            return ChangeKind.REOPENED
        return ChangeKind.RESTATED if after.quantity != old.quantity else None
    if after.status == LineStatus.FINALIZED:
        return ChangeKind.FINALIZED
    if after.quantity > old.quantity:
        return ChangeKind.GREW
    if after.quantity < old.quantity:
        return ChangeKind.DECREASED
    return None


def severity_of(kind: ChangeKind, overrides: Mapping[ChangeKind, Severity]) -> Severity:
    return overrides.get(kind, DEFAULT_SEVERITIES[kind])
