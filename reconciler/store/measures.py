"""The measure kind of tracked lines: kept in step with the catalog and ``[[measures]]``.

The kind is a property of a stat type (provider, product, usage type, unit), so it is set per
distinct stat type of a source, in a handful of statements whatever the number of lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.reconcile.measures import Classified, MeasureRule, classify
from reconciler.store.tables import UsageLineRow

lines_t = UsageLineRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class StatType:
    """One stat type seen in the state, with the kind it gets and why."""

    source: str
    provider: str
    product: str
    product_name: str
    usage_type: str
    unit: str
    lines: int
    stored_kind: str
    classified: Classified


async def stat_types(
    conn: AsyncConnection, rules: Sequence[MeasureRule], source: str | None = None
) -> list[StatType]:
    c = lines_t.c
    query = select(
        c.source,
        c.provider,
        c.product,
        c.product_name,
        c.usage_type,
        c.unit,
        c.measure_kind,
        func.count().label("lines"),
    ).group_by(
        c.source, c.provider, c.product, c.product_name, c.usage_type, c.unit, c.measure_kind
    )
    if source is not None:
        query = query.where(c.source == source)
    rows = (await conn.execute(query)).all()
    found = [
        StatType(
            r.source,
            r.provider,
            r.product,
            r.product_name,
            r.usage_type,
            r.unit,
            r.lines,
            r.measure_kind,
            classify(
                r.provider,
                r.usage_type,
                r.unit,
                product=r.product,
                product_name=r.product_name,
                overrides=rules,
            ),
        )
        for r in rows
    ]
    return sorted(found, key=lambda s: (s.source, s.product_name or s.product, s.usage_type))


async def apply_measure_kinds(
    conn: AsyncConnection, source: str, rules: Sequence[MeasureRule]
) -> int:
    """Set the kind of every line of ``source`` from the catalog and rules; lines changed."""
    c = lines_t.c
    changed = 0
    for stat in await stat_types(conn, rules, source):
        kind = stat.classified.kind.value
        if kind == stat.stored_kind:
            continue
        result = await conn.execute(
            update(lines_t)
            .where(
                c.source == source,
                c.provider == stat.provider,
                c.product == stat.product,
                c.product_name == stat.product_name,
                c.usage_type == stat.usage_type,
                c.unit == stat.unit,
                c.measure_kind == stat.stored_kind,
            )
            .values(measure_kind=kind)
        )
        changed += result.rowcount
    return changed
