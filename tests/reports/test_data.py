"""Gathering a report from a seeded state, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import FindingState, LineStatus, Month, Severity
from reconciler.reports.data import ReportRequest, gather_report
from reconciler.reports.model import ReportData, Series
from reconciler.settings import Settings
from tests.reports.seed import AKAMAI, CURRENT, FASTLY, MONTHS, NOW, Seeded, seed_state


def _series(report: ReportData, usage_type: str) -> Series:
    return next(s for s in report.series if s.usage_type == usage_type)


async def test_month_totals_are_exact_and_count_each_usage_once(
    report: ReportData, seeded: Seeded
) -> None:
    assert report.series_total == len(seeded.totals) == 6
    for series in report.series:
        key = (series.source, series.product, series.usage_type, series.unit)
        assert {p.month: p.quantity for p in series.points} == seeded.totals[key]
        assert {p.month: p.status.value for p in series.points} == seeded.statuses[key]
    bandwidth = _series(report, "North America Bandwidth")
    # Per-service lines (another 100% of the same usage) are not added in.
    assert bandwidth.point(Month(2024, 1)).quantity == Decimal("41000.25")  # type: ignore[union-attr]
    # Akamai: two regions x two periods per month are summed.
    akamai = _series(report, "Total MB")
    assert akamai.point(Month(2024, 2)).lines == 4  # type: ignore[union-attr]
    assert akamai.point(Month(2024, 2)).quantity == Decimal(325)  # type: ignore[union-attr]


async def test_bands_and_projection(report: ReportData) -> None:
    bandwidth = _series(report, "North America Bandwidth")
    assert bandwidth.band is not None
    assert (bandwidth.band.low, bandwidth.band.high) == (Decimal(30000), Decimal(50000))
    assert bandwidth.band.labels == ("NA bandwidth commitment",)
    projection = bandwidth.projection
    assert projection is not None
    assert projection.month == CURRENT
    # At noon on the 15th with the default one-day lag the data covers June 1-14:
    # 30100.75 / 14 * 30 (one pull, no history: the plain run rate, no band).
    assert projection.forecast.covered_through == date(2024, 6, 14)
    assert (projection.covered_days, projection.days) == (14, 30)
    assert projection.projected == Decimal("64501.607")
    assert projection.forecast.reason.value == "history_short"
    assert projection.limit == Decimal(50000) and projection.over
    akamai = _series(report, "Total MB")
    assert akamai.band is not None
    assert (akamai.band.low, akamai.band.high) == (Decimal("297.0"), Decimal("363.0"))
    assert akamai.band.invoices == {Month(2024, 4): Decimal(331)}
    requests = _series(report, "North America Requests")
    assert requests.band is None
    assert requests.unmatched_expectations == ("requests in another unit (in requests)",)
    assert requests.projection is not None and requests.projection.limit is None


async def test_no_projection_for_past_months(
    engine: AsyncEngine, seeded: Seeded, settings: Settings
) -> None:
    later = datetime(2024, 7, 2, tzinfo=UTC)
    request = ReportRequest(Month(2024, 1), Month(2024, 6))
    report = await gather_report(engine, settings, request, later)
    assert report.projections == []


async def test_restated_lines_run_by_run(report: ReportData, seeded: Seeded) -> None:
    assert report.restated_total == 2
    found = {line.line_id: (line.first_finalized, line.current) for line in report.restated}
    assert found == seeded.restated
    fastly = next(line for line in report.restated if line.source == FASTLY)
    assert [v.quantity for v in fastly.versions] == [Decimal(43500), Decimal(44800)]
    assert all(v.status is LineStatus.FINALIZED for v in fastly.versions)
    assert [v.run_id for v in fastly.versions] == seeded.runs[FASTLY][:2]


async def test_run_health(report: ReportData) -> None:
    health = {h.source: h for h in report.health}
    fastly, akamai = health[FASTLY], health[AKAMAI]
    assert fastly.last_status == "succeeded"
    assert fastly.last_success_at == datetime(2024, 6, 15, 6, 0, 42, tzinfo=UTC)
    assert (fastly.failures_since_success, fastly.recent_failures) == (0, 1)
    assert (fastly.recent_runs, fastly.recent_api_calls, fastly.recent_retries) == (2, 14, 1)
    assert fastly.last_duration_s == 42.5
    assert akamai.last_status == "failed"
    assert akamai.last_error == "HTTP 429 after 5 retries"
    assert akamai.last_success_at == datetime(2024, 6, 5, 6, 0, 42, tzinfo=UTC)
    assert akamai.failures_since_success == 2


async def test_findings_by_state_within_the_months(report: ReportData) -> None:
    open_table = report.findings[FindingState.OPEN]
    # f-old (2023-11) is outside the report's months.
    assert sorted(e.item.fingerprint for e in open_table.entries) == [
        "f-decreased",
        "f-image",
        "f-projected",
        "f-restated-akamai",
        "f-restated-fastly",
    ]
    assert [e.item.severity for e in open_table.entries][:2] == [Severity.CRITICAL] * 2
    assert report.open_by_severity == {
        Severity.CRITICAL: 2,
        Severity.WARNING: 2,
        Severity.INFO: 1,
    }
    acknowledged = report.findings[FindingState.ACKNOWLEDGED].entries
    assert [(e.item.fingerprint, e.acknowledged_by) for e in acknowledged] == [
        ("f-over-feb", "alice")
    ]
    resolved = report.findings[FindingState.RESOLVED].entries
    assert [e.item.fingerprint for e in resolved] == ["f-invoice"]
    assert _series(report, "North America Bandwidth").findings == 2
    assert _series(report, "Europe Bandwidth").findings == 0


async def test_changes_since_latest_runs_or_previous_report(
    engine: AsyncEngine, seeded: Seeded, settings: Settings
) -> None:
    latest = await gather_report(engine, settings, ReportRequest.last_months(6, NOW), NOW)
    assert latest.changes.basis == "the latest run of each source"
    assert latest.changes.since == datetime(2024, 6, 15, 6, tzinfo=UTC)
    assert {e.item.fingerprint for e in latest.changes.raised} == {"f-projected", "f-image"}
    assert latest.changes.resolved == 1
    since = datetime(2024, 6, 1, tzinfo=UTC)
    request = ReportRequest.last_months(6, NOW, since=since)
    earlier = await gather_report(engine, settings, request, NOW)
    assert earlier.changes.basis == "the previous report"
    assert {e.item.fingerprint for e in earlier.changes.raised} == {
        "f-projected",
        "f-image",
        "f-restated-fastly",
        "f-restated-akamai",
        "f-over-feb",
        "f-decreased",
    }
    assert earlier.changes.acknowledged == 1


async def test_source_filter(engine: AsyncEngine, seeded: Seeded, settings: Settings) -> None:
    request = ReportRequest.last_months(6, NOW, [AKAMAI])
    report = await gather_report(engine, settings, request, NOW)
    assert {s.source for s in report.series} == {AKAMAI}
    assert [h.source for h in report.health] == [AKAMAI]
    assert {e.item.source for t in report.findings.values() for e in t.entries} == {AKAMAI}
    assert {line.source for line in report.restated} == {AKAMAI}


async def test_single_month(engine: AsyncEngine, seeded: Seeded, settings: Settings) -> None:
    request = ReportRequest(Month(2024, 4), Month(2024, 4))
    report = await gather_report(engine, settings, request, NOW)
    assert report.months == [Month(2024, 4)]
    assert all([p.month for p in s.points] == [Month(2024, 4)] for s in report.series)
    assert report.projections == []
    assert [line.month for line in report.restated] == [Month(2024, 4)]


async def test_charts_are_bounded_in_a_huge_state(engine: AsyncEngine, settings: Settings) -> None:
    await seed_state(engine, extra_series=40)
    request = ReportRequest.last_months(6, NOW, max_series=10)
    report = await gather_report(engine, settings, request, NOW)
    assert report.series_total == 46
    with_findings = [s for s in report.series if s.findings]
    assert len(with_findings) == 4  # always kept, on top of the largest 10
    assert len(report.series) == 14 and report.series_omitted == 32
    assert list(report.series[: len(with_findings)]) == with_findings
    kept_extra = sorted(s.usage_type for s in report.series if s.usage_type.startswith("Extra"))
    # The largest extras (quantity = index + 1) win the remaining places.
    assert kept_extra == [f"Extra {i:03d} Requests" for i in range(32, 40)]


async def test_empty_state(engine: AsyncEngine, settings: Settings) -> None:
    report = await gather_report(engine, settings, ReportRequest.last_months(3, NOW), NOW)
    assert report.series == () and report.restated == ()
    assert [(h.source, h.last_status) for h in report.health] == [(AKAMAI, None), (FASTLY, None)]
    assert report.changes.since is None
    assert report.months == MONTHS[3:]
