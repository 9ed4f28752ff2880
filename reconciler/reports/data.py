"""Gather a :class:`ReportData` from the state database.

Month values come from the current quantities of present account-level lines
(``service == ""``: Fastly's per-service lines break the same usage down again and would count
it twice; Akamai lines are all account-level) per (source, product, usage type, unit, month),
in Python, so that SQLite's text quantities stay exact. They follow the measure kind: a volume
sums periods and regions, a percentile or peak is the largest period of one region (one series
per region), a gauge the latest period. Only volumes are projected.

A team's report (``--team``) charts the team's usage as the showback counts it
(:func:`team_rows`): the service lines it owns and the account-level lines it owns that no
service line breaks down, and where Akamai reporting groups break a contract line down, the
part of a volume that is the team's (a group's part for the group's owner, what no group
covers for the contract line's owner). Its volumes add up over its services; a percentile or
a peak is never shared and one series per service (and region).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from fractions import Fraction
from typing import Any

from sqlalchemy import select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.domain import FindingState, LineStatus, Month, PlanItem, Severity
from reconciler.reconcile.forecast import ForecastParams
from reconciler.reconcile.group_shares import (
    as_decimal,
    breakdown_lines,
    group_shares,
    is_group_line,
    usage_key,
)
from reconciler.reconcile.history import ForecastInputs, HistoryKey
from reconciler.reconcile.measures import MeasureKind, PeriodValue, combine, month_value
from reconciler.reconcile.ownership import item_team, owner_of
from reconciler.reports.bands import expectation_band, project
from reconciler.reports.costs import gather_costs
from reconciler.reports.history import lines_table, restated_lines, source_health
from reconciler.reports.model import (
    Changes,
    FindingEntry,
    FindingTable,
    MonthPoint,
    ReportData,
    Series,
    SourceHealth,
)
from reconciler.settings import Settings
from reconciler.store.db import reader
from reconciler.store.items import findings_table, load_items
from reconciler.store.month_history import DEFAULT_DATA_LAG, source_forecast_inputs

# Charts kept for a huge state: the largest series, plus every series with findings.
MAX_SERIES_CHARTS = 24
MAX_FINDING_SERIES_CHARTS = 60
MAX_RESTATED_CHARTS = 12
MAX_TABLE_ROWS = 500
_WHOLE = Fraction(1)

# (source, provider, product, usage type, unit, kind, and region and service: "" when they
# add up)
_SeriesKey = tuple[str, str, str, str, str, MeasureKind, str, str]


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """Which months and sources a report covers, and since when changes count as new."""

    first_month: Month
    last_month: Month
    sources: tuple[str, ...] = ()
    since: datetime | None = None
    team: str | None = None  # a report on one team's lines, findings and share
    max_series: int = MAX_SERIES_CHARTS
    max_restated: int = MAX_RESTATED_CHARTS
    max_rows: int = MAX_TABLE_ROWS

    @classmethod
    def last_months(
        cls, months: int, now: datetime, sources: Iterable[str] = (), **kwargs: Any
    ) -> ReportRequest:
        last = Month.of(now.date())
        return cls(last - (months - 1), last, tuple(sources), **kwargs)


@dataclass(slots=True)
class _Accumulator:
    product_name: str = ""
    regions: set[str] = field(default_factory=set)
    keys: list[HistoryKey] = field(default_factory=list)  # lines of the month of ``now``
    parts: dict[HistoryKey, Fraction] = field(default_factory=dict)  # a team's part of a key
    months: dict[Month, _MonthLines] = field(default_factory=dict)


@dataclass
class _MonthLines:
    """The periods of each line (account, region, service) of one series' month."""

    periods: dict[tuple[str, str, str], list[PeriodValue]] = field(
        default_factory=lambda: defaultdict(list)
    )
    finalized: bool = True
    lines: int = 0

    def value(self, kind: MeasureKind) -> Decimal:
        values = [month_value(kind, periods) for periods in self.periods.values()]
        return values[0] if len(values) == 1 else combine(kind, values)


async def gather_report(
    engine: AsyncEngine, settings: Settings, request: ReportRequest, now: datetime
) -> ReportData:
    """Read everything one report shows in one transaction (a consistent snapshot)."""
    async with reader(engine).connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        return await _gather(conn, settings, request, now)


