"""Run health per source and restated lines, read from the store's run and version history."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from reconciler.domain import LineStatus, Month
from reconciler.reports.model import RestatedLine, SourceHealth, VersionPoint
from reconciler.store.tables import LineVersion, PullRun, UsageLineRow

runs_table = PullRun.__table__  # type: ignore[attr-defined]
lines_table = UsageLineRow.__table__  # type: ignore[attr-defined]
versions_table = LineVersion.__table__  # type: ignore[attr-defined]

RECENT_RUNS_WINDOW = timedelta(days=7)
SUCCEEDED = "succeeded"
FAILED = "failed"


def _source_filter(column: Any, sources: Sequence[str]) -> ColumnElement[bool]:
    return column.in_(list(sources)) if sources else true()


async def source_health(
    conn: AsyncConnection,
    configured: Sequence[tuple[str, str]],
    sources: Sequence[str],
    now: datetime,
) -> list[SourceHealth]:
    """Health of every configured source (``(name, provider)``) and every source with runs."""
    r = runs_table.c
    window_start = now - RECENT_RUNS_WINDOW
    recent = r.started_at >= window_start
    aggregate = (
        select(
            r.source,
            func.max(r.started_at).label("last_started_at"),
            func.max(case((r.status == SUCCEEDED, r.started_at))).label("success_started_at"),
            func.max(case((r.status == SUCCEEDED, r.finished_at))).label("last_success_at"),
            func.count().filter(recent).label("recent_runs"),
            func.count().filter(and_(recent, r.status == FAILED)).label("recent_failures"),
            func.coalesce(func.sum(case((recent, r.api_calls), else_=0)), 0).label("api_calls"),
            func.coalesce(func.sum(case((recent, r.retries), else_=0)), 0).label("retries"),
        )
        .where(_source_filter(r.source, sources))
        .group_by(r.source)
    )
    rows = {row.source: row for row in (await conn.execute(aggregate)).all()}

    latest = aggregate.subquery()
    last_runs = select(runs_table).join(
        latest,
        and_(r.source == latest.c.source, r.started_at == latest.c.last_started_at),
    )
    last = {row.source: row for row in (await conn.execute(last_runs)).all()}

    failures = (
        select(r.source, func.count().label("failures"))
        .select_from(runs_table.outerjoin(latest, r.source == latest.c.source))
        .where(
            r.status == FAILED,
            _source_filter(r.source, sources),
            (latest.c.success_started_at.is_(None)) | (r.started_at > latest.c.success_started_at),
        )
        .group_by(r.source)
    )
    since_success = {row.source: row.failures for row in (await conn.execute(failures)).all()}

    providers = dict(configured)
    for name, last_run in last.items():
        providers.setdefault(name, last_run.provider)
    names = [n for n in providers if not sources or n in sources]
    health: list[SourceHealth] = []
    for name in sorted(names):
        agg, run = rows.get(name), last.get(name)
        if agg is None or run is None:
            health.append(SourceHealth(source=name, provider=providers[name]))
            continue
        health.append(
            SourceHealth(
                source=name,
                provider=providers[name],
                last_status=run.status,
                last_started_at=run.started_at,
                last_success_at=agg.last_success_at,
                last_duration_s=run.duration_s,
                last_api_calls=run.api_calls,
                last_lines_read=run.lines_read,
                last_error=run.error,
                failures_since_success=int(since_success.get(name, 0)),
                recent_runs=int(agg.recent_runs),
                recent_failures=int(agg.recent_failures),
                recent_api_calls=int(agg.api_calls),
                recent_retries=int(agg.retries),
            )
        )
    return health


async def restated_lines(
    conn: AsyncConnection,
    first: Month,
    last: Month,
    sources: Sequence[str],
) -> list[RestatedLine]:
    """Lines of the months whose quantity changed after a finalized version was recorded.

    Most changed first (by the size of the change relative to the first finalized value).
    """
    final = versions_table.alias("final")
    later = versions_table.alias("later")
    ul = lines_table.c
    # Only lines with more than one version can have been restated: finding those first is
    # one pass over the line_id index, instead of a self-join over every version.
    several = (
        select(versions_table.c.line_id)
        .group_by(versions_table.c.line_id)
        .having(func.count() > 1)
        .subquery("several")
    )
    candidates = (
        select(final.c.line_id)
        .select_from(several)
        .join(final, final.c.line_id == several.c.line_id)
        .join(later, and_(later.c.line_id == final.c.line_id, later.c.run_id > final.c.run_id))
        .join(lines_table, ul.id == final.c.line_id)
        .where(
            final.c.status == LineStatus.FINALIZED.value,
            later.c.present == true(),
            later.c.quantity != final.c.quantity,
            ul.month >= str(first),
            ul.month <= str(last),
            _source_filter(ul.source, sources),
        )
        .distinct()
    )
    v = versions_table.c
    query = (
        select(
            v.line_id,
            v.run_id,
            v.recorded_at,
            v.quantity.label("v_quantity"),
            v.unit.label("v_unit"),
            v.status.label("v_status"),
            v.present.label("v_present"),
            ul.source,
            ul.provider,
            ul.account,
            ul.product,
            ul.product_name,
            ul.usage_type,
            ul.region,
            ul.service,
            ul.service_name,
            ul.month,
            ul.period_start,
            ul.period_end,
        )
        .join(lines_table, ul.id == v.line_id)
        .where(v.line_id.in_(candidates))
        .order_by(v.line_id, v.run_id, v.id)
    )
    versions: dict[int, list[VersionPoint]] = defaultdict(list)
    lines: dict[int, Any] = {}
    for row in (await conn.execute(query)).all():
        lines[row.line_id] = row
        if row.v_present:
            versions[row.line_id].append(
                VersionPoint(
                    run_id=row.run_id,
                    recorded_at=row.recorded_at,
                    quantity=row.v_quantity,
                    unit=row.v_unit,
                    status=LineStatus(row.v_status),
                )
            )
    restated = [
        RestatedLine(
            line_id=line_id,
            source=row.source,
            provider=row.provider,
            account=row.account,
            product=row.product,
            product_name=row.product_name,
            usage_type=row.usage_type,
            region=row.region,
            service=row.service,
            service_name=row.service_name,
            month=Month.parse(row.month),
            period_start=row.period_start,
            period_end=row.period_end,
            versions=tuple(versions[line_id]),
        )
        for line_id, row in lines.items()
    ]
    return sorted(restated, key=_restatement_size, reverse=True)


def _restatement_size(line: RestatedLine) -> tuple[Any, ...]:
    base = line.first_finalized
    change = abs(line.current - base)
    relative = change / abs(base) if base else change
    return (relative, change, line.source, line.label, -line.line_id)
