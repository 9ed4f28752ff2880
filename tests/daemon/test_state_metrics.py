"""The state gauges of /metrics read from a real store: expectation gauges only for
expectations that declare a quantity, usage by volume only, bounded labels, the forecast (and
band) the plan uses, and per-service series only when enabled, capped."""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.metrics import DaemonMetrics
from reconciler.settings import settings_from_mapping
from reconciler.store.ingest import lines_t
from reconciler.store.month_history import versions_t
from reconciler.store.runs import runs_t
from tests.store.test_migrations import pull_run

NOW = datetime(2024, 7, 15, 6, tzinfo=UTC)
Row = dict[str, Any]


def _line(line_id: int, usage_type: str, quantity: str, kind: str, service: str = "") -> Row:
    return {
        "id": line_id,
        "key_hash": f"{line_id:032x}",
        "source": "fastly",
        "provider": "fastly",
        "account": "acct",
        "product": "cdn_usage",
        "product_name": "CDN",
        "usage_type": usage_type,
        "region": "Europe",
        "service": service,
        "service_name": "",
        "month": "2024-07",
        "period_start": date(2024, 7, 1),
        "period_end": date(2024, 7, 15),
        "quantity": Decimal(quantity),
        "unit": "GB",
        "status": "collecting",
        "measure_kind": kind,
        "present": True,
        "versions": 1,
        "first_run_id": 1,
        "last_run_id": 1,
    }


# The daily increments of the account-level Europe Bandwidth line, July 1 to 14: one pull a
# day at 06:00 records the total through the day before (data_lag 1 day).
DAILY = [
    Decimal(x) for x in ("7", "8", "6", "9", "7", "8", "7", "6", "8", "9", "7", "8", "6", "4.25")
]
TO_DATE = sum(DAILY, Decimal(0))  # 100.25 GB


def _versions(line_id: int) -> list[Row]:
    rows, total = [], Decimal(0)
    for day, increment in enumerate(DAILY, start=1):
        total += increment
        recorded = datetime(2024, 7, day, 6, tzinfo=UTC) + timedelta(days=1)
        rows.append(
            {
                "line_id": line_id,
                "run_id": day,
                "quantity": total,
                "unit": "GB",
                "status": "collecting",
                "period_end": date(2024, 7, day),
                "present": True,
                "recorded_at": recorded,
            }
        )
    return rows


def _expected_forecast() -> tuple[Decimal, Decimal, Decimal]:
    """The trailing-window forecast worked out by hand: 14 covered days, 17 days left, the
    mean of the last 7 days as the rate; the band t·σ·√(R + R²/n) with σ over all 14 days,
    n = 7 and Student's t for 13 degrees of freedom (the table's 12: 1.782)."""
    left, window = Decimal(17), DAILY[-7:]
    value = TO_DATE + sum(window, Decimal(0)) / len(window) * left
    sigma = statistics.stdev(DAILY)
    half = Decimal("1.782") * sigma * (left + left * left / len(window)).sqrt()
    cent = Decimal("0.001")
    return tuple(  # type: ignore[return-value]
        x.quantize(cent, ROUND_HALF_EVEN) for x in (value, max(value - half, TO_DATE), value + half)
    )


async def _seed(engine: AsyncEngine, lines: list[Row], versions: list[Row]) -> None:
    runs = [
        {**pull_run(day, "fastly", "fastly"), "started_at": NOW, "finished_at": NOW}
        for day in range(1, len(DAILY) + 1)
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(runs_t), runs)
        await conn.execute(insert(lines_t), lines)
        if versions:
            await conn.execute(insert(versions_t), versions)


def _settings(**daemon: Any) -> Any:
    return settings_from_mapping(
        {
            "sources": [{"name": "fastly", "provider": "fastly", "data_lag": "1d"}],
            "expectations": [
                {"name": "commit", "source": "fastly", "monthly_max": "1000", "unit": "GB"},
                {"name": "budget", "source": "fastly", "monthly_budget": "5000 USD"},
            ],
            "forecast": {"method": "trailing", "window_days": 7, "band_z": "1.645"},
            "daemon": daemon,
        }
    )


