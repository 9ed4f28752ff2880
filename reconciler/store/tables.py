"""The state schema as SQLModel tables.

Lines keep their current values on ``usage_lines`` (what the set-based diff compares a new
snapshot against) and their history in ``line_versions``; a version row is written only when
quantity, unit, status or presence changes, so the database grows with changes, not runs.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from reconciler.providers.rows import TEXT_LIMITS
from reconciler.store.types import ExactDecimal, UTCDateTime


def _exact(nullable: bool = False) -> Column[Decimal]:
    return Column(ExactDecimal(), nullable=nullable)


def _utc(nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable, index=index)


class SourceRow(SQLModel, table=True):
    __tablename__ = "sources"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    provider: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=_utc())


class PullRun(SQLModel, table=True):
    """One refresh of one source: what it covered, how it went, what it changed."""

    __tablename__ = "pull_runs"
    __table_args__ = (Index("ix_pull_runs_source_started", "source", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    provider: str = Field(max_length=16)
    status: str = Field(max_length=16, index=True)  # running | succeeded | failed
    started_at: datetime = Field(sa_column=_utc())
    # Written by the live process while it pulls: an old heartbeat means the process died.
    heartbeat_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    duration_s: float | None = None
    lines_read: int = 0
    pages: int = 0
    api_calls: int = 0
    retries: int = 0
    versions_added: int = 0
    changes_count: int = 0
    findings_count: int = 0
    coverage: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    complete: bool = False
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    instance: str | None = Field(default=None, max_length=128)
    slot: str | None = Field(default=None, max_length=200)
    # A succeeded run's digest of its staged snapshot and the comparison's inputs: a later
    # run with the same digest and nothing written since may skip the comparison.
    snapshot_digest: str | None = Field(default=None, max_length=64)
    # Its staged pages' digests, in stream order (PAGE_DIGEST_CHARS hex characters each): a
    # re-pull of the source whose pages match them so far stages them unread (see
    # reconciler.store.staging).
    page_digests: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class LineFields(SQLModel):
    """What a usage line is, wherever it is kept (staged or tracked): its identity and
    values, each text within :data:`~reconciler.providers.rows.TEXT_LIMITS`."""

    source: str = Field(max_length=TEXT_LIMITS["source"])
    provider: str = Field(max_length=TEXT_LIMITS["provider"])
    account: str = Field(max_length=TEXT_LIMITS["account"])
    product: str = Field(max_length=TEXT_LIMITS["product"])
    product_name: str = Field(max_length=TEXT_LIMITS["product_name"])
    usage_type: str = Field(max_length=TEXT_LIMITS["usage_type"])
    region: str = Field(max_length=TEXT_LIMITS["region"])
    service: str = Field(max_length=TEXT_LIMITS["service"])
    service_name: str = Field(default="", max_length=TEXT_LIMITS["service_name"])
    month: str = Field(max_length=TEXT_LIMITS["month"])
    period_start: date
    period_end: date
    unit: str = Field(max_length=TEXT_LIMITS["unit"])
    status: str = Field(max_length=TEXT_LIMITS["status"])
    billable: bool | None = None


class UsageLineRow(LineFields, table=True):
    """A tracked usage line and its current values."""

    __tablename__ = "usage_lines"
    # Also ix_usage_lines_account_level, on (source, month) where ``service = ''``: a source's
    # account-level lines of a month without its service lines, which may be a million (read
    # by every pull's expectations). It lives in its migration (0010) alone: declared here,
    # its PostgreSQL condition would load that dialect into every SQLite process.
    __table_args__ = (Index("ix_usage_lines_source_month", "source", "month"),)

    id: int | None = Field(default=None, primary_key=True)
    key_hash: str = Field(max_length=TEXT_LIMITS["key_hash"], unique=True)
    # Columns made per table (a Column belongs to one table): the exact quantities and the
    # provider's update time.
    quantity: Decimal = Field(sa_column=_exact())
    raw_quantity: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    provider_updated_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    present: bool = True
    versions: int = 1
    # volume | percentile | peak | gauge (reconciler.reconcile.measures), set by each pull
    measure_kind: str = Field(
        default="volume", max_length=16, sa_column_kwargs={"server_default": "volume"}
    )
    first_run_id: int = Field(foreign_key="pull_runs.id", index=True)
    last_run_id: int = Field(foreign_key="pull_runs.id")


class LineVersion(SQLModel, table=True):
    """A line's values as of one run, written only when they changed."""

    __tablename__ = "line_versions"

    id: int | None = Field(default=None, primary_key=True)
    line_id: int = Field(foreign_key="usage_lines.id", index=True)
    run_id: int = Field(foreign_key="pull_runs.id", index=True)
    quantity: Decimal = Field(sa_column=_exact())
    raw_quantity: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    unit: str = Field(max_length=64)
    status: str = Field(max_length=16)
    billable: bool | None = None
    period_end: date
    present: bool = True
    recorded_at: datetime = Field(sa_column=_utc())


