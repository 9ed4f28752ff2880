"""Reading review items (drift and findings) from the store as domain PlanItems."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.domain import (
    FindingState,
    ItemCategory,
    LineStatus,
    Month,
    Observation,
    PlanItem,
    Severity,
)
from reconciler.reconcile.forecast import forecast_from_json
from reconciler.store.tables import FindingRow, UsageLineRow

findings_table = FindingRow.__table__  # type: ignore[attr-defined]
lines_table = UsageLineRow.__table__  # type: ignore[attr-defined]


def _observation(
    quantity: Decimal | None, unit: str | None, status: str | None
) -> Observation | None:
    if quantity is None:
        return None
    return Observation(
        quantity, unit or "", LineStatus(status) if status else LineStatus.COLLECTING
    )


def item_from_row(r: Any) -> PlanItem:
    """A PlanItem from a ``findings`` row (ORM object or Row with the same attribute names)."""
    return PlanItem(
        category=ItemCategory(r.category),
        kind=r.kind,
        severity=Severity(r.severity),
        fingerprint=r.fingerprint,
        source=r.source,
        provider=r.provider,
        account=r.account,
        product=r.product,
        usage_type=r.usage_type,
        region=r.region,
        service=r.service,
        month=Month.parse(r.month),
        before=_observation(r.before_quantity, r.before_unit, r.before_status),
        after=_observation(r.after_quantity, r.after_unit, r.after_status),
        message=r.message,
        product_name=r.product_name,
        forecast=forecast_from_json(getattr(r, "forecast", None)),
        impact=r.impact_amount,
        impact_currency=r.impact_currency or "",
        service_name=getattr(r, "line_service_name", None) or "",
        period_start=getattr(r, "line_period_start", None),
        period_end=getattr(r, "line_period_end", None),
        current=_current(r),
    )


def _current(r: Any) -> Observation | None:
    """The item's line as it is now, if the row was read with it and the line is present."""
    if not getattr(r, "line_present", False):
        return None
    return _observation(r.line_quantity, r.line_unit, r.line_status)


def _service_name() -> Any:
    """The service's name as the provider last reported it (a service id names one service)."""
    f, ul = findings_table.c, lines_table.c
    return (
        select(func.max(ul.service_name))
        .where(ul.source == f.source, ul.month == f.month, ul.service == f.service, f.service != "")
        .scalar_subquery()
    )


async def load_items(
    conn: AsyncConnection,
    states: Iterable[FindingState] = (FindingState.OPEN,),
    sources: Sequence[str] | None = None,
) -> list[PlanItem]:
    """Review items in the given states, most severe first, then by source, month, kind."""
    where = [findings_table.c.state.in_([str(s) for s in states])]
    if sources:
        where.append(findings_table.c.source.in_(list(sources)))
    return sort_items(await _items_where(conn, *where))


async def load_items_by_fingerprint(
    conn: AsyncConnection, fingerprints: Sequence[str]
) -> dict[str, PlanItem]:
    """The review items with these fingerprints, whatever their state."""
    found: dict[str, PlanItem] = {}
    for start in range(0, len(fingerprints), 500):
        chunk = list(fingerprints[start : start + 500])
        for item in await _items_where(conn, findings_table.c.fingerprint.in_(chunk)):
            found[item.fingerprint] = item
    return found


async def _items_where(conn: AsyncConnection, *where: Any) -> list[PlanItem]:
    line = lines_table.alias("item_line")
    f, ul = findings_table.c, line.c
    query = (
        select(
            findings_table,
            _service_name().label("line_service_name"),
            ul.period_start.label("line_period_start"),
            ul.period_end.label("line_period_end"),
            ul.quantity.label("line_quantity"),
            ul.unit.label("line_unit"),
            ul.status.label("line_status"),
            ul.present.label("line_present"),
        )
        .select_from(findings_table.outerjoin(line, ul.id == f.line_id))
        .where(*where)
    )
    return [item_from_row(row) for row in (await conn.execute(query)).all()]


def sort_items(items: Iterable[PlanItem]) -> list[PlanItem]:
    return sorted(
        items,
        key=lambda i: (
            -i.severity.rank,
            i.source,
            str(i.month),
            i.kind,
            i.line_label,
            i.fingerprint,
        ),
    )
