"""Pull run records: started, kept alive, failed, finished, and abandoned once provably dead.

A live run writes a heartbeat (every staged page, and every :data:`HEARTBEAT_INTERVAL_S`
while it waits for its provider). A run is abandoned only when its heartbeat is older than
the caller's limit, never for its age: a long pull stays alive. Its reconcile transaction
first claims the run (still ``running``, heartbeat renewed, row locked until commit), and
finishing requires it to be ``running`` still, so an abandoned run can never commit.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.errors import ReconcilerError
from reconciler.logs import redact
from reconciler.providers.base import Coverage, PullStats
from reconciler.store.tables import LineVersion, PullRun, StagingLine, UsageLineRow

runs_t = PullRun.__table__  # type: ignore[attr-defined]
staging_t = StagingLine.__table__  # type: ignore[attr-defined]

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
HEARTBEAT_INTERVAL_S = 30.0
ABANDONED = "abandoned: the process running it stopped (no heartbeat since {})"


class RunAbandonedError(ReconcilerError, RuntimeError):
    """This run was abandoned (its heartbeat was too old) while it was still working."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id} was abandoned as dead while it was still working: its results "
            "are dropped (is a clock wrong, or the heartbeat limit too short?)"
        )


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
                heartbeat_at=now,
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
            "scopes": (
                [s.as_dict() for s in coverage.scopes] if coverage.scopes is not None else None
            ),
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
    snapshot_digest: str | None = None,
    page_digests: str | None = None,
) -> None:
    result = await conn.execute(
        update(runs_t)
        .where(runs_t.c.id == run_id, runs_t.c.status == RUNNING)
        .values(
            status=SUCCEEDED,
            complete=True,
            finished_at=now,
            duration_s=(now - started).total_seconds(),
            coverage=coverage_json(coverage),
            versions_added=versions_added,
            changes_count=changes,
            findings_count=findings,
            snapshot_digest=snapshot_digest,
            page_digests=page_digests,
            **_stat_values(stats),
        )
    )
    if result.rowcount != 1:
        raise RunAbandonedError(run_id)


async def heartbeat(
    conn: AsyncConnection, run_id: int, now: datetime, *, lines_read: int | None = None
) -> None:
    """Renew a live run's heartbeat (and its progress: ``lines_read`` so far); raise if it
    was abandoned meanwhile. In a reconcile transaction this is the claim: the run's row
    stays locked until the commit, so an abandoner waits and then sees the run finished."""
    progress = {} if lines_read is None else {"lines_read": lines_read}
    result = await conn.execute(
        update(runs_t)
        .where(runs_t.c.id == run_id, runs_t.c.status == RUNNING)
        .values(heartbeat_at=now, **progress)
    )
    if result.rowcount != 1:
        raise RunAbandonedError(run_id)


async def abandon_stale_runs(engine: AsyncEngine, *, older_than: timedelta, now: datetime) -> int:
    """Runs still 'running' whose heartbeat is older than ``older_than`` belong to a process
    that died: mark them failed and drop their staging rows. A live run is never touched."""
    cutoff = now - older_than
    last_beat = func.coalesce(runs_t.c.heartbeat_at, runs_t.c.started_at)
    async with engine.begin() as conn:
        dead = (
            await conn.execute(
                select(runs_t.c.id, last_beat.label("last_beat")).where(
                    runs_t.c.status == RUNNING, last_beat < cutoff
                )
            )
        ).all()
        abandoned = 0
        for run_id, beat in dead:
            # The condition again, on the row itself: on PostgreSQL a run that renewed its
            # heartbeat (or committed) meanwhile is re-checked after its lock is released.
            result = await conn.execute(
                update(runs_t)
                .where(runs_t.c.id == run_id, runs_t.c.status == RUNNING, last_beat < cutoff)
                .values(status=FAILED, error=ABANDONED.format(beat), finished_at=now)
            )
            if result.rowcount == 1:
                await conn.execute(delete(staging_t).where(staging_t.c.run_id == run_id))
                abandoned += 1
    return abandoned


async def emptied_months(engine: AsyncEngine, source: str, run_id: int) -> list[tuple[str, int]]:
    """The months of ``source`` that run ``run_id`` returned no line at all for although
    lines were tracked there: (month, how many lines it left absent), oldest first. A
    provider that drops a month whole (an account moved, a token lost its scope) looks like
    every line of it disappeared: worth a word of its own."""
    lines = UsageLineRow.__table__.c  # type: ignore[attr-defined]
    versions = LineVersion.__table__.c  # type: ignore[attr-defined]
    # A month emptied by the run has lines the run made absent, each with its version row:
    # without any (the usual pull), the source's lines are not read.
    made_absent = (
        select(versions.id).where(versions.run_id == run_id, versions.present.is_(False)).limit(1)
    )
    present = func.sum(case((lines.present.is_(True), 1), else_=0))
    left = func.sum(case((lines.last_run_id == run_id, 1), else_=0))
    query = (
        select(lines.month, left.label("left"))
        .where(lines.source == source)
        .group_by(lines.month)
        .having(present == 0, left > 0)
        .order_by(lines.month)
    )
    async with engine.connect() as conn:
        if (await conn.execute(made_absent)).first() is None:
            return []
        return [(str(row.month), int(row.left)) for row in (await conn.execute(query)).all()]