async def test_state_gauges_from_the_store(engine: AsyncEngine) -> None:
    await _seed(
        engine,
        [
            _line(1, "Europe Bandwidth", str(TO_DATE), "volume"),
            _line(2, "Europe Bandwidth", "50", "volume", service="svc-1"),
            _line(3, "Europe 95/5", "40", "percentile"),
        ],
        _versions(1),
    )
    metrics = DaemonMetrics()
    await metrics.state.refresh(engine, _settings(), NOW.replace(hour=12))
    text = metrics.render()[0].decode()

    assert (
        'reconciler_usage_month_to_date{month_status="collecting",product="cdn_usage",'
        'source="fastly",unit="GB",usage_type="Europe Bandwidth"} 100.25'
    ) in text
    assert 'usage_type="Europe 95/5"} ' not in text.split("reconciler_expectation")[0]
    assert "svc-1" not in text  # per-service series are off by default
    assert "reconciler_service" not in text
    assert 'reconciler_expectation_maximum{expectation="commit",unit="GB"} 1000.0' in text
    value, low, high = _expected_forecast()
    labels = '{expectation="commit",source="fastly",unit="GB",usage_type="Europe Bandwidth"}'
    assert f"reconciler_expectation_forecast{labels} {float(value)}" in text
    assert f"reconciler_expectation_forecast_low{labels} {float(low)}" in text
    assert f"reconciler_expectation_forecast_high{labels} {float(high)}" in text
    assert 'expectation="budget"' not in text  # a money budget is not a quantity
    assert 'reconciler_source_last_success_age_seconds{source="fastly"} 21600.0' in text


async def test_a_short_history_forecasts_the_run_rate_without_a_band(engine: AsyncEngine) -> None:
    await _seed(engine, [_line(1, "Europe Bandwidth", "100.25", "volume")], [])
    metrics = DaemonMetrics()
    await metrics.state.refresh(engine, _settings(), NOW.replace(hour=12))
    text = metrics.render()[0].decode()

    # No recorded versions: the 14 covered days' run rate, 100.25 / 14 × 31, and no band.
    run_rate = (Decimal("100.25") / 14 * 31).quantize(Decimal("0.001"))
    labels = '{expectation="commit",source="fastly",unit="GB",usage_type="Europe Bandwidth"}'
    assert f"reconciler_expectation_forecast{labels} {float(run_rate)}" in text
    assert "reconciler_expectation_forecast_low{" not in text
    assert "reconciler_expectation_forecast_high{" not in text


async def test_per_service_series_are_capped_and_the_rest_added_up(engine: AsyncEngine) -> None:
    # Bandwidth in GB, requests in their own unit: a service's size is its largest share of a
    # usage type (svc-c: 10% of the GB but 80% of the requests), never GB against requests.
    lines = [
        _line(1, "Europe Bandwidth", "300", "volume", service="svc-a"),
        _line(2, "Europe Bandwidth", "60", "volume", service="svc-b"),
        _line(3, "Europe Bandwidth", "40", "volume", service="svc-c"),
        _line(4, "Europe Bandwidth", "0.5", "volume", service="svc-d"),
        {**_line(5, "Requests", "800", "volume", service="svc-c"), "unit": "requests"},
        {**_line(6, "Requests", "200", "volume", service="svc-d"), "unit": "requests"},
        _line(7, "Europe 95/5", "40", "percentile", service="svc-b"),
    ]
    await _seed(engine, lines, [])
    metrics = DaemonMetrics()
    await metrics.state.refresh(engine, _settings(metrics_services=2), NOW)
    text = metrics.render()[0].decode()
    series = sorted(
        line for line in text.splitlines() if line.startswith("reconciler_service_usage")
    )

    def row(service: str, usage_type: str, unit: str, value: str) -> str:
        return (
            f'reconciler_service_usage_month_to_date{{month_status="collecting",'
            f'product="cdn_usage",service="{service}",source="fastly",unit="{unit}",'
            f'usage_type="{usage_type}"}} {value}'
        )

    # svc-c (80% of requests) and svc-a (75% of GB) kept; svc-b and svc-d are "other".
    assert series == sorted(
        [
            row("svc-a", "Europe Bandwidth", "GB", "300.0"),
            row("svc-c", "Europe Bandwidth", "GB", "40.0"),
            row("svc-c", "Requests", "requests", "800.0"),
            row("other", "Europe Bandwidth", "GB", "60.5"),
            row("other", "Requests", "requests", "200.0"),
        ]
    )
    assert 'reconciler_services_in_other{source="fastly"} 2.0' in text
