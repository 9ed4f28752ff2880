"""What measure kinds cost a pull: the per-pull kind update and the expectations' month values.

Builds a SQLite state of ``--lines`` Akamai-like usage lines (20 products x 4 stat types x 3
regions, split periods, over as many months as it takes), then times:

1. ``apply_measure_kinds`` the first time (every percentile, peak and gauge line of the state
   updated from the catalog), then as every pull does (the three months it covered), then
   after a ``[[measures]]`` change (every line of the source again);
2. ``stat_types`` (what ``config check`` lists);
3. ``evaluate`` of four expectations over one month's lines (the pure month values by kind).

    .venv/bin/python benchmarks/measures.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from reconciler.domain import LineStatus, Month
from reconciler.reconcile.expectations import MonthLine, evaluate
from reconciler.reconcile.measures import MeasureKind, classify
from reconciler.settings import ExpectationSettings, MeasureSettings
from reconciler.store.db import create_engine, upgrade
from reconciler.store.measures import apply_measure_kinds, stat_types

STATS = (("Total MB", "GB"), ("95/5 Mbps", "95/5 Mbps"), ("Peak Mbps", "Peak Mbps"),
         ("Storage GB", "GB"))  # fmt: skip
REGIONS = ("Americas", "EMEA", "Asia Pacific")
PRODUCTS = tuple(f"1-P{index:04d}" for index in range(20))


def fill(path: Path, lines: int) -> tuple[int, list[Month]]:
    """Insert ``lines`` rows (all 'volume', as a first-release database would have them)."""
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO pull_runs (id, source, provider, status, started_at, lines_read, pages, "
        "api_calls, retries, versions_added, changes_count, findings_count, coverage, complete) "
        "VALUES (1, 'akamai', 'akamai', 'succeeded', '2024-07-10 00:00:00.000000', 0, 0, 0, 0, "
        "0, 0, 0, '{}', 1)"
    )
    per_month = len(PRODUCTS) * len(STATS) * len(REGIONS) * 2
    months = -(-lines // per_month)
    rows: list[tuple[object, ...]] = []
    for m in range(months):
        month = Month(2020, 1) + m
        for product in PRODUCTS:
            for stat, unit in STATS:
                for region in REGIONS:
                    for half, start in enumerate((1, 16)):
                        rows.append((
                            f"{len(rows):032x}", "akamai", "akamai", "K-1", product, product,
                            stat, region, "", "", str(month),
                            date(month.year, month.month, start).isoformat(),
                            date(month.year, month.month, 15 + half * 13).isoformat(),
                            str(100 + half), None, unit, "finalized", 0, None, 1, 1, 1, 1,
                        ))  # fmt: skip
    rows = rows[:lines]
    db.executemany(
        "INSERT INTO usage_lines (key_hash, source, provider, account, product, product_name, "
        "usage_type, region, service, service_name, month, period_start, period_end, quantity, "
        "raw_quantity, unit, status, billable, provider_updated_at, present, versions, "
        "first_run_id, last_run_id) VALUES "
        "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    db.commit()
    db.close()
    last = Month(2020, 1) + (months - 1)
    return len(rows), [last - 2, last - 1, last]


async def timed_apply(url: str, months: list[Month]) -> None:
    engine = create_engine(url)
    rule = MeasureSettings(usage_type="Total MB", kind=MeasureKind.GAUGE)
    try:
        for label, rules, scope in (
            ("first pull after the upgrade", (), months),
            ("every later pull (3 months)", (), months),
            ("after a [[measures]] change", (rule,), months),
        ):
            async with engine.begin() as conn:
                started = time.perf_counter()
                changed = await apply_measure_kinds(conn, "akamai", rules, scope)
                seconds = time.perf_counter() - started
            print(f"apply_measure_kinds, {label}: {seconds:.2f} s ({changed:,} lines changed)")
        async with engine.connect() as conn:
            started = time.perf_counter()
            listed = len(await stat_types(conn, ()))
            seconds = time.perf_counter() - started
        print(f"stat_types (config check): {seconds:.2f} s ({listed} stat types)")
    finally:
        await engine.dispose()


def timed_evaluate() -> tuple[float, int]:
    month = Month(2024, 6)
    lines = [
        MonthLine(
            "akamai",
            "akamai",
            "K-1",
            product,
            product,
            stat,
            region,
            "",
            month,
            Decimal(100 + half),
            unit,
            LineStatus.FINALIZED,
            date(2024, 6, 1 + 15 * half),
            classify("akamai", stat, unit).kind,
            True,
        )
        for product in PRODUCTS
        for stat, unit in STATS
        for region in REGIONS
        for half in (0, 1)
    ]
    expectations = [
        ExpectationSettings(source="akamai", usage_type=stat, monthly_max=Decimal(150))
        for stat, _ in STATS
    ]
    started = time.perf_counter()
    found = evaluate(expectations, lines, date(2024, 7, 10))
    return time.perf_counter() - started, len(lines) + 0 * len(found)


async def main(lines: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "state.db"
        url = f"sqlite+aiosqlite:///{path}"
        engine = create_engine(url, create=True)
        await upgrade(engine)
        await engine.dispose()
        started = time.perf_counter()
        count, months = fill(path, lines)
        print(f"state: {count:,} lines inserted in {time.perf_counter() - started:.1f} s")
        await timed_apply(url, months)
    seconds, evaluated = timed_evaluate()
    print(f"evaluate, 4 expectations over {evaluated} lines of a month: {seconds * 1000:.1f} ms")
    print(f"measured at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="usage lines in the state")
    asyncio.run(main(parser.parse_args().lines))