class StagingLine(LineFields, table=True):
    """Lines of a pull in progress; compared with ``usage_lines`` in one transaction.

    Append-only: no index on the line key (a random key would make every insert land at a
    random place in a B-tree); duplicates are found set-based before the comparison.
    """

    __tablename__ = "staging_lines"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True)
    key_hash: str = Field(max_length=TEXT_LIMITS["key_hash"])
    # Columns made per table (a Column belongs to one table): the exact quantities and the
    # provider's update time.
    quantity: Decimal = Field(sa_column=_exact())
    raw_quantity: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    provider_updated_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class InvoiceLineRow(SQLModel, table=True):
    """A line item of a provider's own invoice (Fastly), as of the latest complete pull.

    Every item is kept, as the provider wrote it: several items for one usage type (price
    tiers, credits), and items that are not usage (fees, taxes: no product or usage type,
    perhaps no units). ``billing_start``..``billing_end`` is the invoice's billing period.
    """

    __tablename__ = "invoice_lines"
    __table_args__ = (Index("ix_invoice_lines_source_month", "source", "month"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    account: str = Field(max_length=128)
    month: str = Field(max_length=7)
    usage_type: str = Field(max_length=256)
    product_name: str = Field(max_length=512)
    region: str = Field(max_length=128)
    units: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    amount: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    currency: str | None = Field(default=None, max_length=8)
    run_id: int = Field(foreign_key="pull_runs.id")
    invoice_id: str = Field(default="", max_length=64)
    position: int = 0
    description: str = Field(default="", max_length=1024)
    unit: str | None = Field(default=None, max_length=64)
    billing_start: date | None = None
    billing_end: date | None = None


class ChangeRow(SQLModel, table=True):
    """One drift event recorded by a run."""

    __tablename__ = "changes"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="pull_runs.id", index=True)
    line_id: int = Field(foreign_key="usage_lines.id", index=True)
    kind: str = Field(max_length=32)
    severity: str = Field(max_length=16)
    fingerprint: str = Field(max_length=64, index=True)
    before_quantity: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    before_unit: str | None = Field(default=None, max_length=64)
    before_status: str | None = Field(default=None, max_length=16)
    after_quantity: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    after_unit: str | None = Field(default=None, max_length=64)
    after_status: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(sa_column=_utc())


class FindingRow(SQLModel, table=True):
    """Something to review (a drift change or an expectation result) and its state."""

    __tablename__ = "findings"
    __table_args__ = (Index("ix_findings_state_source", "state", "source"),)

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=64, unique=True)
    category: str = Field(max_length=16)  # drift | finding
    kind: str = Field(max_length=32)
    severity: str = Field(max_length=16)
    source: str = Field(max_length=64)
    provider: str = Field(max_length=16)
    line_id: int | None = Field(default=None, foreign_key="usage_lines.id")
    account: str = Field(default="", max_length=128)
    product: str = Field(default="", max_length=256)
    product_name: str = Field(default="", max_length=512)
    usage_type: str = Field(default="", max_length=256)
    region: str = Field(default="", max_length=128)
    service: str = Field(default="", max_length=128)
    month: str = Field(max_length=7)
    before_quantity: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    before_unit: str | None = Field(default=None, max_length=64)
    before_status: str | None = Field(default=None, max_length=16)
    after_quantity: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    after_unit: str | None = Field(default=None, max_length=64)
    after_status: str | None = Field(default=None, max_length=16)
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    state: str = Field(max_length=16)  # open | acknowledged | resolved
    values_hash: str = Field(max_length=64)
    first_run_id: int | None = None
    last_run_id: int | None = None
    raised_at: datetime = Field(sa_column=_utc())
    updated_at: datetime = Field(sa_column=_utc())
    acknowledged_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    acknowledged_by: str | None = Field(default=None, max_length=128)
    ack_note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    applied_plan_id: int | None = None
    resolved_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    # A projected overage's forecast as JSON, and the one its acknowledgement accepted.
    forecast: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    acknowledged_forecast: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The observed total and status the acknowledgement accepted: a month that finalizes
    # beyond the expectation's tolerance from it is raised again.
    acknowledged_quantity: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    acknowledged_status: str | None = Field(default=None, max_length=16)
    impact_amount: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    impact_currency: str | None = Field(default=None, max_length=3)


