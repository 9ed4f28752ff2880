"""Housekeeping's purge: run history and delivered or failed alerts older than
``daemon.keep_runs_days``, so that the database does not grow with every pull.

What the state still points at is kept whatever its age: a run that a tracked line, a line
version or an invoice line names stays (the history of every value is the point of the state);
a run still ``running`` is left to the stale-run cleanup. Everything else goes: the changes the
window has left behind, the runs nobody refers to any more (most of them pulls that changed
nothing), and outbox messages sent or given up on before the cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, union
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.store.tables import (
    AlertOutboxRow,
    ChangeRow,
    InvoiceLineRow,
    LineVersion,
    PullRun,
    UsageLineRow,
)

runs_t = PullRun.__table__  # type: ignore[attr-defined]
changes_t = ChangeRow.__table__  # type: ignore[attr-defined]
lines_t = UsageLineRow.__table__  # type: ignore[attr-defined]
versions_t = LineVersion.__table__  # type: ignore[attr-defined]
invoice_lines_t = InvoiceLineRow.__table__  # type: ignore[attr-defined]
outbox_t = AlertOutboxRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Purged:
    runs: int
    changes: int
    alerts: int

    def __str__(self) -> str:
        return f"{self.runs} old runs, {self.changes} old changes, {self.alerts} old alerts"


async def purge_history(engine: AsyncEngine, *, before: datetime) -> Purged:
    """Delete what ended before ``before`` and nothing still refers to (one transaction)."""
    async with engine.begin() as conn:
        changes = await conn.execute(delete(changes_t).where(changes_t.c.created_at < before))
        referenced = union(
            select(lines_t.c.first_run_id),
            select(lines_t.c.last_run_id),
            select(versions_t.c.run_id),
            select(invoice_lines_t.c.run_id),
            select(changes_t.c.run_id),
        )
        runs = await conn.execute(
            delete(runs_t).where(
                runs_t.c.status != "running",
                runs_t.c.started_at < before,
                runs_t.c.id.not_in(referenced),
            )
        )
        alerts = await conn.execute(
            delete(outbox_t).where(
                or_(
                    and_(outbox_t.c.state == "sent", outbox_t.c.sent_at < before),
                    and_(outbox_t.c.state == "failed", outbox_t.c.created_at < before),
                )
            )
        )
    return Purged(int(runs.rowcount or 0), int(changes.rowcount or 0), int(alerts.rowcount or 0))
