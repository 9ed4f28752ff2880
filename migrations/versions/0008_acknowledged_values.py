"""findings: the observed values an acknowledgement accepted; outbox: the items a message announces

Revision ID: 0008_acknowledged_values
Revises: 0007_forecast
Create Date: 2026-12-02 01:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import reconciler.store.types

revision: str = "0008_acknowledged_values"
down_revision: str | None = "0007_forecast"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "acknowledged_quantity",
                reconciler.store.types.ExactDecimal(length=80),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "acknowledged_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True
            )
        )
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fingerprints", sa.Text(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.drop_column("fingerprints")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_column("acknowledged_status")
        batch_op.drop_column("acknowledged_quantity")