class ExpectedCostRow(SQLModel, table=True):
    """The expected cost of a source's month in one currency, as last priced by a run.

    Kept so that a rate card changed after a month was finalized re-prices it as a recorded
    event (a ``repriced`` finding), never silently. ``usage_digest`` tells a re-pricing (same
    usage, another amount) from a restatement (other usage: a drift item of its own).
    """

    __tablename__ = "expected_costs"
    __table_args__ = (UniqueConstraint("source", "month", "currency"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    month: str = Field(max_length=7)
    currency: str = Field(max_length=3)
    amount: Decimal = Field(sa_column=_exact())
    usage_digest: str = Field(max_length=64)
    finalized: bool
    run_id: int = Field(foreign_key="pull_runs.id")
    updated_at: datetime = Field(sa_column=_utc())


class AlertOutboxRow(SQLModel, table=True):
    """A rendered Slack message waiting to be delivered (or delivered, or refused)."""

    __tablename__ = "alert_outbox"
    __table_args__ = (Index("ix_alert_outbox_state_next", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    run_id: int | None = None
    kind: str = Field(max_length=16)  # run | resolved | test
    route: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(max_length=16)  # pending | sent | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=_utc())
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=_utc())
    sent_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    # The review items the message announces (JSON list of fingerprints): a message whose
    # items were all acknowledged before it was delivered is withdrawn.
    fingerprints: str = Field(
        default="[]",
        sa_column=Column(Text, nullable=False, server_default="[]"),
    )


class AlertDestinationBlock(SQLModel, table=True):
    """A destination that refused every message (revoked webhook, channel gone, forbidden).

    ``key`` identifies the destination's URL without holding it (a hash), so the block ends
    by itself when the URL changes; its messages stay pending meanwhile.
    """

    __tablename__ = "alert_destination_blocks"

    key: str = Field(max_length=64, primary_key=True)
    destination: str = Field(max_length=128)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    blocked_at: datetime = Field(sa_column=_utc())


class AlertAnnouncement(SQLModel, table=True):
    """What was last announced for a fingerprint, so the same values are not sent twice."""

    __tablename__ = "alert_announcements"

    fingerprint: str = Field(max_length=64, primary_key=True)
    values_hash: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    announced_at: datetime = Field(sa_column=_utc())
    outbox_id: int | None = None


class AppliedPlan(SQLModel, table=True):
    """A reviewed plan that was applied: who acknowledged what, and when."""

    __tablename__ = "applied_plans"

    id: int | None = Field(default=None, primary_key=True)
    serial: int
    applied_at: datetime = Field(sa_column=_utc())
    applied_by: str = Field(max_length=128)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    items: int = 0
    fingerprints: str = Field(default="[]", sa_column=Column(Text, nullable=False))


class JobLease(SQLModel, table=True):
    """A scheduled slot claimed by one daemon instance (exactly-once across instances)."""

    __tablename__ = "job_leases"
    __table_args__ = (UniqueConstraint("slot", name="uq_job_leases_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    slot: str = Field(max_length=200)
    holder: str = Field(max_length=128)
    acquired_at: datetime = Field(sa_column=_utc())
    expires_at: datetime = Field(sa_column=_utc())
    completed_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    outcome: str | None = Field(default=None, max_length=16)


class StateMeta(SQLModel, table=True):
    """Small key/value facts about the state, e.g. its ``serial``."""

    __tablename__ = "state_meta"

    key: str = Field(max_length=64, primary_key=True)
    value: str = Field(sa_column=Column(Text, nullable=False))
