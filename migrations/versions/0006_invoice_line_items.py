"""invoice line items: every item kept (tiers, credits, fees), its invoice and billing period

Revision ID: 0006_invoice_line_items
Revises: 0005_alert_blocks
Create Date: 2026-12-01 22:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import reconciler.store.types

revision: str = "0006_invoice_line_items"
down_revision: str | None = "0005_alert_blocks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    # Rows written before this revision came from one invoice each month, starting in it:
    # their billing period is unknown (NULL) and is read as covering their month.
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.alter_column(
            "units",
            existing_type=reconciler.store.types.ExactDecimal(length=80),
            nullable=True,
        )
        batch_op.add_column(
            sa.Column("invoice_id", _TEXT(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("position", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("description", _TEXT(length=1024), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("unit", _TEXT(length=64), nullable=True))
        batch_op.add_column(sa.Column("billing_start", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("billing_end", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.drop_column("billing_end")
        batch_op.drop_column("billing_start")
        batch_op.drop_column("unit")
        batch_op.drop_column("description")
        batch_op.drop_column("position")
        batch_op.drop_column("invoice_id")
    op.execute("DELETE FROM invoice_lines WHERE units IS NULL")
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.alter_column(
            "units",
            existing_type=reconciler.store.types.ExactDecimal(length=80),
            nullable=False,
        )
