"""findings: a projected overage's forecast, and the forecast its acknowledgement accepted

Revision ID: 0007_forecast
Revises: 0006_invoice_line_items
Create Date: 2026-12-01 21:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_forecast"
down_revision: str | None = "0006_invoice_line_items"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("forecast", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_forecast", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_column("acknowledged_forecast")
        batch_op.drop_column("forecast")
