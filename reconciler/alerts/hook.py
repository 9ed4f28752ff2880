"""The refresh → alerts seam: what a run hands to the alert outbox in its own transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.alerts.outbox import enqueue_run_alerts
from reconciler.refresh import AlertHook, RunOutcome
from reconciler.settings import Settings


def outbox_hook(settings: Settings) -> AlertHook | None:
    """The hook that enqueues a run's alerts in the run's transaction.

    Messages are queued even without a webhook configured: they wait in the outbox, and
    ``reconciler alerts status`` says so, until a webhook is configured.
    """

    async def enqueue(conn: AsyncConnection, outcome: RunOutcome) -> None:
        await enqueue_run_alerts(conn, settings, outcome)

    return enqueue
