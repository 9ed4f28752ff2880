"""The tracked state: the tables a pull writes in its reconcile transaction.

A pull that fails or is killed leaves every row of ``TRACKED_TABLES`` exactly as it was, and
no row that names its run in ``RUN_COLUMNS``. The chaos suite and the kill tests compare these
tables before and after a pull; both take the list from here, so they check the same state.
"""

from __future__ import annotations

TRACKED_TABLES: tuple[str, ...] = (
    "usage_lines",
    "line_versions",
    "changes",
    "findings",
    "invoice_lines",
    "alert_outbox",
    "alert_announcements",
    "state_meta",
)

# The columns by which a row of a tracked table names the run that wrote it.
RUN_COLUMNS: dict[str, tuple[str, ...]] = {
    "line_versions": ("run_id",),
    "changes": ("run_id",),
    "findings": ("first_run_id", "last_run_id"),
    "usage_lines": ("first_run_id", "last_run_id"),
    "invoice_lines": ("run_id",),
    "alert_outbox": ("run_id",),
}


def naming_run(table: str) -> str:
    """The SQL condition on ``table``'s rows that name the run bound as ``:run``."""
    return " OR ".join(f"{column} = :run" for column in RUN_COLUMNS[table])
