"""Pull run records: started, failed, finished, and abandoned by a process that died."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.logs import redact
from reconciler.providers.base import Coverage, PullStats
from reconciler.store.tables import PullRun, StagingLine

runs_t = PullRun.__table__  # type: ignore[attr-defined]
staging_t = StagingLine.__table__  # type: ignore[attr-defined]

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


async def start_run(
    engine: AsyncEngine,
    *,
    source: str,
    provider: str,
    now: datetime,
    instance: str | None = None,
    slot: str | None = None,
) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(runs_t).values(
                source=source,
                provider=provider,
                status=RUNNING,
                started_at=now,
                lines_read=0,
                pages=0,
                api_calls=0,
                retries=0,
                versions_added=0,
                changes_count=0,
                findings_count=0,
                coverage="{}",
                complete=False,
                instance=instance,
                slot=slot,
            )
        )
        run_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    if run_id is None:
        raise RuntimeError("the database did not return the new run's id")
    return int(run_id)


def _stat_values(stats: PullStats) -> dict[str, Any]:
    return {
        "lines_read": stats.lines,
        "pages": stats.pages,
        "api_calls": stats.api_calls,
        "retries": stats.retries,
    }


def coverage_json(coverage: Coverage) -> str:
    return json.dumps(
        {
            "months": [str(m) for m in coverage.months],
            "accounts": sorted(coverage.accounts) if coverage.accounts is not None else None,
            "products": sorted(coverage.products) if coverage.products is not None else None,
        }
    )


async def fail_run(
    engine: AsyncEngine,
    run_id: int,
    *,
    error: str,
    stats: PullStats,
    started: datetime,
    now: datetime,
) -> None:
    """Record a failed run and drop whatever it staged; the tracked state is untouched."""
    async with engine.begin() as conn:
        await conn.execute(delete(staging_t).where(staging_t.c.run_id == run_id))
        await conn.execute(
            update(runs_t)
            .where(runs_t.c.id == run_id)
            .values(
                status=FAILED,
                error=redact(error)[:4000],  # no secret in any encoding is stored
                finished_at=now,
                duration_s=(now - started).total_seconds(),
                **_stat_values(stats),
            )
        )


async def finish_run(
    conn: AsyncConnection,
    run_id: int,
    *,
    stats: PullStats,
    coverage: Coverage,
    versions_added: int,
    changes: int,
    findings: int,
    started: datetime,
    now: datetime,
) -> None:
    await conn.execute(
        update(runs_t)
        .where(runs_t.c.id == run_id)
        .values(
            status=SUCCEEDED,
            complete=True,
            finished_at=now,
            duration_s=(now - started).total_seconds(),
            coverage=coverage_json(coverage),
            versions_added=versions_added,
            changes_count=changes,
            findings_count=findings,
            **_stat_values(stats),
        )
    )


async def abandon_stale_runs(engine: AsyncEngine, *, older_than: timedelta, now: datetime) -> int:
    """Runs still 'running' long after they started belong to a process that died:
    mark them failed and drop their staging rows."""
    cutoff = now - older_than
    async with engine.begin() as conn:
        stale = (
            (
                await conn.execute(
                    select(runs_t.c.id).where(
                        runs_t.c.status == RUNNING, runs_t.c.started_at < cutoff
                    )
                )
            )
            .scalars()
            .all()
        )
        for run_id in stale:
            await conn.execute(delete(staging_t).where(staging_t.c.run_id == run_id))
            await conn.execute(
                update(runs_t)
                .where(runs_t.c.id == run_id)
                .values(
                    status=FAILED,
                    error="abandoned: the process running it stopped",
                    finished_at=now,
                )
            )
    return len(stale)
