"""The refresh → alerts seam: what a run hands to the alert outbox in its own transaction."""

from __future__ import annotations

from reconciler.refresh import AlertHook
from reconciler.settings import Settings


def outbox_hook(settings: Settings) -> AlertHook | None:
    """The hook that enqueues a run's alerts in the run's transaction."""
    return None
