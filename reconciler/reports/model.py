"""What a report shows, gathered once and rendered into every format.

Plain frozen values: quantities are Decimal, times aware UTC, months :class:`Month`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from reconciler.domain import FindingState, LineStatus, Month, PlanItem, Severity
from reconciler.reconcile.forecast import Forecast, ForecastReason
from reconciler.reconcile.measures import MeasureKind

if TYPE_CHECKING:
    from reconciler.reports.costs import CostReport


@dataclass(frozen=True, slots=True)
class MonthPoint:
    """One month of a series: the summed quantity and whether every line is finalized."""

    month: Month
    quantity: Decimal
    status: LineStatus
    lines: int


@dataclass(frozen=True, slots=True)
class Band:
    """The expected range of a month total, from the expectations matching a series.

    ``low`` and ``high`` are the tightest bounds of all matching expectations (either may be
    missing); ``invoices`` holds declared per-month quantities.
    """

    low: Decimal | None
    high: Decimal | None
    labels: tuple[str, ...]
    invoices: dict[Month, Decimal] = field(default_factory=dict)

    def contains(self, quantity: Decimal) -> bool:
        if self.low is not None and quantity < self.low:
            return False
        return not (self.high is not None and quantity > self.high)

    def flags(self, point: MonthPoint) -> bool:
        """Whether a month is outside the band: a collecting month only when already above
        the maximum (being below the minimum part way through a month is expected)."""
        if point.status is LineStatus.COLLECTING:
            return self.high is not None and point.quantity > self.high
        return not self.contains(point.quantity)


@dataclass(frozen=True, slots=True)
class Projection:
    """A collecting month's forecast to month end (the one the plan's findings use)."""

    month: Month
    to_date: Decimal
    forecast: Forecast
    limit: Decimal | None

    @property
    def projected(self) -> Decimal:
        return self.forecast.value

    @property
    def days(self) -> int:
        return self.month.days

    @property
    def covered_days(self) -> int:
        return self.forecast.covered_days

    @property
    def too_early(self) -> bool:
        return self.forecast.reason is ForecastReason.TOO_EARLY

    @property
    def over(self) -> bool:
        return not self.too_early and self.limit is not None and self.projected > self.limit


@dataclass(frozen=True, slots=True)
class Series:
    """Month values of one (source, product, usage type, unit) across the report's months.

    Volumes and gauges add up over regions; a percentile or a peak does not, so such a series
    is one region's (``region``). Month values follow the kind (see ``reconcile.measures``).
    """

    source: str
    provider: str
    product: str
    product_name: str
    usage_type: str
    unit: str
    points: tuple[MonthPoint, ...]
    band: Band | None = None
    projection: Projection | None = None
    findings: int = 0
    unmatched_expectations: tuple[str, ...] = ()
    kind: MeasureKind = MeasureKind.VOLUME
    region: str = ""
    money: bool = False  # amounts in the currency named by ``unit``, not quantities
    service: str = ""  # a team's percentile or peak of one service (they never add up)

    @property
    def label(self) -> str:
        label = f"{self.product_name or self.product} / {self.usage_type}"
        label = f"{label} [{self.region}]" if self.region else label
        return f"{label} service {self.service}" if self.service else label

    @property
    def values_name(self) -> str:
        """What a month's value is, by measure kind."""
        return _VALUES_NAMES[self.kind]

    def lower_bound(self, point: MonthPoint) -> bool:
        """A collecting percentile or peak can only go up: its value so far is a minimum."""
        return self.kind.lower_bound_to_date and point.status is LineStatus.COLLECTING

    @property
    def total(self) -> Decimal:
        return sum((p.quantity for p in self.points), Decimal(0))

    def point(self, month: Month) -> MonthPoint | None:
        for point in self.points:
            if point.month == month:
                return point
        return None