async def _gather(
    conn: AsyncConnection, settings: Settings, request: ReportRequest, now: datetime
) -> ReportData:
    sources = request.sources
    configured = [(s.name, s.provider) for s in settings.sources]
    health = await source_health(conn, configured, sources, now)
    tables = await _finding_tables(conn, request)
    if request.team is not None:
        tables = _team_tables(settings, request.team, tables)
    series = await _series(conn, settings, request, now, tables)
    charted = select_series(series, request.max_series)
    restated = await restated_lines(conn, request.first_month, request.last_month, sources)
    open_entries = tables[FindingState.OPEN]
    by_severity = dict.fromkeys(Severity, 0)
    for entry in open_entries:
        by_severity[entry.item.severity] += 1
    costs = await gather_costs(
        conn, settings, request.first_month, request.last_month, sources, now, request.team
    )
    if costs.showback is not None:
        counts = Counter(item_team(settings, e.item) for e in open_entries)
        costs = replace(costs, showback=replace(costs.showback, open_findings=dict(counts)))
    return ReportData(
        generated_at=now,
        first_month=request.first_month,
        last_month=request.last_month,
        sources=tuple(h.source for h in health),
        health=tuple(health),
        series=tuple(charted),
        series_total=len(series),
        restated=tuple(restated[: request.max_restated]),
        restated_total=len(restated),
        findings={
            state: FindingTable(state, tuple(entries[: request.max_rows]), len(entries))
            for state, entries in tables.items()
        },
        open_by_severity=by_severity,
        changes=_changes(tables, request, health, request.max_rows),
        costs=costs,
    )


def _team_tables(
    settings: Settings, team: str, tables: dict[FindingState, list[FindingEntry]]
) -> dict[FindingState, list[FindingEntry]]:
    """Only the items that concern ``team`` (see :func:`reports.showback.item_team`)."""
    return {
        state: [e for e in entries if item_team(settings, e.item) == team]
        for state, entries in tables.items()
    }


async def _finding_tables(
    conn: AsyncConnection, request: ReportRequest
) -> dict[FindingState, list[FindingEntry]]:
    f = findings_table.c
    meta_query = select(
        f.fingerprint,
        f.state,
        f.raised_at,
        f.updated_at,
        f.acknowledged_at,
        f.acknowledged_by,
        f.ack_note,
        f.resolved_at,
    ).where(
        f.month >= str(request.first_month),
        f.month <= str(request.last_month),
        f.source.in_(list(request.sources)) if request.sources else true(),
    )
    meta = {row.fingerprint: row for row in (await conn.execute(meta_query)).all()}
    tables: dict[FindingState, list[FindingEntry]] = {}
    for state in FindingState:
        items = await load_items(conn, [state], list(request.sources) or None)
        tables[state] = [
            _entry(item, state, meta[item.fingerprint])
            for item in items
            if item.fingerprint in meta
        ]
    return tables


def _entry(item: PlanItem, state: FindingState, row: Any) -> FindingEntry:
    return FindingEntry(
        item=item,
        state=state,
        raised_at=row.raised_at,
        updated_at=row.updated_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        ack_note=row.ack_note,
        resolved_at=row.resolved_at,
    )


def _changes(
    tables: dict[FindingState, list[FindingEntry]],
    request: ReportRequest,
    health: Sequence[SourceHealth],
    max_rows: int,
) -> Changes:
    since = request.since
    basis = "the previous report"
    if since is None:
        latest = [h.last_started_at for h in health if h.last_started_at is not None]
        if not latest:
            return Changes(since=None, basis="no runs yet", raised=(), acknowledged=0, resolved=0)
        since = min(latest)
        basis = "the latest run of each source"
    entries = [entry for state_entries in tables.values() for entry in state_entries]
    raised = sorted(
        (e for e in entries if e.raised_at >= since),
        key=lambda e: (-e.item.severity.rank, e.item.source, str(e.item.month), e.item.kind),
    )
    return Changes(
        since=since,
        basis=basis,
        raised=tuple(raised[:max_rows]),
        acknowledged=sum(
            1 for e in entries if e.acknowledged_at is not None and e.acknowledged_at >= since
        ),
        resolved=sum(1 for e in entries if e.resolved_at is not None and e.resolved_at >= since),
    )


