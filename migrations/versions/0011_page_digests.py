"""pull_runs: the digest of each page a succeeded run staged, in stream order

Revision ID: 0011_page_digests
Revises: 0010_account_level_index
Create Date: 2026-12-02 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_page_digests"
down_revision: str | None = "0010_account_level_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pull_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("page_digests", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pull_runs", schema=None) as batch_op:
        batch_op.drop_column("page_digests")
