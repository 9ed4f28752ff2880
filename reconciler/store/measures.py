"""The measure kind of tracked lines: kept in step with the catalog and ``[[measures]]``.

The kind is a property of a stat type (provider, product, usage type, unit), so it is set per
distinct stat type of a source, in a handful of statements whatever the number of lines. A pull
classifies the lines it wrote (new lines arrive as ``volume``; a pull that wrote none
classifies nothing); when the rules themselves changed since the source's last pull (a
``[[measures]]`` edit, a new catalog), every line of the source is classified again, once.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.domain import Month, PlanItem, Severity, line_digest
from reconciler.reconcile.measures import (
    BUILTIN_CATALOG,
    Classified,
    MeasureKind,
    MeasureRule,
    classify,
)
from reconciler.settings import ExpectationSettings
from reconciler.store.findings import drift_item
from reconciler.store.ingest import LineChange
from reconciler.store.staging import StatKey
from reconciler.store.tables import StateMeta, UsageLineRow

lines_t = UsageLineRow.__table__  # type: ignore[attr-defined]
meta_t = StateMeta.__table__  # type: ignore[attr-defined]


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
    conn: AsyncConnection,
    rules: Sequence[MeasureRule],
    source: str | None = None,
    months: Sequence[Month] | None = None,
    run_id: int | None = None,
) -> list[StatType]:
    """The distinct stat types of the state (of one source, of some months, of the lines
    run ``run_id`` wrote)."""
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
    if months is not None:
        query = query.where(c.month.in_([str(m) for m in months]))
    if run_id is not None:
        query = query.where(c.last_run_id == run_id)
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
    conn: AsyncConnection,
    source: str,
    rules: Sequence[MeasureRule],
    months: Sequence[Month] | None = None,
    *,
    run_id: int | None = None,
    wrote_lines: bool = True,
    staged_stats: Set[StatKey] | None = None,
    updated_ids: Sequence[int] = (),
    first_pull: bool = False,
) -> int:
    """Set the kind of the lines of ``source`` (of ``months``; of those run ``run_id`` wrote,
    none if it ``wrote_lines`` not; unless the rules changed since the source was last
    classified: then of all its lines). Returns the lines changed.

    With ``staged_stats``, the stat types of every line the run staged, and
    ``updated_ids``, the tracked lines it rewrote (the others it wrote are new), the lines it
    wrote are classified from those without grouping them. ``first_pull``: run ``run_id``
    is the source's first (every line of it is new), which need not be looked up.
    """
    digest = rules_digest(rules)
    key = "measures:" + line_digest((source,))
    stored = (await conn.execute(select(meta_t.c.value).where(meta_t.c.key == key))).scalar()
    same_rules = stored == digest
    if same_rules and not wrote_lines:
        return 0
    if (
        run_id is not None
        and staged_stats is not None
        and (
            same_rules
            or (stored is None and (first_pull or await _all_new_in(conn, source, run_id)))
        )
    ):
        changed = await _classify_written(conn, source, rules, run_id, staged_stats, updated_ids)
        if stored is None:
            await conn.execute(insert(meta_t).values(key=key, value=digest))
        return changed
    scope = months if same_rules else None
    written_by = run_id if same_rules else None
    moves = [
        (stat, stat.classified.kind.value)
        for stat in await stat_types(conn, rules, source, scope, written_by)
        if stat.classified.kind.value != stat.stored_kind
    ]
    changed = 0
    for start in range(0, len(moves), 100):
        changed += await _move(conn, source, moves[start : start + 100], scope, written_by)
    if stored is None:
        await conn.execute(insert(meta_t).values(key=key, value=digest))
    elif stored != digest:
        await conn.execute(update(meta_t).where(meta_t.c.key == key).values(value=digest))
    return changed


async def _move(
    conn: AsyncConnection,
    source: str,
    moves: Sequence[tuple[StatType, str]],
    months: Sequence[Month] | None,
    run_id: int | None = None,
) -> int:
    """One UPDATE giving each of these stat types its new kind (one scan of the lines)."""
    c = lines_t.c
    conditions = [
        and_(
            c.provider == stat.provider,
            c.product == stat.product,
            c.product_name == stat.product_name,
            c.usage_type == stat.usage_type,
            c.unit == stat.unit,
            c.measure_kind == stat.stored_kind,
        )
        for stat, _ in moves
    ]
    new_kind = case(*((cond, kind) for cond, (_, kind) in zip(conditions, moves, strict=True)))
    query = update(lines_t).where(c.source == source, or_(*conditions))
    if months is not None:
        query = query.where(c.month.in_([str(m) for m in months]))
    if run_id is not None:
        query = query.where(c.last_run_id == run_id)
    result = await conn.execute(query.values(measure_kind=new_kind))
    return int(result.rowcount)


async def _all_new_in(conn: AsyncConnection, source: str, run_id: int) -> bool:
    """Whether every line of ``source`` is new in run ``run_id`` (its first pull)."""
    c = lines_t.c
    other = select(c.id).where(c.source == source, c.first_run_id != run_id).limit(1)
    return (await conn.execute(other)).first() is None


async def _classify_written(
    conn: AsyncConnection,
    source: str,
    rules: Sequence[MeasureRule],
    run_id: int,
    staged_stats: Set[StatKey],
    updated_ids: Sequence[int],
) -> int:
    """Give the lines run ``run_id`` inserted or rewrote (each of one of ``staged_stats``)
    their kind. New lines arrive as volumes: only those of other kinds are set (through the
    first-run index); a rewritten line (by id) may hold any kind. Nothing is grouped."""
    c = lines_t.c
    others: list[tuple[StatKey, str]] = []
    for stat in sorted(staged_stats):
        provider, product, product_name, usage_type, unit = stat
        kind = classify(
            provider, usage_type, unit, product=product, product_name=product_name, overrides=rules
        ).kind
        if kind is not MeasureKind.VOLUME:
            others.append((stat, kind.value))

    def matches(stat: StatKey) -> Any:
        provider, product, product_name, usage_type, unit = stat
        return and_(
            c.provider == provider,
            c.product == product,
            c.product_name == product_name,
            c.usage_type == usage_type,
            c.unit == unit,
        )

    async def set_kinds(written: Any, *, volumes: bool) -> int:
        changed = 0
        for start in range(0, len(others), 100):
            chunk = others[start : start + 100]
            new_kind = case(*((matches(stat), kind) for stat, kind in chunk))
            result = await conn.execute(
                update(lines_t)
                .where(written, or_(*(matches(s) for s, _ in chunk)), c.measure_kind != new_kind)
                .values(measure_kind=new_kind)
            )
            changed += int(result.rowcount)
        if volumes:
            volume = MeasureKind.VOLUME.value
            result = await conn.execute(
                update(lines_t)
                .where(written, c.measure_kind != volume, *(~matches(s) for s, _ in others))
                .values(measure_kind=volume)
            )
            changed += int(result.rowcount)
        return changed

    changed = await set_kinds(c.first_run_id == run_id, volumes=False) if others else 0
    ids = sorted(updated_ids)
    for start in range(0, len(ids), 500):
        changed += await set_kinds(c.id.in_(ids[start : start + 500]), volumes=True)
    return changed


def rules_digest(rules: Sequence[MeasureRule]) -> str:
    """What decides the kinds: the built-in catalog and the configured rules, in order."""
    parts = [repr(entry) for entry in BUILTIN_CATALOG]
    parts += [f"{r.provider}|{r.product}|{r.usage_type}|{r.unit}|{r.kind}" for r in rules]
    return line_digest(tuple(parts))


async def quiet_not_billable(
    conn: AsyncConnection,
    changes: Sequence[LineChange],
    expectations: Sequence[ExpectationSettings],
) -> list[PlanItem]:
    """Drift items of these changes, with their line's period; those of a not-billable line
    are ``info`` at most.

    A stat the provider marks ``isBillable: false`` is tracked and shown but never alarms,
    unless an expectation of its source names its usage type exactly.
    """
    c = lines_t.c
    # Per line id: (quiet, period start, period end), compact: a big pull has thousands.
    lines: dict[int, tuple[bool, Any, Any]] = {}
    named = {e.usage_type for e in expectations}
    ids = [change.line_id for change in changes]
    for chunk in range(0, len(ids), 500):
        query = select(c.id, c.billable, c.period_start, c.period_end).where(
            c.id.in_(ids[chunk : chunk + 500])
        )
        for row in (await conn.execute(query)).all():
            lines[row.id] = (row.billable is False, row.period_start, row.period_end)
    del ids
    items: list[PlanItem] = []
    for change in changes:
        item = drift_item(change)
        quiet, start, end = lines.get(change.line_id, (False, None, None))
        quieted = quiet and change.key.usage_type not in named
        severity = Severity.INFO if quieted else item.severity
        items.append(replace(item, severity=severity, period_start=start, period_end=end))
    return items
