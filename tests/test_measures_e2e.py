"""Measure kinds end to end: the sandbox's split Akamai months through pull, findings and report.

Every Akamai month arrives as two periods (``akamai_split_periods``). The values below are the
sandbox's (seed 1, pulled on 2024-07-10); each expectation is set where summing periods or
regions, or projecting a peak, would raise a finding that the month's real value does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import FindingState, Month, canonical_decimal
from reconciler.providers.http import HttpClient
from reconciler.reconcile.measures import MeasureKind
from reconciler.refresh import refresh_source
from reconciler.reports.data import ReportRequest, gather_report
from reconciler.reports.focus import focus_rows
from reconciler.reports.writer import write_report_set
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.ingest import lines_t
from reconciler.store.items import findings_table
from reconciler.store.measures import stat_types

TODAY = date(2024, 7, 10)
NOW = datetime(2024, 7, 10, 12, tzinfo=UTC)

EXPECTATIONS: list[dict[str, Any]] = [
    # May 130.7 in both halves (summed: 261.4, over), June 186.2 (summed: 372.4).
    {"name": "WAA 95/5", "product": "1-ABC012", "usage_type": "95/5 Mbps", "monthly_max": "150"},
    # Three regions: May 81.7 / 169.7 / 7.5 (summed and doubled: 517.8), none over 170.
    {"name": "AMD 95/5", "product": "1-7KLGH", "usage_type": "95/5 Mbps", "monthly_max": "170"},
    # July to date 1217 on day 10: a run rate would say 3772.7 by month end.
    {"name": "WAA peak", "product": "1-ABC012", "usage_type": "Peak Mbps", "monthly_max": "1500"},
    # Storage June 859.879 GB in both halves (summed: 1719.758).
    {"name": "storage", "product": "NetStorage", "usage_type": "Storage GB", "monthly_max": "900"},
    # A volume still adds periods and regions and is projected: May 23939.75, June 23750.94,
    # July to date 7232.18 (22419.758 projected).
    {"name": "AMD traffic", "product": "1-7KLGH", "usage_type": "Total MB", "monthly_max": "20000"},
    {"name": "typo", "product": "1-7KLGH", "usage_type": "Totl MB", "monthly_max": "1"},
]


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    scenario = named_scenario("default").replace(akamai_split_periods=True)
    async with SandboxServer(scenario, host="127.0.0.1", port=0) as server:
        yield server


def settings_for(sandbox: SandboxServer, tmp_path: Path, **extra: Any) -> Settings:
    edgerc = tmp_path / "sandbox.edgerc"
    edgerc.write_text(sandbox.edgerc_text())
    edgerc.chmod(0o600)
    source = {
        "name": "akamai",
        "provider": "akamai",
        "base_url": sandbox.base_url,
        "edgerc": str(edgerc),
        "contracts": sandbox.contracts,
        "max_retries": 0,
        "lookback_months": 3,
        "data_lag": "0s",  # the sandbox serves a day's usage on that day
    }
    expectations = [{"source": "akamai", **e} for e in EXPECTATIONS]
    return settings_from_mapping({"sources": [source], "expectations": expectations, **extra})


async def pull(engine: AsyncEngine, settings: Settings, today: date) -> None:
    async with HttpClient() as http:
        outcome = await refresh_source(engine, settings, "akamai", http, today=today, environ={})
    assert outcome.ok, outcome.error


async def findings(engine: AsyncEngine) -> list[tuple[str, str, str, str, str, str]]:
    t = findings_table.c
    query = select(t.product_name, t.month, t.kind, t.region, t.after_quantity, t.state)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(t.product_name, t.month, t.kind))).all()
    return [
        (r.product_name, r.month, r.kind, r.region, _text(r.after_quantity), r.state) for r in rows
    ]


def _text(value: Decimal | None) -> str:
    return "" if value is None else canonical_decimal(value)


def _values(points: Any) -> list[str]:
    return [canonical_decimal(p.quantity) for p in points]


async def test_month_values_follow_the_kind(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    await pull(engine, settings, TODAY)
    assert await findings(engine) == [
        ("AMD traffic", "2024-05", "over_expectation", "", "23939.75", "open"),
        ("AMD traffic", "2024-06", "over_expectation", "", "23750.94", "open"),
        ("AMD traffic", "2024-07", "projected_overage", "", "22419.758", "open"),
        ("WAA 95/5", "2024-06", "over_expectation", "GLOBAL", "186.2", "open"),
        ("typo", "2024-05", "no_match", "", "", "open"),
        ("typo", "2024-06", "no_match", "", "", "open"),
        ("typo", "2024-07", "no_match", "", "", "open"),
    ]
    async with engine.connect() as conn:
        message = (
            (
                await conn.execute(
                    select(findings_table.c.message).where(findings_table.c.kind == "no_match")
                )
            )
            .scalars()
            .first()
        )
    assert message is not None and "closest seen: 'Total MB'" in message


async def test_report_series_follow_the_kind(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    await pull(engine, settings, TODAY)
    report = await gather_report(
        engine, settings, ReportRequest.last_months(3, NOW, max_series=100), NOW
    )
    by_label = {(s.product, s.usage_type, s.region): s for s in report.series}
    amd = [by_label[("1-7KLGH", "95/5 Mbps", r)] for r in ("Americas", "EMEA", "Asia Pacific")]
    assert [_values(s.points) for s in amd] == [
        ["81.7", "57.2", "115.9"],
        ["169.7", "13.1", "63.1"],
        ["7.5", "50.9", "55.4"],
    ]
    assert all(s.kind is MeasureKind.PERCENTILE and s.projection is None for s in amd)
    assert all(s.lower_bound(s.points[-1]) and not s.lower_bound(s.points[0]) for s in amd)
    peak = by_label[("1-ABC012", "Peak Mbps", "GLOBAL")]
    assert (peak.points[-1].quantity, peak.projection) == (Decimal(1217), None)
    storage = by_label[("1-5BYUG1", "Storage GB", "")]
    assert _values(storage.points) == ["367.916", "859.879", "474.25"]
    assert storage.projection is None
    traffic = by_label[("1-7KLGH", "Total MB", "")]
    assert _values(traffic.points) == ["23939.75", "23750.94", "7232.18"]
    assert traffic.projection is not None


async def test_a_finding_stays_open_while_its_expectation_matches_nothing(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    await pull(engine, settings, TODAY)
    sandbox.state.add_events(
        [{"kind": "disappear", "provider": "akamai", "day": "2024-07-11",
          "product": "1-ABC012", "usage_type": "95/5 Mbps"}]
    )  # fmt: skip
    sandbox.state.set_today(date(2024, 7, 11))
    await pull(engine, settings, date(2024, 7, 11))
    waa = [f for f in await findings(engine) if f[0] == "WAA 95/5"]
    assert waa == [
        ("WAA 95/5", "2024-05", "no_match", "", "", "open"),
        ("WAA 95/5", "2024-06", "no_match", "", "", "open"),
        ("WAA 95/5", "2024-06", "over_expectation", "GLOBAL", "186.2", FindingState.OPEN),
        ("WAA 95/5", "2024-07", "no_match", "", "", "open"),
    ]


async def test_measures_override_and_stat_types(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    # Count NetStorage's storage as a volume: its month is then the sum of its periods.
    override = {"provider": "akamai", "product": "NetStorage", "usage_type": "Storage GB",
                "kind": "volume"}  # fmt: skip
    settings = settings_for(sandbox, tmp_path, measures=[override])
    await pull(engine, settings, TODAY)
    storage = [f for f in await findings(engine) if f[0] == "storage"]
    assert storage == [
        ("storage", "2024-06", "over_expectation", "GLOBAL", "1719.758", "open"),
        ("storage", "2024-07", "projected_overage", "GLOBAL", "1470.175", "open"),
    ]
    async with engine.connect() as conn:
        seen = {(s.usage_type, s.product): s for s in await stat_types(conn, settings.measures)}
    assert seen[("Storage GB", "1-5BYUG1")].stored_kind == "volume"
    assert seen[("Storage GB", "1-5BYUG1")].classified.reason == (
        "[[measures]] entry 1 of the configuration"
    )
    assert seen[("95/5 Mbps", "1-7KLGH")].stored_kind == "percentile"
    # Without the override the next pull sets the catalog's kind again.
    await pull(engine, settings_for(sandbox, tmp_path), TODAY)
    async with engine.connect() as conn:
        seen = {(s.usage_type, s.product): s for s in await stat_types(conn, ())}
    assert seen[("Storage GB", "1-5BYUG1")].stored_kind == "gauge"


async def test_focus_rows_follow_the_kind(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    await pull(engine, settings_for(sandbox, tmp_path), TODAY)
    rows = await focus_rows(engine, Month(2024, 5), Month(2024, 5))

    def of(product: str, usage_type: str, region: str) -> list[tuple[str, str, str, str]]:
        return [
            (r["ConsumedQuantity"], r["ChargePeriodStart"], r["ChargePeriodEnd"], r["x_Billable"])
            for r in rows
            if (r["SkuId"], r["SkuMeter"], r["RegionId"]) == (product, usage_type, region)
        ]

    # One row for the month's 95/5, over both periods: a tool adding rows gets 130.7.
    assert of("1-ABC012", "95/5 Mbps", "GLOBAL") == [
        ("130.7", "2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z", "false")
    ]
    assert of("1-5BYUG1", "Storage GB", "GLOBAL") == [
        ("367.916", "2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z", "true")
    ]
    # A volume keeps one row per period; they add up to the month.
    assert of("1-7KLGH", "Total MB", "EMEA") == [
        ("5040.345", "2024-05-01T00:00:00Z", "2024-05-16T00:00:00Z", "true"),
        ("5376.368", "2024-05-16T00:00:00Z", "2024-06-01T00:00:00Z", "true"),
    ]
    kinds = {r["SkuMeter"]: r["x_MeasureKind"] for r in rows}
    assert kinds == {
        "95/5 Mbps": "percentile",
        "Peak Mbps": "peak",
        "Storage GB": "gauge",
        "Total MB": "volume",
        "Total Hits": "volume",
    }
    not_billable = [r for r in rows if r["x_Billable"] == "false"]
    assert not_billable and all(
        r["ChargeDescription"].endswith("(not billable)") for r in not_billable
    )


async def test_drift_of_a_not_billable_stat_is_info_unless_named(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    await pull(engine, settings, TODAY)
    # Restate May of Web Application Accelerator: Total MB is billable, Total Hits is not;
    # 95/5 Mbps and Peak Mbps are not either, but the "WAA 95/5" and "WAA peak" name them.
    sandbox.state.add_events(
        [{"kind": "restate", "provider": "akamai", "day": "2024-07-11", "month": "2024-05",
          "product": "1-ABC012", "factor": "1.5"}]
    )  # fmt: skip
    sandbox.state.set_today(date(2024, 7, 11))
    await pull(engine, settings, date(2024, 7, 11))
    t = findings_table.c
    query = select(t.usage_type, t.severity).where(t.kind == "restated", t.month == "2024-05")
    async with engine.connect() as conn:
        severities = {(r.usage_type, r.severity) for r in (await conn.execute(query)).all()}
    assert severities == {
        ("Total MB", "critical"),
        ("Total Hits", "info"),
        ("Peak Mbps", "critical"),
        ("95/5 Mbps", "critical"),
    }


async def test_written_reports_show_kinds_and_lower_bounds(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    reports = {"directory": str(tmp_path / "reports"), "formats": ["md", "html"], "months": 3}
    settings = settings_for(sandbox, tmp_path, reports=reports)
    await pull(engine, settings, TODAY)
    paths = await write_report_set(engine, settings, NOW)
    markdown = next(p for p in paths if p.suffix == ".md").read_text()
    html = next(p for p in paths if p.suffix == ".html").read_text()
    assert "### Adaptive Media Delivery / 95/5 Mbps \\[EMEA\\]" in markdown
    assert "monthly percentile values (largest period; never added)" in markdown
    assert "2024-07 so far: at least 63.1 (can only go up; not projected)" in markdown
    assert "Web Application Accelerator / Peak Mbps" in markdown
    assert "monthly levels (latest period)" in markdown
    assert "2024-07 so far: at least 1,217 Peak Mbps (a peak can only go up" in html


async def test_a_measures_change_reclassifies_months_the_pull_did_not_cover(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    await pull(engine, settings_for(sandbox, tmp_path), TODAY)
    override = {"usage_type": "Storage GB", "kind": "volume"}
    narrow = settings_for(sandbox, tmp_path, measures=[override])
    narrow = narrow.model_copy(
        update={"sources": [narrow.sources[0].model_copy(update={"lookback_months": 1})]}
    )
    await pull(engine, narrow, TODAY)  # covers July only; the rules changed: every month
    c = lines_t.c
    query = select(c.month, c.measure_kind).where(c.usage_type == "Storage GB").distinct()
    async with engine.connect() as conn:
        kinds = sorted(tuple(r) for r in (await conn.execute(query)).all())
    assert kinds == [("2024-05", "volume"), ("2024-06", "volume"), ("2024-07", "volume")]