async def _series(
    conn: AsyncConnection,
    settings: Settings,
    request: ReportRequest,
    now: datetime,
    tables: dict[FindingState, list[FindingEntry]],
) -> list[Series]:
    c = lines_table.c
    query = select(
        c.source,
        c.provider,
        c.product,
        c.product_name,
        c.usage_type,
        c.unit,
        c.region,
        c.month,
        c.status,
        c.quantity,
        c.account,
        c.period_start,
        c.measure_kind,
        c.service,
        c.service_name,
    ).where(
        c.present == true(),
        c.service == "" if request.team is None else true(),
        c.month >= str(request.first_month),
        c.month <= str(request.last_month),
        c.source.in_(list(request.sources)) if request.sources else true(),
    )
    current_month = Month.of(now.date())
    rows = (await conn.execute(query)).all()
    if request.team is None:
        groups = _accumulate(((row, _WHOLE) for row in rows), current_month)
    else:
        groups = _accumulate(team_rows(settings, request.team, rows), current_month)

    concerns = _FindingIndex(
        e.item for e in tables[FindingState.OPEN] + tables[FindingState.ACKNOWLEDGED]
    )
    inputs = await _forecast_inputs(
        conn, settings, {key[0] for key in groups}, now, services=request.team is not None
    )
    # A team's expectations are drawn on its report's charts only; the account's on the rest.
    drawn = [e for e in settings.expectations if e.team == request.team]
    result: list[Series] = []
    for key, group in groups.items():
        source, provider, product, usage_type, unit, kind, region, service = key
        points = tuple(
            MonthPoint(
                month=month,
                quantity=lines.value(kind),
                status=LineStatus.FINALIZED if lines.finalized else LineStatus.COLLECTING,
                lines=lines.lines,
            )
            for month, lines in sorted(group.months.items())
        )
        band, other_unit = expectation_band(
            drawn,
            source=source,
            product=product,
            product_name=group.product_name,
            usage_type=usage_type,
            unit=unit,
            regions=group.regions,
        )
        series = Series(
            source=source,
            provider=provider,
            product=product,
            product_name=group.product_name,
            usage_type=usage_type,
            unit=unit,
            points=points,
            band=band,
            unmatched_expectations=other_unit,
            kind=kind,
            region=region,
            service=service,
        )
        current = series.point(current_month)
        projection = None
        # Only a volume has a run rate; a percentile, a peak or a level is never projected.
        if current is not None and kind.projected:
            limit = band.high if band is not None else None
            forecast = inputs[source].forecast(
                current.month, current.quantity, group.keys, group.parts
            )
            projection = project(current.month, current.quantity, current.status, forecast, limit)
        result.append(replace(series, projection=projection, findings=concerns.count(series)))
    return result


def _accumulate(
    rows: Iterable[tuple[Any, Fraction]], current_month: Month
) -> dict[_SeriesKey, _Accumulator]:
    """The rows' periods per series and month; a row counts ``part`` of its quantity."""
    groups: dict[_SeriesKey, _Accumulator] = defaultdict(_Accumulator)
    for row, part in rows:
        kind = MeasureKind(row.measure_kind)
        # A percentile or a peak of several regions (or services) is no total: one series
        # per region (and service).
        named = row.service_name or row.service
        region, service = ("", "") if kind.adds_up else (row.region, named)
        key = (
            row.source, row.provider, row.product, row.usage_type, row.unit, kind, region, service
        )  # fmt: skip
        group = groups[key]
        group.product_name = group.product_name or row.product_name
        group.regions.add(row.region)
        if row.month == str(current_month):
            history = HistoryKey(
                row.source,
                row.account,
                row.product,
                row.usage_type,
                row.region,
                row.service,
                current_month,
                row.unit,
            )
            group.keys.append(history)
            if part != 1:
                group.parts[history] = part
        month = group.months.setdefault(Month.parse(row.month), _MonthLines())
        quantity = row.quantity if part == 1 else as_decimal(Fraction(row.quantity) * part)
        month.periods[(row.account, row.region, row.service)].append(
            PeriodValue(row.period_start, quantity)
        )
        month.finalized = month.finalized and row.status == LineStatus.FINALIZED.value
        month.lines += 1
    return groups


@dataclass(frozen=True, slots=True)
class _UsageRow:
    """A usage row as the showback's rules read it (:mod:`reconcile.group_shares`)."""

    row: Any
    source: str
    account: str
    product: str
    product_name: str
    usage_type: str
    region: str
    service: str
    service_name: str
    month: Month
    unit: str
    quantity: Decimal
    kind: MeasureKind

    @property
    def additive(self) -> bool:
        return self.kind is MeasureKind.VOLUME

    @classmethod
    def of(cls, row: Any) -> _UsageRow:
        return cls(
            row,
            row.source,
            row.account,
            row.product,
            row.product_name,
            row.usage_type,
            row.region,
            row.service,
            row.service_name,
            Month.parse(row.month),
            row.unit,
            row.quantity,
            MeasureKind(row.measure_kind),
        )