@dataclass(frozen=True, slots=True)
class VersionPoint:
    """A line's values as one run recorded them (versions of an absent line are left out)."""

    run_id: int
    recorded_at: datetime
    quantity: Decimal
    unit: str
    status: LineStatus


@dataclass(frozen=True, slots=True)
class RestatedLine:
    """A line whose finalized quantity changed afterwards, with its value run by run."""

    line_id: int
    source: str
    provider: str
    account: str
    product: str
    product_name: str
    usage_type: str
    region: str
    service: str
    service_name: str
    month: Month
    period_start: date
    period_end: date
    versions: tuple[VersionPoint, ...]

    @property
    def label(self) -> str:
        label = f"{self.product_name or self.product} / {self.usage_type}"
        if self.region:
            label += f" [{self.region}]"
        if self.service:
            label += f" service {self.service_name or self.service}"
        return label

    @property
    def first_finalized(self) -> Decimal:
        for version in self.versions:
            if version.status is LineStatus.FINALIZED:
                return version.quantity
        return self.versions[0].quantity

    @property
    def current(self) -> Decimal:
        return self.versions[-1].quantity


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """How one source's pulls have gone: the last run, the last success, recent failures."""

    source: str
    provider: str
    last_status: str | None = None
    last_started_at: datetime | None = None
    last_success_at: datetime | None = None
    last_duration_s: float | None = None
    last_api_calls: int = 0
    last_lines_read: int = 0
    last_error: str | None = None
    failures_since_success: int = 0
    recent_runs: int = 0
    recent_failures: int = 0
    recent_api_calls: int = 0
    recent_retries: int = 0


@dataclass(frozen=True, slots=True)
class FindingEntry:
    """A review item with its lifecycle: when it was raised, acknowledged, resolved."""

    item: PlanItem
    state: FindingState
    raised_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    ack_note: str | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FindingTable:
    """Findings in one state: the rows shown and how many there are in all."""

    state: FindingState
    entries: tuple[FindingEntry, ...]
    total: int

    @property
    def omitted(self) -> int:
        return self.total - len(self.entries)


@dataclass(frozen=True, slots=True)
class Changes:
    """What happened since the previous report (or the latest runs when there is none)."""

    since: datetime | None
    basis: str
    raised: tuple[FindingEntry, ...]
    acknowledged: int
    resolved: int


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything one report shows, independent of the output format."""

    generated_at: datetime
    first_month: Month
    last_month: Month
    sources: tuple[str, ...]
    health: tuple[SourceHealth, ...]
    series: tuple[Series, ...]
    series_total: int
    restated: tuple[RestatedLine, ...]
    restated_total: int
    findings: dict[FindingState, FindingTable]
    open_by_severity: dict[Severity, int]
    changes: Changes
    costs: CostReport | None = None

    @property
    def usage_note(self) -> str:
        """What the usage charts add up: the account's lines, or a team's."""
        team = self.costs.team if self.costs is not None else None
        if team is None:
            return "Account-level totals per product and usage type."
        return (
            f"Team {team}'s lines per product and usage type: the services it owns added up "
            "(a percentile or a peak per service) and the account-level lines it owns."
        )

    @property
    def months(self) -> list[Month]:
        return self.first_month.range_to(self.last_month)

    @property
    def series_omitted(self) -> int:
        return self.series_total - len(self.series)

    @property
    def restated_omitted(self) -> int:
        return self.restated_total - len(self.restated)

    @property
    def projections(self) -> list[Series]:
        """Charted series with a projection; those above their maximum first."""
        projected = [s for s in self.series if s.projection is not None]
        return sorted(projected, key=lambda s: not (s.projection and s.projection.over))


_VALUES_NAMES = {
    MeasureKind.VOLUME: "monthly totals",
    MeasureKind.PERCENTILE: "monthly percentile values (largest period; never added)",
    MeasureKind.PEAK: "monthly peaks (largest period; never added)",
    MeasureKind.GAUGE: "monthly levels (latest period)",
}
