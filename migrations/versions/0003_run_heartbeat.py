"""pull runs carry a heartbeat

Revision ID: 0003_run_heartbeat
Revises: 0002_measure_kinds
Create Date: 2026-12-01 21:40:00.000000

A run is abandoned only when its heartbeat is old (its process stopped), never by its age.
Runs that exist already get their start time as their last heartbeat.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reconciler.store.types

revision: str = "0003_run_heartbeat"
down_revision: str | None = "0002_measure_kinds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pull_runs") as batch:
        batch.add_column(
            sa.Column(
                "heartbeat_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=True
            )
        )
    op.execute("UPDATE pull_runs SET heartbeat_at = started_at")


def downgrade() -> None:
    with op.batch_alter_table("pull_runs") as batch:
        batch.drop_column("heartbeat_at")
