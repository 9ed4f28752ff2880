"""measure kind of each tracked usage line

Revision ID: 0002_measure_kinds
Revises: 0001_initial
Create Date: 2026-12-01 21:40:00

Every usage line gets a measure kind (volume, percentile, peak, gauge). Existing lines are
classified with the built-in catalog; the next pull of each source applies the configuration's
``[[measures]]`` overrides.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from reconciler.reconcile.measures import classify

revision: str = "0002_measure_kinds"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_lines = sa.table(
    "usage_lines",
    sa.column("provider", sa.String),
    sa.column("product", sa.String),
    sa.column("product_name", sa.String),
    sa.column("usage_type", sa.String),
    sa.column("unit", sa.String),
    sa.column("measure_kind", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("usage_lines", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("measure_kind", sa.String(length=16), nullable=False, server_default="volume")
        )
    connection = op.get_bind()
    c = _lines.c
    stats = connection.execute(
        sa.select(c.provider, c.product, c.product_name, c.usage_type, c.unit).distinct()
    ).all()
    for row in stats:
        kind = classify(
            row.provider,
            row.usage_type,
            row.unit,
            product=row.product,
            product_name=row.product_name,
        ).kind
        if kind.value == "volume":
            continue
        connection.execute(
            sa.update(_lines)
            .where(
                c.provider == row.provider,
                c.product == row.product,
                c.product_name == row.product_name,
                c.usage_type == row.usage_type,
                c.unit == row.unit,
            )
            .values(measure_kind=kind.value)
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_lines", schema=None) as batch_op:
        batch_op.drop_column("measure_kind")
