"""Applying a pull costs work in proportion to its lines, not to their square (SQLite).

Measured in SQLite virtual-machine steps (a progress handler), not in seconds: a plan that
looks the run's staged rows up once per tracked line doubles its cost twice over when the
lines double; a linear one doubles it once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from reconciler.domain import LineStatus, Month, Provider, UsageLine
from reconciler.providers.base import Coverage
from reconciler.store.db import create_engine, upgrade
from reconciler.store.ingest import apply_staged
from reconciler.store.runs import start_run
from reconciler.store.staging import Stager

NOW = datetime(2024, 7, 2, tzinfo=UTC)
JULY = Month(2024, 7)
STEP = 1000  # VM instructions between two progress callbacks


def lines(count: int, quantity: int) -> list[UsageLine]:
    return [
        UsageLine(
            source="fastly",
            provider=Provider.FASTLY,
            account="x4xCwxxJxGCx123Rx5xTx",
            product="cdn_usage",
            product_name="",
            usage_type="North America Bandwidth",
            region="North America",
            service=f"service-{n:06d}",
            month=JULY,
            period_start=JULY.first_day,
            period_end=JULY.last_day,
            quantity=Decimal(quantity + n),
            raw_quantity=None,
            unit="GB",
            billable=None,
            status=LineStatus.COLLECTING,
        )
        for n in range(count)
    ]


async def steps_to_apply_a_day_of_growth(tmp_path: Path, count: int) -> int:
    """VM steps of the apply transaction of a second pull in which every line grew."""
    url = f"sqlite+aiosqlite:///{tmp_path / f'{count}.db'}"
    engine = create_engine(url, create=True)
    await upgrade(engine)
    coverage = Coverage(months=(JULY,), accounts=None)
    steps = 0

    def count_step() -> int:
        nonlocal steps
        steps += 1
        return 0

    try:
        for day, measured in ((1, False), (2, True)):
            run_id = await start_run(engine, source="fastly", provider="fastly", now=NOW)
            stager = Stager(engine, run_id, "fastly")
            await stager.add(lines(count, quantity=day * 100))
            async with stager.transaction() as conn:
                raw = (await conn.get_raw_connection()).driver_connection
                assert raw is not None
                if measured:
                    await raw.set_progress_handler(count_step, STEP)
                result = await apply_staged(
                    conn, run_id=run_id, source="fastly", coverage=coverage, now=NOW, severities={}
                )
                await raw.set_progress_handler(None, STEP)
            assert result.versions_added == count
    finally:
        await engine.dispose()
    return steps


async def test_applying_twice_the_lines_costs_about_twice_the_work(tmp_path: Path) -> None:
    small = await steps_to_apply_a_day_of_growth(tmp_path, 1500)
    large = await steps_to_apply_a_day_of_growth(tmp_path, 3000)

    assert small > 0
    assert large / small < 2.6  # quadratic: about 4
