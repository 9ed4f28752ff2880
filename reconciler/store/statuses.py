"""Month statuses the store keeps steady: a derived status never reopens a finalized month,
and a month that leaves the lookback window while still collecting is flagged once.

Fastly reports no status: reconciler derives it from invoices, or from the calendar when
invoices cannot be read. A switch between the two rules is not the provider reopening a
billed month, so for such sources a month the state holds as finalized stays finalized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.domain import (
    ChangeKind,
    ItemCategory,
    LineStatus,
    Month,
    PlanItem,
    Severity,
    line_digest,
)
from reconciler.providers.base import Coverage
from reconciler.reconcile.diff import severity_of
from reconciler.store.tables import UsageLineRow

lines_t = UsageLineRow.__table__  # type: ignore[attr-defined]


async def staged_status(
    conn: AsyncConnection, staged: Table, *, source: str, coverage: Coverage
) -> Any:
    """The staged lines' status as the store keeps it: for derived statuses, a line of a
    month the state holds as finalized stays finalized (an expression over ``staged``,
    applied where the diff reads and copies the status: the staged rows are not rewritten)."""
    months = await finalized_months(conn, source=source, coverage=coverage)
    return kept_status(staged, months)


async def finalized_months(
    conn: AsyncConnection, *, source: str, coverage: Coverage
) -> tuple[str, ...]:
    """The covered months the state holds as finalized, where statuses are derived (else
    none: the staged status is kept as it is)."""
    if not coverage.derived_statuses:
        return ()
    months = []
    for month in sorted(str(m) for m in coverage.months):
        # Through the (source, month) index, stopping at the first finalized line.
        finalized = (
            select(lines_t.c.id)
            .where(
                lines_t.c.source == source,
                lines_t.c.month == month,
                lines_t.c.status == LineStatus.FINALIZED.value,
            )
            .limit(1)
        )
        if (await conn.execute(finalized)).first() is not None:
            months.append(month)
    return tuple(months)


def kept_status(staged: Table, finalized: tuple[str, ...]) -> Any:
    """The staged status, with collecting lines of the ``finalized`` months kept finalized."""
    if not finalized:
        return staged.c.status
    kept = and_(staged.c.status == LineStatus.COLLECTING.value, staged.c.month.in_(list(finalized)))
    return case((kept, literal(LineStatus.FINALIZED.value)), else_=staged.c.status)


@dataclass(frozen=True, slots=True)
class CollectingMonth:
    """A month before the lookback window whose lines are still collecting."""

    month: Month
    provider: str
    lines: int


async def collecting_months_before(
    conn: AsyncConnection, source: str, first: Month
) -> list[CollectingMonth]:
    query = (
        select(lines_t.c.month, lines_t.c.provider, func.count().label("lines"))
        .where(
            lines_t.c.source == source,
            lines_t.c.month < str(first),
            lines_t.c.status == LineStatus.COLLECTING.value,
            lines_t.c.present.is_(True),
        )
        .group_by(lines_t.c.month, lines_t.c.provider)
        .order_by(lines_t.c.month)
    )
    return [
        CollectingMonth(Month.parse(row.month), row.provider, int(row.lines))
        for row in (await conn.execute(query)).all()
    ]


def left_window_items(
    source: str,
    months: list[CollectingMonth],
    severities: Mapping[ChangeKind, Severity],
) -> list[PlanItem]:
    """One info item per month that left the lookback window while still collecting: its
    lines keep their status (no later pull will finalize them), and the reviewer should know."""
    kind = ChangeKind.LEFT_WINDOW_COLLECTING
    return [
        PlanItem(
            category=ItemCategory.DRIFT,
            kind=kind.value,
            severity=severity_of(kind, severities),
            fingerprint=line_digest(("drift", kind.value, source, str(entry.month))),
            source=source,
            provider=entry.provider,
            account="",
            product="",
            usage_type="",
            region="",
            service="",
            month=entry.month,
            before=None,
            after=None,
            message=(
                f"{entry.month} left the lookback window while still collecting: its "
                f"{entry.lines} lines keep that status and are no longer pulled"
            ),
        )
        for entry in months
    ]
