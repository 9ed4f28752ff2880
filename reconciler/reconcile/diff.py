"""The rules of billing data, as pure functions: what a line's change between runs means.

A finalized (billed) period must never change, so a changed finalized quantity is a
restatement (critical). A collecting period should only grow, so a decrease is suspicious.
Finalization itself is compared with the last collecting value: within ``finalize_tolerance``
it is routine (``finalized``), beyond it ``finalized_changed``. A line that appears in a month
that was already tracked is ``new``; lines of a month seen for the first time are an import,
not drift. A line missing from a complete pull that covered its month ``disappeared`` (or,
billed, ``finalized_disappeared``). A line that comes back is compared with its last present
values: only an identical return (or, collecting, one that only grew) is ``reappeared``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext

from reconciler.domain import EXACT_CONTEXT, ChangeKind, LineStatus, Observation, Severity
from reconciler.settings import DEFAULT_FINALIZE_TOLERANCE, Tolerance

DEFAULT_SEVERITIES: Mapping[ChangeKind, Severity] = {
    ChangeKind.NEW: Severity.INFO,
    ChangeKind.GREW: Severity.INFO,
    ChangeKind.DECREASED: Severity.WARNING,
    ChangeKind.FINALIZED: Severity.INFO,
    ChangeKind.FINALIZED_CHANGED: Severity.WARNING,
    ChangeKind.RESTATED: Severity.CRITICAL,
    ChangeKind.REOPENED: Severity.CRITICAL,
    ChangeKind.UNIT_CHANGED: Severity.CRITICAL,
    ChangeKind.DISAPPEARED: Severity.WARNING,
    ChangeKind.FINALIZED_DISAPPEARED: Severity.CRITICAL,
    ChangeKind.REAPPEARED: Severity.INFO,
    ChangeKind.LEFT_WINDOW_COLLECTING: Severity.INFO,
}

# Kinds recorded in the history but not raised for review: growth is what collecting data does.
QUIET_KINDS = frozenset({ChangeKind.GREW})

# The kinds of a line's absence; a return classified ``reappeared`` resolves them.
ABSENCE_KINDS = (ChangeKind.DISAPPEARED, ChangeKind.FINALIZED_DISAPPEARED)


@dataclass(frozen=True, slots=True)
class Tracked:
    """A line as the state knows it: its current (or last present) values and whether the
    last pull had it."""

    observation: Observation
    present: bool


def classify(
    before: Tracked | None,
    after: Observation | None,
    *,
    month_tracked: bool = True,
    finalize_tolerance: Tolerance = DEFAULT_FINALIZE_TOLERANCE,
) -> ChangeKind | None:
    """The change from the tracked line to what a complete pull saw (None: no change).

    ``after`` is None when the pull covered the line's month but did not return the line.
    ``month_tracked`` says whether the state already had lines of this source and month.
    """
    if before is None:
        if after is None:
            return None
        return ChangeKind.NEW if month_tracked else None
    old = before.observation
    if after is None:
        if not before.present:
            return None
        if old.status == LineStatus.FINALIZED:
            return ChangeKind.FINALIZED_DISAPPEARED
        return ChangeKind.DISAPPEARED
    kind = compare(old, after, finalize_tolerance)
    if before.present:
        return kind
    # Back after an absence: compared with its last present values, so a restatement made
    # while it was missing cannot hide behind a return.
    return ChangeKind.REAPPEARED if kind in (None, ChangeKind.GREW) else kind


def compare(old: Observation, new: Observation, finalize_tolerance: Tolerance) -> ChangeKind | None:
    """The change between two sets of values of one line (None: the same)."""
    if new.unit != old.unit:
        return ChangeKind.UNIT_CHANGED
    if old.status == LineStatus.FINALIZED:
        if new.status == LineStatus.COLLECTING:
            return ChangeKind.REOPENED
        return ChangeKind.RESTATED if new.quantity != old.quantity else None
    if new.status == LineStatus.FINALIZED:
        if within(old.quantity, new.quantity, finalize_tolerance):
            return ChangeKind.FINALIZED
        return ChangeKind.FINALIZED_CHANGED
    if new.quantity > old.quantity:
        return ChangeKind.GREW
    if new.quantity < old.quantity:
        return ChangeKind.DECREASED
    return None


def within(reference: Decimal, value: Decimal, tolerance: Tolerance) -> bool:
    """Whether ``value`` is within ``tolerance`` of ``reference``, in exact arithmetic."""
    with localcontext(EXACT_CONTEXT):
        if tolerance.percent is not None:
            return abs(value - reference) * 100 <= abs(reference) * tolerance.percent
        return abs(value - reference) <= (tolerance.absolute or Decimal(0))


def severity_of(kind: ChangeKind, overrides: Mapping[ChangeKind, Severity]) -> Severity:
    return overrides.get(kind, DEFAULT_SEVERITIES[kind])
