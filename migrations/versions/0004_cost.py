"""money: review items carry their money impact; expected costs per source and month

Revision ID: 0004_cost
Revises: 0003_run_heartbeat
Create Date: 2026-12-01 21:45:00.000000

Existing review items have no impact (no rate priced them); no expected cost is known yet,
so the first run that prices a month records it without calling it a re-pricing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import reconciler.store.types

revision: str = "0004_cost"
down_revision: str | None = "0003_run_heartbeat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(
            sa.Column(
                "impact_amount", reconciler.store.types.ExactDecimal(length=80), nullable=True
            )
        )
        batch.add_column(
            sa.Column("impact_currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True)
        )
    op.create_table(
        "expected_costs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("amount", reconciler.store.types.ExactDecimal(length=80), nullable=False),
        sa.Column("usage_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("finalized", sa.Boolean(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["pull_runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "month", "currency"),
    )


def downgrade() -> None:
    op.drop_table("expected_costs")
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("impact_currency")
        batch.drop_column("impact_amount")
