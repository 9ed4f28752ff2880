"""usage_lines: an index of the account-level lines (no service) by source and month

Revision ID: 0010_account_level_index
Revises: 0009_snapshot_digest
Create Date: 2026-12-02 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_account_level_index"
down_revision: str | None = "0009_snapshot_digest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACCOUNT_LEVEL = "service = ''"


def upgrade() -> None:
    op.create_index(
        "ix_usage_lines_account_level",
        "usage_lines",
        ["source", "month"],
        sqlite_where=sa.text(ACCOUNT_LEVEL),
        postgresql_where=sa.text(ACCOUNT_LEVEL),
    )


def downgrade() -> None:
    op.drop_index("ix_usage_lines_account_level", table_name="usage_lines")
