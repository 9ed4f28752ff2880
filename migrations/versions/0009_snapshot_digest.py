"""pull_runs: the digest of what a succeeded run compared (its snapshot and inputs)

Revision ID: 0009_snapshot_digest
Revises: 0008_acknowledged_values
Create Date: 2026-12-02 08:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009_snapshot_digest"
down_revision: str | None = "0008_acknowledged_values"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pull_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("snapshot_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("pull_runs", schema=None) as batch_op:
        batch_op.drop_column("snapshot_digest")
