"""initial schema

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-24 02:57:26.247022
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import reconciler.store.types

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "alert_announcements",
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("values_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("severity", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "announced_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("fingerprint"),
    )
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("route", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alert_outbox_state_next", ["state", "next_attempt_at"], unique=False
        )

    op.create_table(
        "applied_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.Integer(), nullable=False),
        sa.Column("applied_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("fingerprints", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "job_leases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slot", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("acquired_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slot", name="uq_job_leases_slot"),
    )
    op.create_table(
        "pull_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("started_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("lines_read", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("api_calls", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("versions_added", sa.Integer(), nullable=False),
        sa.Column("changes_count", sa.Integer(), nullable=False),
        sa.Column("findings_count", sa.Integer(), nullable=False),
        sa.Column("coverage", sa.Text(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("instance", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("slot", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pull_runs", schema=None) as batch_op:
        batch_op.create_index("ix_pull_runs_source_started", ["source", "started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_pull_runs_status"), ["status"], unique=False)

    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "staging_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("product", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("product_name", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("usage_type", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("region", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("service", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("service_name", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("quantity", reconciler.store.types.ExactDecimal(length=80), nullable=False),
        sa.Column("raw_quantity", reconciler.store.types.ExactDecimal(length=80), nullable=True),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=True),
        sa.Column(
            "provider_updated_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_staging_lines_run_id", "staging_lines", ["run_id"], unique=False)
    op.create_table(
        "state_meta",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("usage_type", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("product_name", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("region", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("units", reconciler.store.types.ExactDecimal(length=80), nullable=False),
        sa.Column("amount", reconciler.store.types.ExactDecimal(length=80), nullable=True),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pull_runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.create_index("ix_invoice_lines_source_month", ["source", "month"], unique=False)

    op.create_table(
        "usage_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("product", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("product_name", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("usage_type", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("region", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("service", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("service_name", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("quantity", reconciler.store.types.ExactDecimal(length=80), nullable=False),
        sa.Column("raw_quantity", reconciler.store.types.ExactDecimal(length=80), nullable=True),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=True),
        sa.Column(
            "provider_updated_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("versions", sa.Integer(), nullable=False),
        sa.Column("first_run_id", sa.Integer(), nullable=False),
        sa.Column("last_run_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["first_run_id"],
            ["pull_runs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["last_run_id"],
            ["pull_runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("usage_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_lines_first_run_id"), ["first_run_id"], unique=False
        )
        batch_op.create_index("ix_usage_lines_source_month", ["source", "month"], unique=False)

    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("severity", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("before_quantity", reconciler.store.types.ExactDecimal(length=80), nullable=True),
        sa.Column("before_unit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("before_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("after_quantity", reconciler.store.types.ExactDecimal(length=80), nullable=True),
        sa.Column("after_unit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("after_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("created_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["usage_lines.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pull_runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_changes_fingerprint"), ["fingerprint"], unique=False)
        batch_op.create_index(batch_op.f("ix_changes_line_id"), ["line_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_changes_run_id"), ["run_id"], unique=False)

    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("severity", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=True),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("product", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("product_name", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("usage_type", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("region", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("service", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("before_quantity", reconciler.store.types.ExactDecimal(length=80), nullable=True),
        sa.Column("before_unit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("before_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("after_quantity", reconciler.store.types.ExactDecimal(length=80), nullable=True),
        sa.Column("after_unit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("after_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("values_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("first_run_id", sa.Integer(), nullable=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("raised_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "acknowledged_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("acknowledged_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=True),
        sa.Column("applied_plan_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["usage_lines.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.create_index("ix_findings_state_source", ["state", "source"], unique=False)

    op.create_table(
        "line_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("quantity", reconciler.store.types.ExactDecimal(length=80), nullable=False),
        sa.Column("raw_quantity", reconciler.store.types.ExactDecimal(length=80), nullable=True),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", reconciler.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["usage_lines.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pull_runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("line_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_line_versions_line_id"), ["line_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_line_versions_run_id"), ["run_id"], unique=False)

    state_meta = sa.table("state_meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    op.bulk_insert(state_meta, [{"key": "serial", "value": "0"}])


def downgrade() -> None:

    with op.batch_alter_table("line_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_line_versions_run_id"))
        batch_op.drop_index(batch_op.f("ix_line_versions_line_id"))

    op.drop_table("line_versions")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index("ix_findings_state_source")

    op.drop_table("findings")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_changes_run_id"))
        batch_op.drop_index(batch_op.f("ix_changes_line_id"))
        batch_op.drop_index(batch_op.f("ix_changes_fingerprint"))

    op.drop_table("changes")
    with op.batch_alter_table("usage_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_lines_source_month")
        batch_op.drop_index(batch_op.f("ix_usage_lines_first_run_id"))

    op.drop_table("usage_lines")
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_invoice_lines_source_month")

    op.drop_table("invoice_lines")
    op.drop_table("state_meta")
    op.drop_table("staging_lines")
    op.drop_table("sources")
    with op.batch_alter_table("pull_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pull_runs_status"))
        batch_op.drop_index("ix_pull_runs_source_started")

    op.drop_table("pull_runs")
    op.drop_table("job_leases")
    op.drop_table("applied_plans")
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_outbox_state_next")

    op.drop_table("alert_outbox")
    op.drop_table("alert_announcements")
