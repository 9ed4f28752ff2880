"""alert destination blocks: a refusing webhook keeps its messages pending

Revision ID: 0005_alert_blocks
Revises: 0004_cost
Create Date: 2026-12-01 21:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import reconciler.store.types

revision: str = "0005_alert_blocks"
down_revision: str | None = "0004_cost"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_destination_blocks",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("destination", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("blocked_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("alert_destination_blocks")