def team_rows(settings: Settings, team: str, rows: Iterable[Any]) -> list[tuple[Any, Fraction]]:
    """The rows a team's report charts, each with the part of its quantity that is the team's,
    as the showback counts a team's usage (:func:`reports.showback.team_usage`).

    Per source and month, the lines that break an account-level line down decide
    (:func:`breakdown_lines`): where service lines (Fastly services, Akamai CP codes) break
    it down, the team's service lines, not the account-level line; where reporting groups
    do, a volume is shared (:meth:`GroupShares.counted`): the contract line's owner charts
    what no group covers, a group's owner the group's part. A stat that is no volume is
    never shared: each line is charted whole for its owner (a percentile or a peak as a
    series of its own), but a group's gauge, which a team's series would add to the
    contract's level that holds it already, not for a team that owns the contract's."""
    lines = breakdown_lines(_UsageRow.of(row) for row in rows)
    shares = group_shares(lines, settings.teams)
    owners = [owner_of(settings.teams, line) for line in lines]
    per_service = {_usage(x) for x in lines if x.service and not is_group_line(x)}
    levels = {
        usage_key(x)
        for x, owner in zip(lines, owners, strict=True)
        if owner == team and not x.service and _unshared_total(x)
    }
    charted: list[tuple[Any, Fraction]] = []
    for line, owner in zip(lines, owners, strict=True):
        if owner != team or (not line.service and _usage(line) in per_service):
            continue
        if is_group_line(line) and _unshared_total(line) and usage_key(line) in levels:
            continue
        part = shares.counted(line, owner)
        if part:
            charted.append((line.row, part))
    return charted


def _unshared_total(line: _UsageRow) -> bool:
    """A stat a team's series adds up that reporting groups do not share (a gauge)."""
    return line.kind.adds_up and not line.additive


def _usage(line: _UsageRow) -> tuple[object, ...]:
    return (line.source, line.month, line.product, line.usage_type, line.region, line.unit)


async def _forecast_inputs(
    conn: AsyncConnection,
    settings: Settings,
    sources: Iterable[str],
    now: datetime,
    *,
    services: bool = False,
) -> dict[str, ForecastInputs]:
    """Each source's forecast inputs for the month of ``now``, as the plan's findings use."""
    configured = {s.name for s in settings.sources}
    inputs: dict[str, ForecastInputs] = {}
    for source in sorted(sources):
        if source in configured:
            inputs[source] = await source_forecast_inputs(
                conn, settings, source, now, services=services
            )
        else:  # a source no longer configured: its default lag
            inputs[source] = ForecastInputs(now, DEFAULT_DATA_LAG, ForecastParams())
    return inputs


def _glob(value: str, pattern: str) -> bool:
    return not pattern or fnmatchcase(value, pattern)


_GLOB_CHARS = frozenset("*?[")


class _FindingIndex:
    """Counts the review items about a series. Drift items name their line exactly and are
    looked up; expectation findings may hold globs or blanks and are matched one by one."""

    def __init__(self, items: Iterable[PlanItem]) -> None:
        self.exact: dict[tuple[str, str, str], int] = defaultdict(int)
        self.patterns: dict[str, list[PlanItem]] = defaultdict(list)
        for item in items:
            fields = item.product + item.usage_type
            if item.product and item.usage_type and not _GLOB_CHARS & set(fields):
                self.exact[(item.source, item.product, item.usage_type)] += 1
            else:
                self.patterns[item.source].append(item)

    def count(self, series: Series) -> int:
        found = self.exact.get((series.source, series.product, series.usage_type), 0)
        if series.product_name:
            # Exact items may name the product by its display name.
            key = (series.source, series.product_name, series.usage_type)
            if series.product_name != series.product:
                found += self.exact.get(key, 0)
        return found + sum(1 for i in self.patterns[series.source] if _concerns(i, series))


def _concerns(item: PlanItem, series: Series) -> bool:
    """Whether a review item is about (part of) a series; items may hold globs or blanks."""
    product = _glob(series.product, item.product) or (
        bool(series.product_name) and _glob(series.product_name, item.product)
    )
    return product and _glob(series.usage_type, item.usage_type)


def select_series(series: Sequence[Series], limit: int) -> list[Series]:
    """At most ``limit`` series by total quantity, plus those with findings; in review order.

    Series with findings come first (most findings first), then by source and label.
    """
    with_findings = sorted(
        (s for s in series if s.findings), key=lambda s: (-s.findings, -s.total, s.label)
    )[:MAX_FINDING_SERIES_CHARTS]
    others = sorted((s for s in series if not s.findings), key=lambda s: (-s.total, s.label))
    chosen = with_findings + others[:limit]
    return sorted(chosen, key=lambda s: (s.findings == 0, s.source, s.label.lower(), s.unit))
