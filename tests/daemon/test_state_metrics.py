"""The state gauges of /metrics read from a real store: expectation gauges only for
expectations that declare a quantity, usage by volume only, bounded labels."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.metrics import DaemonMetrics
from reconciler.settings import settings_from_mapping
from reconciler.store.ingest import lines_t
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


async def test_state_gauges_from_the_store(engine: AsyncEngine) -> None:
    settings = settings_from_mapping(
        {
            "sources": [{"name": "fastly", "provider": "fastly"}],
            "expectations": [
                {"name": "commit", "source": "fastly", "monthly_max": "1000", "unit": "GB"},
                {"name": "budget", "source": "fastly", "monthly_budget": "5000 USD"},
            ],
        }
    )
    run = {**pull_run(1, "fastly", "fastly"), "started_at": NOW, "finished_at": NOW}
    async with engine.begin() as conn:
        await conn.execute(insert(runs_t), [run])
        await conn.execute(
            insert(lines_t),
            [
                _line(1, "Europe Bandwidth", "100.25", "volume"),
                _line(2, "Europe Bandwidth", "50", "volume", service="svc-1"),
                _line(3, "Europe 95/5", "40", "percentile"),
            ],
        )
    metrics = DaemonMetrics()
    await metrics.state.refresh(engine, settings, NOW.replace(hour=12))
    text = metrics.render()[0].decode()

    assert (
        'reconciler_usage_month_to_date{month_status="collecting",product="cdn_usage",'
        'source="fastly",unit="GB",usage_type="Europe Bandwidth"} 100.25'
    ) in text
    assert 'usage_type="Europe 95/5"} ' not in text.split("reconciler_expectation")[0]
    assert "svc-1" not in text  # per-service lines are not read
    assert 'reconciler_expectation_maximum{expectation="commit",unit="GB"} 1000.0' in text
    # July 15 of 31 days: 100.25 GB so far runs to 207.183 GB at month end.
    assert (
        'reconciler_expectation_forecast{expectation="commit",source="fastly",unit="GB",'
        'usage_type="Europe Bandwidth"} 207.183'
    ) in text
    assert 'expectation="budget"' not in text  # a money budget is not a quantity
    assert 'reconciler_source_last_success_age_seconds{source="fastly"} 21600.0' in text
